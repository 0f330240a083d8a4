package model

import (
	"math"
	"testing"
	"time"

	"github.com/statsbridge/statsbridge/ingest"
)

// partMapper maps every name to one series of a Prosody-style histogram
// (KindPrebucketed) or summary (KindPresummed), the part named by the
// name's last byte: b the first bucket, c the count, s the sum.
type partMapper struct{ kind Kind }

func (pm partMapper) Map(name string, _ ingest.Type, _ Labels) (Mapping, bool) {
	mp := Mapping{Kind: pm.kind, Family: Family{Name: "p", Type: Summary}}
	if pm.kind == KindPrebucketed {
		mp.Family = Family{Name: "p", Type: Histogram, Buckets: BucketsFor([]float64{1})}
	}
	switch name[len(name)-1] {
	case 'b':
		mp.Part, mp.Bucket = PartBucket, mp.Family.Buckets[0]
	case 'c':
		mp.Part = PartCount
	case 's':
		mp.Part = PartSum
	}
	return mp, true
}

func sample(name string, typ ingest.Type, rate float64, values ...float64) ingest.Sample {
	return ingest.Sample{Name: []byte(name), Type: typ, Values: values, Rate: rate}
}

func relative(name string, v float64) ingest.Sample {
	s := sample(name, ingest.Gauge, 1, v)
	s.Relative = true
	return s
}

// TestArithmeticNeverMakesStateNonFinite: a sample whose application would
// make a series' state (counter total or delta, histogram count, sum or
// buckets, summary sum or count, relative gauge, timer statistics)
// infinite or NaN is dropped and counted; the state stays as it was. A
// gauge set to a non-finite value holds it: that is data, not arithmetic.
func TestArithmeticNeverMakesStateNonFinite(t *testing.T) {
	inf, nan := math.Inf(1), math.NaN()
	c := ingest.Counter
	tests := []struct {
		name    string
		opts    Options
		steps   [][]ingest.Sample // a flush after each step
		dropped uint64
		value   float64 // the counter's or gauge's value at the end, if checked
		check   bool
		finite  bool // every number of the final point is finite
	}{
		{"a counter at a tiny rate", Options{}, [][]ingest.Sample{{sample("x", c, 1e-320, 1)}}, 1, 0, true, true},
		{"a counter at a tiny rate, then a negative one", Options{},
			[][]ingest.Sample{{sample("x", c, 1e-320, 1), sample("x", c, 1e-320, -1), sample("x", c, 1, 2)}}, 2, 2, true, true},
		{"a counter near the bound of rates", Options{}, [][]ingest.Sample{{sample("x", c, 1e-6, 3)}}, 0, 3e6, true, true},
		{"a huge value at the smallest rate", Options{}, [][]ingest.Sample{{sample("x", c, 1e-6, 1e303)}}, 1, 0, true, true},
		{"a counter past the largest float", Options{}, [][]ingest.Sample{{sample("x", c, 1, 1e308), sample("x", c, 1, 1e308)}}, 1, 1e308, true, true},
		{"a counter past the lowest float", Options{}, [][]ingest.Sample{{sample("x", c, 1, -1e308), sample("x", c, 1, -1e308)}}, 1, -1e308, true, true},
		{"a counter's delta past the largest float", Options{},
			[][]ingest.Sample{{sample("x", c, 1, 1e308)}, {sample("x", c, 1, -1e308), sample("x", c, 1, -1e308)}}, 1, 0, true, true},
		{"a counter's inf and nan", Options{}, [][]ingest.Sample{{sample("x", c, 1, inf), sample("x", c, 1, nan), sample("x", c, 1, 1)}}, 2, 1, true, true},
		{"a gauge set to inf is data", Options{}, [][]ingest.Sample{{sample("g", ingest.Gauge, 1, inf)}}, 0, inf, true, false},
		{"a gauge set to nan is data", Options{}, [][]ingest.Sample{{sample("g", ingest.Gauge, 1, 5), sample("g", ingest.Gauge, 1, nan)}}, 0, nan, true, false},
		{"a relative gauge past the largest float", Options{},
			[][]ingest.Sample{{sample("g", ingest.Gauge, 1, 1e308), relative("g", 1e308), relative("g", -1)}}, 1, 1e308 - 1, true, true},
		{"a relative gauge by inf or nan", Options{},
			[][]ingest.Sample{{sample("g", ingest.Gauge, 1, 1), relative("g", inf), relative("g", nan)}}, 2, 1, true, true},
		{"a histogram's sum at a small rate", Options{},
			[][]ingest.Sample{{sample("h", ingest.Histogram, 1, 1), sample("h", ingest.Histogram, 1e-300, 1e10)}}, 1, 0, false, true},
		{"a histogram's sum past the largest float", Options{},
			[][]ingest.Sample{{sample("h", ingest.Histogram, 1, 1e308), sample("h", ingest.Histogram, 1, 1e308)}}, 2, 0, false, true},
		{"a histogram's sum past the largest float in one sample", Options{},
			[][]ingest.Sample{{sample("h", ingest.Histogram, 1, 1, 1e308, 1e308)}}, 1, 0, false, true},
		{"a histogram's sum at a tiny rate", Options{},
			[][]ingest.Sample{{sample("h", ingest.Histogram, 1, 1), sample("h", ingest.Histogram, 1e-320, 1)}}, 1, 0, false, true},
		{"a histogram's inf and nan", Options{},
			[][]ingest.Sample{{sample("h", ingest.Histogram, 1, inf), sample("h", ingest.Histogram, 1, nan), sample("h", ingest.Histogram, 1, -inf)}},
			3, 0, false, true},
		{"a timer's sum of squares past the largest float", Options{},
			[][]ingest.Sample{{sample("t", ingest.Timer, 1, 1e200)}}, 1, 0, false, true},
		{"a timer's statistics near the largest float", Options{},
			[][]ingest.Sample{{sample("t", ingest.Timer, 1, 9e153, -9e153)}}, 1, 0, false, true},
		{"a summary's sum past the largest float", Options{Observers: ObserverDefaults{Type: Summary, Summary: DefaultSummaryOptions}},
			[][]ingest.Sample{{sample("s", ingest.Histogram, 1, 1e308), sample("s", ingest.Histogram, 1, 1e308)}}, 2, 0, false, true},
		{"a summary's count at a tiny rate", Options{Observers: ObserverDefaults{Type: Summary, Summary: DefaultSummaryOptions}},
			[][]ingest.Sample{{sample("s", ingest.Histogram, 1e-320, 1)}}, 1, 0, false, true},
		{"a Prosody bucket at a tiny rate", Options{Mappers: []Mapper{partMapper{KindPrebucketed}}},
			[][]ingest.Sample{{sample("b", c, 1e-320, 1), sample("c", c, 1, 1e308), sample("c", c, 1, 1e308)}}, 2, 0, false, true},
		{"a Prosody histogram's running sum", Options{Mappers: []Mapper{partMapper{KindPrebucketed}}},
			[][]ingest.Sample{{sample("s", ingest.Gauge, 1, -1e308)}, {sample("s", ingest.Gauge, 1, 1e308)}, {sample("s", ingest.Gauge, 1, inf)}},
			2, 0, false, true},
		{"a Prosody summary's sum and count", Options{Mappers: []Mapper{partMapper{KindPresummed}}},
			[][]ingest.Sample{{sample("s", c, 1, 1e308), sample("s", c, 1, 1e308), sample("c", c, 1e-320, 1)}}, 2, 0, false, true},
	}
	for _, tt := range tests {
		if tt.steps == nil {
			continue
		}
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.MaxSeries, tt.opts.MaxSeriesPerFamily = 10, 10
			m := New(tt.opts)
			w := m.NewWriter()
			var p Point
			now := time.Now()
			for _, step := range tt.steps {
				w.Handle(step)
				now = now.Add(10 * time.Second)
				pts := collectAt(m, now)
				if len(pts) != 1 {
					t.Fatalf("want one series, got %v", pts)
				}
				for _, p = range pts {
				}
			}
			if got := m.Dropped(DropNonFinite); got != tt.dropped {
				t.Errorf("dropped %d, want %d", got, tt.dropped)
			}
			if tt.check && !sameFloat(p.Value, tt.value) {
				t.Errorf("value %v, want %v", p.Value, tt.value)
			}
			if tt.finite {
				if bad := nonFiniteField(&p); bad != "" {
					t.Errorf("%s is not finite: %+v %+v %+v %+v", bad, p, p.Histogram, p.Summary, p.Stats)
				}
			}
		})
	}
}

