package model

import (
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/statsd_exporter/pkg/mapper"
	"go.yaml.in/yaml/v2"

	"github.com/statsbridge/statsbridge/ingest"
)

// Part says which part of a series a StatsD line updates. Most lines update
// the whole series (PartValue); Prosody sends a histogram's buckets, count
// and sum as separate lines.
type Part int16

// The parts of a series.
const (
	PartValue Part = -1
	PartCount Part = -2
	PartSum   Part = -3
	// PartBucket is a bucket line of a histogram that arrives in parts
	// (KindPrebucketed); Mapping.Bucket says which bound.
	PartBucket Part = -4
)

// Mapping is what a StatsD line maps to.
type Mapping struct {
	Family Family
	Kind   Kind
	// Labels are the series' labels: the family's fixed labels in order,
	// then any others.
	Labels Labels
	Part   Part
	// Bucket is the bound of a PartBucket line, spelled as sent.
	Bucket Bucket
	// Guesses are the layouts a KindPrebucketed histogram's sender may
	// have, most likely first; nil guesses the family's Buckets. Each
	// series shows the layout its sender has, as the wire shows it.
	Guesses *Guesses
	// Scale multiplies every value (statsd_exporter's scale); 0 means 1.
	Scale float64
	// TTL removes the series after this long without samples; 0 means the
	// model's default.
	TTL time.Duration
	// Drop throws the line away (statsd_exporter's action: drop).
	Drop bool
	// Key is the StatsD name of the series when it is not the line's name
	// (a Prosody histogram part's name without its ".bucket.<le>" suffix).
	Key string
	// Rule says what decided: a mapping file's match, a Prosody catalog
	// entry. The model fills in the default mapping's.
	Rule string
}

// Mapper maps the StatsD names it knows. A Mapper is used by every reader
// goroutine at once.
type Mapper interface {
	// Map maps a line's name, type and tags (as labels with sanitised
	// names, sorted by name, the latest first of tags that share a name,
	// some maybe empty). The labels of the Mapping need not be valid: the
	// model settles them (settleLabels) with the mapper's own labels
	// first, so that they win over a tag of the same name. It reports
	// false for a name it does not know, to let the next mapper try.
	Map(name string, typ ingest.Type, tags Labels) (Mapping, bool)
}

// DryMapper is a Mapper that counts what it maps (the Prosody dialect counts
// unknown names): DryMap maps as Map does, without counting, for a dry run
// of the mapping (check-config, statsbridge tap).
type DryMapper interface {
	Mapper
	DryMap(name string, typ ingest.Type, tags Labels) (Mapping, bool)
}

// DefaultRule is the Rule of a name no mapper knew.
const DefaultRule = "default mapping: the name is the family, tags are labels"

// ObserverDefaults say what a StatsD timer, histogram or distribution
// becomes when no mapping says more.
type ObserverDefaults struct {
	Type    Type // Histogram or Summary
	Buckets []float64
	Summary SummaryOptions
	TTL     time.Duration
	// SecondsSuffix names a timer's family name_seconds: timers are
	// converted to seconds, and OpenMetrics wants a family with a unit to
	// end with it. statsd_exporter does not, so names under a mapping file
	// are left as they are.
	SecondsSuffix bool
	// Native turns on histograms' native buckets.
	Native NativeOptions
}

// DefaultObservers is the choice without a mapping file: histograms with
// the default buckets (DESIGN: timers are histograms).
var DefaultObservers = ObserverDefaults{Type: Histogram, Buckets: DefaultBuckets, Summary: DefaultSummaryOptions, SecondsSuffix: true}

// defaultMapping maps a name no mapper knew: the name, sanitised, is the
// family; tags are its labels.
func defaultMapping(name string, typ ingest.Type, tags Labels, obs ObserverDefaults) Mapping {
	m := Mapping{Labels: tags, Part: PartValue, TTL: obs.TTL}
	family := SanitizeMetricName(name)
	switch typ {
	case ingest.Counter:
		m.Kind, m.Family = KindCounter, Family{Name: CounterFamilyName(family), Type: Counter}
	case ingest.Gauge:
		m.Kind, m.Family = KindGauge, Family{Name: family, Type: Gauge}
	case ingest.Set:
		m.Kind, m.Family = KindSet, Family{Name: family, Type: Gauge}
	default:
		m.Family = observerFamily(family, typ, obs)
		m.Kind = KindHistogram
		if m.Family.Type == Summary {
			m.Kind = KindSummary
		}
	}
	m.Family.Help = fmt.Sprintf("StatsD %s %s", typeWords[typ], name)
	return m
}

var typeWords = map[ingest.Type]string{
	ingest.Counter: "counter", ingest.Gauge: "gauge", ingest.Set: "set", ingest.Timer: "timer",
	ingest.Histogram: "histogram", ingest.Distribution: "distribution",
}

// CounterFamilyName strips a "_total" the exposition will add again, unless
// nothing would be left.
func CounterFamilyName(name string) string {
	if trimmed := strings.TrimSuffix(name, "_total"); trimmed != "" {
		return trimmed
	}
	return name
}

