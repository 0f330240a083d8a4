// Package influx renders flushes as InfluxDB line protocol, in the shape a
// StatsD or Prometheus user's InfluxDB already holds, and writes them over
// HTTP to InfluxDB 1.x (/write) or 2.x (/api/v2/write).
package influx

import (
	"math"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/influxdata/line-protocol/v2/lineprotocol"

	"github.com/statsbridge/statsbridge/cork"
	"github.com/statsbridge/statsbridge/model"
)

// Shape is the convention the points follow: which measurement, tags,
// field names and field types a series becomes.
type Shape string

// The shapes.
const (
	// ShapeTelegraf is what Telegraf 1.x's statsd input writes with its
	// defaults: per-interval values, a metric_type tag, integer counters
	// and sets, Telegraf's timer statistics, idle series left out.
	ShapeTelegraf Shape = "telegraf"
	// ShapeEtsy is Etsy statsd's statistics as float fields, one
	// measurement per family.
	ShapeEtsy Shape = "etsy"
	// ShapePrometheus is what Telegraf's prometheus input (metric_version
	// 1) writes from a scrape of /metrics: cumulative float fields named
	// counter, gauge, value, or count, sum and one per bucket or quantile.
	ShapePrometheus Shape = "prometheus"
)

// Options shape the points.
type Options struct {
	Shape Shape
	// Cumulative sends counters' totals rather than their per-interval
	// deltas (the etsy shape; prometheus is always cumulative, telegraf
	// never).
	Cumulative bool
	// DeleteIdle leaves out series that received nothing in the interval.
	// The telegraf shape always does, as Telegraf's delete_* defaults do.
	DeleteIdle     bool
	ExternalLabels model.Labels
	// Percentiles are the thresholds of the timer statistics, in the
	// order the model computes them (model.Options.Percentiles).
	Percentiles []float64
	// ProsodyPrefix is the Prosody dialect's prefix ("" for none). In the
	// telegraf shape, series under it keep their family's measurement,
	// labels and float fields (see Encoder).
	ProsodyPrefix string
}

// Encoder writes one line per series.
//
// The telegraf shape names a StatsD series' measurement as Telegraf does
// (its name up to the first whitespace, '.' as '_'), tags it with its labels
// and metric_type=counter|gauge|set|timing|histogram, and writes:
//
//   - counters: value, the interval's change as an integer;
//   - gauges: value, a float;
//   - sets: value, the interval's distinct members as an integer;
//   - timers, histograms and distributions: count (an integer), lower,
//     upper, mean, median, stddev, sum and <P>_percentile, in the unit the
//     client sent, as model.TelegrafStats computes them.
//
// Prosody's families (names under ProsodyPrefix) keep the family as the
// measurement, its labels as tags and the etsy shape's float fields, with a
// metric_type tag: their counter deltas and sums can be fractional, and a
// Prosody histogram stays one line per series.
//
// The etsy shape names the measurement after the family (a timer's without
// _seconds: its statistics are in milliseconds) and writes float fields:
//
//   - counters, gauges and sets: value (a counter's delta, or its total when
//     cumulative);
//   - timers, histograms and distributions: Etsy's statistics of the
//     interval (count, count_ps, lower, upper, mean, median, std, sum,
//     sum_squares, and count_90, mean_90, upper_90, sum_90, sum_squares_90
//     per percentile), in the unit the client sent;
//   - Prosody's histograms: count, sum and one field per bucket named by
//     its le ("0.001", "+Inf"), deltas or totals like counters;
//   - Prosody's summaries: count and sum.
//
// The prometheus shape is what Telegraf's prometheus input reads from
// /metrics: the exposition's family name (counters with _total), labels as
// tags, and float fields counter, gauge or value, or count, sum and one
// field per bucket (le as Go's %g) or quantile, all cumulative, timers in
// seconds.
//
// A field's type never changes for a series: InfluxDB fixes it per shard.
type Encoder struct {
	opts    Options
	enc     lineprotocol.Encoder
	tags    model.Labels
	name    []byte
	pctName []string // the telegraf shape's <P>_percentile field names
	// Skipped counts values InfluxDB cannot store (NaN, ±Inf), counters
	// past the integer range, and points the line-protocol encoder
	// refused.
	Skipped atomic.Uint64
}

// NewEncoder returns an encoder writing millisecond timestamps.
func NewEncoder(opts Options) *Encoder {
	if opts.Shape == "" {
		opts.Shape = ShapeTelegraf
	}
	switch opts.Shape {
	case ShapeTelegraf:
		opts.Cumulative, opts.DeleteIdle = false, true
	case ShapePrometheus:
		opts.Cumulative = true
	}
	e := &Encoder{opts: opts}
	for _, p := range opts.Percentiles {
		// Telegraf names the field with fmt's %v of the threshold.
		e.pctName = append(e.pctName, strconv.FormatFloat(p, 'g', -1, 64)+"_percentile")
	}
	e.enc.SetPrecision(lineprotocol.Millisecond)
	return e
}

