// Package prosody is the Prosody dialect of statsbridge's mapping: it turns
// the StatsD names Prosody's statsd backend sends back into the OpenMetrics
// families Prosody's own mod_http_openmetrics shows, with the same names,
// label names and values, types, units, help and bucket layouts. It knows
// Prosody's families from an embedded catalog, from the configuration, and
// optionally from Prosody's own /metrics page.
package prosody

import (
	_ "embed"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2"

	"github.com/statsbridge/statsbridge/model"
)

// Entry is one family of the catalog.
type Entry struct {
	// Name is the OpenMetrics family name, as mod_http_openmetrics prints it.
	Name string `toml:"name"`
	// StatsD is how Prosody's statsd backend spells the family, after
	// "<prefix>." and before the label values.
	StatsD string `toml:"statsd"`
	Type   string `toml:"type"` // counter, gauge, histogram or summary
	Unit   string `toml:"unit"`
	Help   string `toml:"help"`
	// Labels are the label names in Prosody's order.
	Labels []string `toml:"labels"`
	// Buckets are a histogram's bounds as Prosody spells them, without +Inf.
	Buckets []string `toml:"buckets"`
	// Values lists, per label, known values that contain dots: Prosody sends
	// them with "_" for ".", and statsbridge restores them.
	Values map[string][]string `toml:"values"`
	// Since is the first Prosody release with the family.
	Since string `toml:"since"`
	// Source is the file that defines it.
	Source string `toml:"source"`
}

//go:embed catalog.toml
var builtin []byte

// Builtin returns the embedded catalog of Prosody's stock families.
func Builtin() []Entry {
	entries, err := ParseCatalog(builtin)
	if err != nil {
		panic("the embedded Prosody catalog is invalid: " + err.Error())
	}
	return entries
}

// ParseCatalog reads a catalog in the embedded file's format and checks it.
func ParseCatalog(data []byte) ([]Entry, error) {
	var doc struct {
		Family []Entry `toml:"family"`
	}
	dec := toml.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		return nil, err
	}
	for i := range doc.Family {
		if err := doc.Family[i].Check(); err != nil {
			return nil, fmt.Errorf("family %d (%s): %w", i, doc.Family[i].Name, err)
		}
	}
	return doc.Family, nil
}

// Check reports what is wrong with an entry.
func (e *Entry) Check() error {
	switch {
	case e.Name == "" || model.SanitizeMetricName(e.Name) != e.Name:
		return fmt.Errorf("name %q is not a metric name", e.Name)
	case e.StatsD == "" || strings.ContainsAny(e.StatsD, " |:"):
		return fmt.Errorf("statsd %q is not a StatsD name", e.StatsD)
	}
	typ, ok := model.ParseType(e.Type)
	if !ok || typ == model.Unknown {
		return fmt.Errorf("type %q is not counter, gauge, histogram or summary", e.Type)
	}
	for i, l := range e.Labels {
		switch {
		case model.SanitizeLabelName(l) != l:
			return fmt.Errorf("label %q is not a label name", l)
		case slices.Contains(e.Labels[:i], l):
			return fmt.Errorf("label %q is given twice", l)
		case typ == model.Histogram && l == "le", typ == model.Summary && l == "quantile":
			return fmt.Errorf("label %q is the one a %s adds itself", l, typ)
		}
	}
	if typ != model.Histogram && len(e.Buckets) > 0 {
		return fmt.Errorf("buckets are for histograms")
	}
	prev := math.Inf(-1)
	for _, b := range e.Buckets {
		v, err := strconv.ParseFloat(b, 64)
		if err != nil || b == "+Inf" || math.IsNaN(v) || v <= prev {
			return fmt.Errorf("buckets %v are not increasing numbers (without +Inf)", e.Buckets)
		}
		prev = v
	}
	return nil
}

// Merge lays entries over a catalog: an entry replaces one with the same
// name or StatsD spelling, and is added otherwise.
func Merge(base, over []Entry) []Entry {
	out := append([]Entry(nil), base...)
	for _, o := range over {
		replaced := false
		for i := range out {
			if out[i].Name == o.Name || out[i].StatsD == o.StatsD {
				out[i], replaced = o, true
				break
			}
		}
		if !replaced {
			out = append(out, o)
		}
	}
	return out
}

// family is an entry made ready for mapping.
type family struct {
	fam  model.Family
	kind model.Kind
	// buckets maps a bucket's StatsD spelling (le with "." as "_") to its
	// index in the layout.
	buckets map[string]int
	// values maps, per label, a value as Prosody sends it to the value.
	values map[string]map[string]string
}

func compile(e Entry) *family {
	typ, _ := model.ParseType(e.Type)
	f := &family{fam: model.Family{Name: e.Name, Type: typ, Unit: e.Unit, Help: e.Help, LabelNames: e.Labels}}
	switch typ {
	case model.Counter:
		f.kind = model.KindCounter
	case model.Gauge:
		f.kind = model.KindGauge
	case model.Summary:
		f.kind = model.KindPresummed
	case model.Histogram:
		f.kind = model.KindPrebucketed
		f.buckets = map[string]int{}
		for i, le := range e.Buckets {
			v, _ := strconv.ParseFloat(le, 64)
			f.fam.Buckets = append(f.fam.Buckets, model.Bucket{Bound: v, LE: le})
			f.buckets[strings.ReplaceAll(le, ".", "_")] = i
		}
		f.fam.Buckets = append(f.fam.Buckets, model.Bucket{Bound: math.Inf(1), LE: "+Inf"})
		f.buckets["+Inf"] = len(e.Buckets)
	}
	for label, values := range e.Values {
		if f.values == nil {
			f.values = map[string]map[string]string{}
		}
		f.values[label] = map[string]string{}
		for _, v := range values {
			f.values[label][strings.ReplaceAll(v, ".", "_")] = v
		}
	}
	return f
}