// observerFamily is the family of a timer, histogram or distribution.
// Timers are converted from milliseconds to seconds; a family whose name
// ends in _seconds has the unit seconds.
func observerFamily(name string, typ ingest.Type, obs ObserverDefaults) Family {
	f := Family{Name: name, Type: obs.Type}
	if typ == ingest.Timer {
		if obs.SecondsSuffix && !strings.HasSuffix(f.Name, "_seconds") {
			f.Name += "_seconds"
		}
		if strings.HasSuffix(f.Name, "_seconds") {
			f.Unit = "seconds"
		}
	}
	if f.Type == Histogram {
		f.Buckets = BucketsFor(obs.Buckets)
		f.Native = obs.Native
	} else {
		f.Summary = obs.Summary
	}
	return f
}

// tagLabels turns a line's tags into labels with sanitised names, sorted
// by name; of tags of one name, the latest comes first, so that it wins
// (settleLabels keeps the first). Tags with an empty value stay, so that
// a later empty tag still removes an earlier one; settleLabels drops them.
func tagLabels(tags []ingest.Tag) Labels {
	if len(tags) == 0 {
		return nil
	}
	ls := make(Labels, len(tags))
	for i, t := range tags {
		ls[len(tags)-1-i] = Label{Name: SanitizeMetricName(string(t.Key)), Value: string(t.Value)}
	}
	slices.SortStableFunc(ls, func(a, b Label) int { return strings.Compare(a.Name, b.Name) })
	return ls
}

// FileMapper maps names with a statsd_exporter mapping file, as
// statsd_exporter does: glob and regex matches with $n captures, name,
// labels, help, action: drop, match_metric_type, observer_type with
// histogram_options and summary_options, scale, ttl, and the defaults
// section (whose observer_type also decides for names no mapping matches).
// It gives pkg/mapper no cache (pkg/mapper caches only when given one, by
// the whole name): the model's name cache, which holds hashes rather than
// names, stands in front of it.
type FileMapper struct {
	m   *mapper.MetricMapper
	obs ObserverDefaults
	// nativeDefaults says the file's defaults set native histogram
	// options: obs.Native holds statsd_exporter's reading of them.
	nativeDefaults bool
}

// LoadMappingFile reads and checks a statsd_exporter mapping file.
func LoadMappingFile(path string) (*FileMapper, error) {
	text, err := os.ReadFile(path)
	if err == nil {
		var fm *FileMapper
		if fm, err = ParseMapping(string(text)); err == nil {
			return fm, nil
		}
	}
	return nil, fmt.Errorf("mapping file %s: %w", path, err)
}

// ParseMapping reads a statsd_exporter mapping from YAML text.
func ParseMapping(text string) (*FileMapper, error) {
	m := &mapper.MetricMapper{}
	if err := m.InitFromYAMLString(text); err != nil {
		return nil, err
	}
	// pkg/mapper fills in defaults.histogram_options' native settings
	// when the file has none (a factor of 1.1, 256 buckets), so whether
	// the file set them is read from the text.
	var said struct {
		Defaults struct {
			HistogramOptions struct {
				Factor     float64 `yaml:"native_histogram_bucket_factor"`
				MaxBuckets uint32  `yaml:"native_histogram_max_buckets"`
			} `yaml:"histogram_options"`
		} `yaml:"defaults"`
	}
	if err := yaml.Unmarshal([]byte(text), &said); err != nil {
		return nil, err
	}
	opts := said.Defaults.HistogramOptions
	return newFileMapper(m, opts.Factor > 0 || opts.MaxBuckets > 0), nil
}

func newFileMapper(m *mapper.MetricMapper, nativeDefaults bool) *FileMapper {
	d := m.Defaults
	fm := &FileMapper{m: m, nativeDefaults: nativeDefaults, obs: ObserverDefaults{
		Type:    observerType(d.ObserverType),
		Buckets: d.HistogramOptions.Buckets,
		Summary: summaryOptions(&d.SummaryOptions, DefaultSummaryOptions),
		TTL:     d.Ttl,
	}}
	if nativeDefaults {
		fm.obs.Native = NativeOptions{BucketFactor: d.HistogramOptions.NativeHistogramBucketFactor,
			MaxBuckets: d.HistogramOptions.NativeHistogramMaxBuckets}
	}
	return fm
}

// Observers are the file's defaults for names no mapping matches.
func (f *FileMapper) Observers() ObserverDefaults { return f.obs }

// NativeDefaults gives the native histogram settings of the histograms
// for which the file sets none, in its defaults or their mapping:
// statsbridge's own ([mapping] native_histogram_bucket_factor and
// native_histogram_max_buckets). Where the file sets any, they mean what
// they mean in statsd_exporter. It must be called before the mapper is
// used.
func (f *FileMapper) NativeDefaults(o NativeOptions) {
	if !f.nativeDefaults {
		f.obs.Native = o
	}
}

