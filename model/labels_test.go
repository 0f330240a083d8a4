package model

import (
	"strings"
	"testing"
)

func labelString(ls Labels) string {
	parts := make([]string, len(ls))
	for i, l := range ls {
		parts[i] = l.Name + "=" + l.Value
	}
	return strings.Join(parts, ",")
}

// TestHostileTagsMakeValidSeries: however labels arrive, a series never
// has two labels of one name, le on a histogram, quantile on a summary or a
// name starting with "__"; what had to change is counted by reason.
func TestHostileTagsMakeValidSeries(t *testing.T) {
	const histogramMapping = `
mappings:
- match: "hist.*"
  observer_type: histogram
  name: "hist"
  labels:
    le: "$1"
- match: "sum.*"
  observer_type: summary
  name: "sum"
  labels:
    __origin: "$1"
`
	tests := []struct {
		name    string
		mapping string
		line    string
		family  string
		labels  string
		fixes   map[LabelFix]uint64
	}{
		{"le tag on a histogram", "", "x:1|h|#le:5", "x", "exported_le=5", map[LabelFix]uint64{FixLE: 1}},
		{"le tag on a timer", "", "t:1|ms|#le:5,a:1", "t_seconds", "a=1,exported_le=5", map[LabelFix]uint64{FixLE: 1}},
		{"le tag on a counter is just a label", "", "c:1|c|#le:5", "c", "le=5", nil},
		{"renamed past a tag of the new name", "", "x:1|h|#le:5,exported_le:6", "x",
			"exported_le=6,exported_exported_le=5", map[LabelFix]uint64{FixLE: 1}},
		{"names equal once sanitised: the later tag wins", "", "c:1|c|#a.b:1,a_b:2", "c", "a_b=2",
			map[LabelFix]uint64{FixDuplicate: 1}},
		{"the same, the other way round", "", "c:1|c|#a_b:2,a.b:1", "c", "a_b=1", map[LabelFix]uint64{FixDuplicate: 1}},
		{"a repeated tag: the later wins", "", "c:1|c|#env:a,env:b", "c", "env=b", map[LabelFix]uint64{FixDuplicate: 1}},
		{"a later empty tag removes the label", "", "c:1|c|#env:a,env:", "c", "", map[LabelFix]uint64{FixDuplicate: 1}},
		{"a reserved name loses a leading _", "", "c:1|c|#__x:1", "c", "_x=1", map[LabelFix]uint64{FixReservedPrefix: 1}},
		{"... and makes way for a tag of that name", "", "c:1|c|#__x:1,_x:2", "c", "exported__x=1,_x=2",
			map[LabelFix]uint64{FixReservedPrefix: 1}},
		{"Influx-style tags", "", "x,le=5,a.b=1,a_b=2:1|h", "x", "a_b=2,exported_le=5",
			map[LabelFix]uint64{FixLE: 1, FixDuplicate: 1}},
		{"a mapping file's le on a histogram", histogramMapping, "hist.7:1|h", "hist", "exported_le=7", map[LabelFix]uint64{FixLE: 1}},
		{"a mapping file's reserved label name", histogramMapping, "sum.a:1|h", "sum", "_origin=a",
			map[LabelFix]uint64{FixReservedPrefix: 1}},
		{"a quantile tag on a summary", histogramMapping, "sum.a:1|h|#quantile:0.5", "sum", "_origin=a,exported_quantile=0.5",
			map[LabelFix]uint64{FixReservedPrefix: 1, FixQuantile: 1}},
		{"a quantile tag on a histogram is just a label", histogramMapping, "hist.7:1|h|#quantile:0.5", "hist",
			"exported_le=7,quantile=0.5", map[LabelFix]uint64{FixLE: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := Options{MaxSeries: 100, MaxSeriesPerFamily: 100}
			if tt.mapping != "" {
				fm, err := ParseMapping(tt.mapping)
				if err != nil {
					t.Fatal(err)
				}
				opts.Mappers, opts.Observers = []Mapper{fm}, fm.Observers()
			}
			m := New(opts)
			feed(t, m, tt.line)
			pts := pointsByFamily(m)
			if len(pts[tt.family]) != 1 {
				t.Fatalf("want one series of %s, got %v", tt.family, pts)
			}
			s := pts[tt.family][0].Series
			if got := labelString(s.Labels()); got != tt.labels {
				t.Errorf("labels %q, want %q", got, tt.labels)
			}
			f := s.Family()
			if problem := invalidLabels(&f, s.Labels()); problem != "" {
				t.Errorf("series labels: %s", problem)
			}
			if problem := invalidLabels(&Family{}, s.Tags()); problem != "" {
				t.Errorf("series tags: %s", problem)
			}
			for _, r := range LabelFixes() {
				if got := m.LabelFixCount(r); got != tt.fixes[r] {
					t.Errorf("%s: counted %d, want %d", r, got, tt.fixes[r])
				}
			}
		})
	}
}