// Encode implements sinks.Encoder.
func (e *Encoder) Encode(f *model.Flush, buf *cork.Buffer) {
	ts := f.Stamp(e.opts.Cumulative)
	seconds := f.Length.Seconds()
	for i := range f.Points {
		p := &f.Points[i]
		if e.opts.DeleteIdle && !p.Touched {
			continue
		}
		buf.Append(func(b []byte) []byte { return e.line(b, p, ts, seconds) })
	}
}

// line appends p's line to b, or returns b as it was when p has nothing
// InfluxDB can store.
func (e *Encoder) line(b []byte, p *model.Point, ts time.Time, seconds float64) []byte {
	e.enc.SetBuffer(b)
	s := p.Series
	e.tags = s.Labels().AppendMerged(e.tags[:0], e.opts.ExternalLabels)
	var n int
	switch {
	case e.opts.Shape == ShapePrometheus:
		f := s.Family()
		e.enc.StartLine(prometheusName(&f))
		e.addTags()
		n = e.prometheusFields(p)
	case e.opts.Shape == ShapeTelegraf && !e.prosody(s) && !s.Registered():
		e.name = appendTelegrafMeasurement(e.name[:0], s.Key())
		if len(e.name) == 0 {
			e.Skipped.Add(1) // Telegraf's serializer refuses an empty name
			return b
		}
		e.enc.StartLineRaw(e.name)
		e.addTags(metricType(s))
		n = e.telegrafFields(p)
	case e.opts.Shape == ShapeTelegraf:
		// Prosody's families and statsbridge's own: a measurement per
		// family, its labels as tags, float fields.
		e.enc.StartLine(etsyMeasurement(s))
		e.addTags(metricType(s))
		n = e.etsyFields(p, seconds)
	default:
		e.enc.StartLine(etsyMeasurement(s))
		e.addTags()
		n = e.etsyFields(p, seconds)
	}
	if n == 0 {
		return b // no field InfluxDB can store: no line
	}
	e.enc.EndLine(ts)
	if err := e.enc.Err(); err != nil {
		e.Skipped.Add(1)
		e.enc.ClearErr()
		return b
	}
	return e.enc.Bytes()
}

// addTags adds the merged labels, and metricType (when given and no label
// has its name) in its sorted place: a DogStatsD tag metric_type wins, as
// it does in Telegraf.
func (e *Encoder) addTags(metricType ...string) {
	pending := len(metricType) > 0 && !e.tags.Has("metric_type")
	for _, t := range e.tags {
		if pending && t.Name > "metric_type" {
			e.enc.AddTag("metric_type", metricType[0])
			pending = false
		}
		e.enc.AddTag(t.Name, t.Value)
	}
	if pending {
		e.enc.AddTag("metric_type", metricType[0])
	}
}

// prosody reports whether s is one of Prosody's families.
func (e *Encoder) prosody(s *model.Series) bool {
	switch s.Kind() {
	case model.KindPrebucketed, model.KindPresummed:
		return true
	}
	p := e.opts.ProsodyPrefix
	key := s.Key()
	return p != "" && len(key) > len(p) && key[len(p)] == '.' && strings.HasPrefix(key, p)
}

// etsyMeasurement is the etsy shape's measurement: the family, but a
// timer's without the _seconds its family has: its statistics are in the
// milliseconds the client sent.
func etsyMeasurement(s *model.Series) string {
	f := s.Family()
	if s.Kind().Observes() && f.Unit == "seconds" {
		if name := strings.TrimSuffix(f.Name, "_seconds"); name != "" {
			return name
		}
	}
	return f.Name
}

// appendTelegrafMeasurement appends the measurement Telegraf's statsd input
// names a StatsD key: its graphite template engine keeps the name's first
// whitespace-separated word (strings.Fields) and joins its '.'-separated
// parts with '_'. Every other byte stays.
func appendTelegrafMeasurement(dst []byte, key string) []byte {
	key = strings.TrimLeftFunc(key, unicode.IsSpace)
	if i := strings.IndexFunc(key, unicode.IsSpace); i >= 0 {
		key = key[:i]
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if c == '.' {
			c = '_'
		}
		dst = append(dst, c)
	}
	return dst
}