// nativeOptions are a mapping's native histogram settings, as
// statsd_exporter's registry picks them: the mapping's where it sets them
// (above 0), the file's defaults' otherwise (pkg/mapper's 1.1 and 256
// where the defaults do not say). A file that sets none anywhere for the
// mapping gets f.obs.Native, statsbridge's own.
func (f *FileMapper) nativeOptions(h *mapper.HistogramOptions) NativeOptions {
	var factor float64
	var maxBuckets uint32
	if h != nil {
		factor, maxBuckets = h.NativeHistogramBucketFactor, h.NativeHistogramMaxBuckets
	}
	if !f.nativeDefaults && factor <= 0 && maxBuckets == 0 {
		return f.obs.Native
	}
	d := f.m.Defaults.HistogramOptions
	if factor <= 0 {
		factor = d.NativeHistogramBucketFactor
	}
	if maxBuckets == 0 {
		maxBuckets = d.NativeHistogramMaxBuckets
	}
	return NativeOptions{BucketFactor: factor, MaxBuckets: maxBuckets}
}

// statsd_exporter's observer default is a summary.
func observerType(t mapper.ObserverType) Type {
	if t == mapper.ObserverTypeHistogram {
		return Histogram
	}
	return Summary
}

func summaryOptions(o *mapper.SummaryOptions, fallback SummaryOptions) SummaryOptions {
	s := fallback
	if o == nil {
		return s
	}
	if len(o.Quantiles) > 0 {
		s.Quantiles = make([]float64, len(o.Quantiles))
		for i, q := range o.Quantiles {
			s.Quantiles[i] = q.Quantile
		}
	}
	if o.MaxAge > 0 {
		s.MaxAge = o.MaxAge
	}
	if o.AgeBuckets > 0 {
		s.AgeBuckets = int(o.AgeBuckets)
	}
	return s
}

var metricTypes = map[ingest.Type]mapper.MetricType{
	ingest.Counter: mapper.MetricTypeCounter, ingest.Gauge: mapper.MetricTypeGauge,
	ingest.Timer: mapper.MetricTypeObserver, ingest.Histogram: mapper.MetricTypeObserver,
	ingest.Distribution: mapper.MetricTypeObserver,
	// statsd_exporter does not take sets; a mapping can still match one
	// as a gauge, which it becomes.
	ingest.Set: mapper.MetricTypeGauge,
}

// Map implements Mapper. A name no mapping matches goes on to the default
// mapping, with the file's defaults for observers.
func (f *FileMapper) Map(name string, typ ingest.Type, tags Labels) (Mapping, bool) {
	mm, labels, ok := f.m.GetMapping(name, metricTypes[typ])
	if !ok {
		return Mapping{}, false
	}
	rule := "mapping file: match " + strconv.Quote(mm.Match)
	if mm.Action == mapper.ActionTypeDrop || mm.Name == "" {
		return Mapping{Drop: true, Rule: rule}, true
	}
	obs := f.obs
	if mm.ObserverType != "" {
		obs.Type = observerType(mm.ObserverType)
	}
	if mm.HistogramOptions != nil && len(mm.HistogramOptions.Buckets) > 0 {
		obs.Buckets = mm.HistogramOptions.Buckets
	}
	obs.Native = f.nativeOptions(mm.HistogramOptions)
	obs.Summary = summaryOptions(mm.SummaryOptions, f.obs.Summary)
	// defaultMapping sanitises the name once, through SanitizeMetricName's
	// guard against the invalid UTF-8 that EscapeMetricName panics on.
	m := defaultMapping(mm.Name, typ, nil, obs)
	if mm.HelpText != "" {
		m.Family.Help = mm.HelpText
	} else {
		m.Family.Help = "Metric autogenerated by statsbridge from " + name
	}
	m.Labels = mergeLabels(labels, tags, mm.HonorLabels)
	if mm.Scale.Set {
		m.Scale = mm.Scale.Val
	}
	m.TTL = mm.Ttl
	m.Rule = rule
	return m, true
}

// mergeLabels joins a mapping's labels with the line's tags: the mapping
// wins, unless honor_labels lets a tag with a value win. A tag that loses
// is left out here, not counted as a collision: the mapping file asked for
// it.
func mergeLabels(mapped map[string]string, tags Labels, honorTags bool) Labels {
	ls := make(Labels, 0, len(mapped)+len(tags))
	tagWins := func(name string) bool { return honorTags && tags.Get(name) != "" }
	for k, v := range mapped {
		if v != "" && !tagWins(k) {
			ls = append(ls, Label{Name: k, Value: v})
		}
	}
	for _, t := range tags {
		if _, ok := mapped[t.Name]; !ok || tagWins(t.Name) {
			ls = append(ls, t)
		}
	}
	// Stable: tags of one name stay latest first.
	slices.SortStableFunc(ls, func(a, b Label) int { return strings.Compare(a.Name, b.Name) })
	return ls
}

// scaled applies a mapping's scale.
func scaled(v, scale float64) float64 {
	if scale == 0 || math.IsNaN(scale) {
		return v
	}
	return v * scale
}
