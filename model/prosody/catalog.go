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
	// OtherBuckets are the layouts the family has in other Prosody
	// versions, as Buckets are. Each series shows the layout the wire
	// agrees with.
	OtherBuckets [][]string `toml:"other_buckets"`
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
	if typ != model.Histogram && len(e.Buckets)+len(e.OtherBuckets) > 0 {
		return fmt.Errorf("buckets are for histograms")
	}
	for _, layout := range append([][]string{e.Buckets}, e.OtherBuckets...) {
		prev := math.Inf(-1)
		for _, b := range layout {
			v, err := strconv.ParseFloat(b, 64)
			if err != nil || b == "+Inf" || math.IsNaN(v) || v <= prev {
				return fmt.Errorf("buckets %v are not increasing numbers (without +Inf)", layout)
			}
			prev = v
		}
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
	// layouts are a histogram's layouts from the catalog, the first
	// first, and guesses the same made ready for the model.
	layouts [][]model.Bucket
	guesses *model.Guesses
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
		for _, les := range append([][]string{e.Buckets}, e.OtherBuckets...) {
			layout := make([]model.Bucket, 0, len(les)+1)
			for _, le := range les {
				v, _ := strconv.ParseFloat(le, 64)
				layout = append(layout, model.NewBucket(v, le))
			}
			f.layouts = append(f.layouts, append(layout, model.NewBucket(math.Inf(1), "+Inf")))
		}
		f.fam.Buckets = f.layouts[0]
		f.guesses = model.NewGuesses(f.layouts...)
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

// bucket reads the bound of a bucket line, as Prosody sends it: le with
// "." as "_". The catalog's spelling wins, so that a bound spelled two
// ways is one bucket.
func (f *family) bucket(sent string) (model.Bucket, bool) {
	le := strings.ReplaceAll(sent, "_", ".")
	v, err := strconv.ParseFloat(le, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, -1) {
		return model.Bucket{}, false
	}
	if math.IsInf(v, 1) {
		le = "+Inf"
	}
	for _, layout := range f.layouts {
		for _, b := range layout {
			if b.Bound == v {
				return b, true
			}
		}
	}
	return model.NewBucket(v, le), true
}