// metricType is Telegraf's metric_type tag for a series: the StatsD type
// its statistics came from.
func metricType(s *model.Series) string {
	f := s.Family()
	switch s.Kind() {
	case model.KindCounter:
		return "counter"
	case model.KindSet:
		return "set"
	case model.KindHistogram, model.KindSummary:
		// Only timers (ms) are converted to seconds, so only their
		// families have the unit.
		if f.Unit == "seconds" {
			return "timing"
		}
		return "histogram"
	case model.KindPrebucketed:
		return "histogram"
	case model.KindPresummed:
		return "summary"
	}
	return "gauge"
}

// field adds a float field, or counts a value InfluxDB cannot store.
func (e *Encoder) field(key string, v float64) int {
	value, ok := lineprotocol.FloatValue(v)
	if !ok {
		e.Skipped.Add(1)
		return 0
	}
	e.enc.AddField(key, value)
	return 1
}

// intField adds an integer field, rounding v; a value past int64's range
// is counted and left out.
func (e *Encoder) intField(key string, v float64) int {
	r := math.Round(v)
	if !(r >= math.MinInt64 && r < math.MaxInt64) { // NaN fails too
		e.Skipped.Add(1)
		return 0
	}
	e.enc.AddField(key, lineprotocol.IntValue(int64(r)))
	return 1
}

// telegrafFields adds what Telegraf's statsd input writes for a StatsD
// series and returns how many fields it added.
func (e *Encoder) telegrafFields(p *model.Point) int {
	switch p.Series.Kind() {
	case model.KindCounter:
		return e.intField("value", p.Delta)
	case model.KindSet:
		return e.intField("value", p.Value)
	case model.KindHistogram, model.KindSummary:
		if p.Stats == nil || p.Stats.N == 0 {
			return 0
		}
		t := &p.Stats.Telegraf
		e.enc.AddField("count", lineprotocol.IntValue(t.Count))
		n := 1 + e.field("lower", t.Lower) + e.field("upper", t.Upper) + e.field("mean", t.Mean) +
			e.field("median", t.Median) + e.field("stddev", t.Stddev) + e.field("sum", t.Sum)
		for i, v := range t.Percentiles {
			if i < len(e.pctName) {
				n += e.field(e.pctName[i], v)
			}
		}
		return n
	}
	return e.field("value", p.Value)
}

// etsyFields adds the etsy shape's fields and returns how many it added.
func (e *Encoder) etsyFields(p *model.Point, seconds float64) int {
	n := 0
	field := func(key string, v float64) { n += e.field(key, v) }
	pick := func(delta, total float64) float64 {
		if e.opts.Cumulative {
			return total
		}
		return delta
	}
	s := p.Series
	switch s.Kind() {
	case model.KindCounter:
		field("value", pick(p.Delta, p.Value))
	case model.KindGauge, model.KindSet:
		field("value", p.Value)
	case model.KindHistogram, model.KindSummary:
		p.Stats.EachEtsy(seconds, field)
	case model.KindPrebucketed:
		h := p.Histogram
		field("count", pick(h.DeltaCount, h.Count))
		field("sum", pick(h.DeltaSum, h.Sum))
		for i, bucket := range h.Layout {
			field(bucket.LE, pick(h.DeltaBuckets[i], h.Buckets[i]))
		}
	case model.KindPresummed:
		field("count", pick(p.Summary.DeltaCount, p.Summary.Count))
		field("sum", pick(p.Summary.DeltaSum, p.Summary.Sum))
	}
	return n
}

// prometheusName is the family's name in the Prometheus text exposition,
// which Telegraf's prometheus input makes the measurement.
func prometheusName(f *model.Family) string {
	if f.Type == model.Counter {
		return f.Name + "_total"
	}
	return f.Name
}

// prometheusFields adds what Telegraf's prometheus input (metric_version 1)
// reads from the series' exposition and returns how many fields it added.
func (e *Encoder) prometheusFields(p *model.Point) int {
	f := p.Series.Family()
	n := 0
	switch {
	case p.Histogram != nil:
		n += e.field("count", p.Histogram.Count) + e.field("sum", p.Histogram.Sum)
		for i, b := range p.Histogram.Layout {
			n += e.field(strconv.FormatFloat(b.Bound, 'g', -1, 64), p.Histogram.Buckets[i])
		}
	case p.Summary != nil:
		n += e.field("count", p.Summary.Count) + e.field("sum", p.Summary.Sum)
		for i, q := range f.Summary.Quantiles {
			// A quantile with no value in its window is NaN in the
			// exposition, and Telegraf leaves it out.
			if i < len(p.Summary.Quantiles) && !math.IsNaN(p.Summary.Quantiles[i]) {
				n += e.field(strconv.FormatFloat(q, 'g', -1, 64), p.Summary.Quantiles[i])
			}
		}
	case f.Type == model.Counter:
		n += e.field("counter", p.Value)
	case f.Type == model.Gauge:
		n += e.field("gauge", p.Value)
	default:
		n += e.field("value", p.Value)
	}
	return n
}