func sameFloat(a, b float64) bool { return a == b || math.IsNaN(a) && math.IsNaN(b) }

// nonFiniteField names the first number of a point that is not finite, or "".
func nonFiniteField(p *Point) string {
	bad := func(vs ...float64) bool {
		for _, v := range vs {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return true
			}
		}
		return false
	}
	switch {
	case bad(p.Value, p.Delta):
		return "value or delta"
	case p.Histogram != nil && bad(append(append([]float64{p.Histogram.Count, p.Histogram.Sum, p.Histogram.DeltaCount, p.Histogram.DeltaSum},
		p.Histogram.Buckets...), p.Histogram.DeltaBuckets...)...):
		return "histogram"
	case p.Summary != nil && bad(p.Summary.Count, p.Summary.Sum, p.Summary.DeltaCount, p.Summary.DeltaSum):
		return "summary"
	case p.Stats != nil && bad(p.Stats.Count, p.Stats.Sum, p.Stats.SumSquares, p.Stats.Mean, p.Stats.Median, p.Stats.Lower, p.Stats.Upper, p.Stats.Std):
		return "timer statistics"
	}
	if p.Stats != nil {
		for _, ps := range p.Stats.Percentiles {
			if bad(ps.Count, ps.Mean, ps.Bound, ps.Sum, ps.SumSquares) {
				return "timer percentiles"
			}
		}
	}
	return ""
}