// invalidLabels says what makes a label set invalid for a family, or "".
func invalidLabels(f *Family, ls Labels) string {
	seen := map[string]bool{}
	for _, l := range ls {
		switch {
		case seen[l.Name]:
			return "duplicate " + l.Name
		case strings.HasPrefix(l.Name, "__"):
			return "reserved " + l.Name
		case SanitizeMetricName(l.Name) != l.Name:
			return "invalid " + l.Name
		case f.Type == Histogram && l.Name == "le", f.Type == Summary && l.Name == "quantile":
			return l.Name + " on a " + f.Type.String()
		}
		seen[l.Name] = true
	}
	return ""
}

// TestSettleLabels is the rule on its own: labels keep their order, the
// first of a name wins, and a family's fixed labels keep empty values.
func TestSettleLabels(t *testing.T) {
	tests := []struct {
		name  string
		in    Labels
		fixed int
		typ   Type
		want  string
	}{
		{"fixed labels win over tags", Labels{{"host", "a"}, {"type", "c2s"}, {"host", "b"}}, 2, Counter, "host=a,type=c2s"},
		{"labels keep their order", Labels{{"z", "1"}, {"a", "2"}, {"m", "3"}, {"b", "4"}}, 2, Gauge, "z=1,a=2,m=3,b=4"},
		{"a fixed le on a histogram is renamed in place", Labels{{"le", "1"}, {"a", "2"}}, 1, Histogram, "exported_le=1,a=2"},
		{"invalid names are sanitised", Labels{{"a-b", "1"}, {"9x", "2"}, {"", "3"}}, 0, Gauge, "a_b=1,_9x=2,_=3"},
		{"empty values are no labels", Labels{{"a", ""}, {"b", "1"}}, 0, Gauge, "b=1"},
		{"a fixed label keeps an empty value", Labels{{"host", ""}, {"b", "1"}}, 1, Gauge, "host=,b=1"},
		{"invalid UTF-8 in a value is replaced", Labels{{"a", "x\xffy"}}, 0, Gauge, "a=x\uFFFDy"},
		{"__name__ is no label", Labels{{"__name__", "evil"}}, 0, Gauge, "_name__=evil"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var fixes [numLabelFixes]uint64
			got := settleLabels(tt.in, tt.fixed, tt.typ, &fixes)
			if s := labelString(got); s != tt.want {
				t.Errorf("got %q, want %q", s, tt.want)
			}
			if problem := invalidLabels(&Family{Type: tt.typ}, got); problem != "" {
				t.Error(problem)
			}
		})
	}
}

// TestExternalLabelsNeverCollide: an external label a series could not
// carry (a reserved or invalid name, le, quantile) is never merged in.
func TestExternalLabelsNeverCollide(t *testing.T) {
	external := Labels{{"instance", "relay1"}, {"le", "x"}, {"quantile", "y"}, {"__x", "z"}, {"a.b", "w"}}
	got := Labels{{"zone", "a"}}.AppendMerged(nil, external)
	if s := labelString(got); s != "instance=relay1,zone=a" {
		t.Errorf("got %q", s)
	}
}
