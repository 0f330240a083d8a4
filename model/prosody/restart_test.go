package prosody

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/statsbridge/statsbridge/ingest"
	"github.com/statsbridge/statsbridge/model"
)

// prosodyHistogram sends what Prosody's util/statsd.lua sends for one
// histogram series: on an observation, +1 on every bucket at or above it and
// +1 on the count at once; its running sum as a gauge only when Prosody
// collects statistics (gauges are corked until then).
type prosodyHistogram struct {
	name   string
	bounds []string // as Prosody spells them, +Inf last
	sum    float64
}

func (p *prosodyHistogram) observe(v float64) []string {
	var lines []string
	for _, b := range p.bounds {
		var bound float64
		fmt.Sscan(b, &bound)
		if b == "+Inf" || v <= bound {
			lines = append(lines, p.name+".bucket."+b+":1|c")
		}
	}
	p.sum += v
	return append(lines, p.name+".count:1|c")
}

func (p *prosodyHistogram) collect() string { return fmt.Sprintf("%s.sum:%v|g", p.name, p.sum) }

// relay is a model with the Prosody dialect, as one statsbridge run.
type relay struct{ m *model.Model }

func newRelay() *relay {
	return &relay{m: model.New(model.Options{MaxSeries: 100, MaxSeriesPerFamily: 100,
		Mappers: []model.Mapper{NewMapper("prosody", Builtin(), []string{"localhost"}, NewState())}})}
}

func (r *relay) send(t *testing.T, lines ...string) {
	p := ingest.Parser{Dialect: ingest.Dialect{LiteralPrefix: []byte("prosody.")}}
	batch := make([]ingest.Sample, len(lines))
	for i, l := range lines {
		if p.Parse([]byte(l), &batch[i]) != ingest.ReasonNone {
			t.Fatalf("%q", l)
		}
	}
	r.m.NewWriter().Handle(batch)
}

// interval ends an interval and returns the histogram's point.
func (r *relay) interval() *model.HistogramPoint {
	f := &model.Flush{}
	f.End = time.Now()
	r.m.Collect(f)
	for _, p := range f.Points {
		if p.Series.Family().Name == "prosody_mod_smacks__tx_acked_stanzas" {
			return p.Histogram
		}
	}
	return nil
}

// TestMeanPerIntervalAcrossRestarts: for delta sinks the interval's sum is
// the change in Prosody's running total, so sum/count per interval is the
// mean of the interval's observations, except in the interval that holds a
// statsbridge restart; a Prosody restart (its total falls) counts from
// zero and keeps even that interval right. The cumulative _sum is always
// Prosody's running total, as Prosody's own exposition shows it.
func TestMeanPerIntervalAcrossRestarts(t *testing.T) {
	prosody := &prosodyHistogram{name: "prosody.prosody_mod_smacks.tx_acked_stanzas.localhost",
		bounds: []string{"0", "1", "2", "4", "8", "16", "32", "+Inf"}}
	steps := []struct {
		what           string
		observe        []float64
		restartRelay   bool
		restartProsody bool
		mean           float64 // NaN: not checked (the window holds a restart)
		count          float64 // the cumulative count statsbridge has seen
	}{
		{what: "Prosody starts after statsbridge", observe: []float64{1, 3}, mean: 2, count: 2},
		{what: "steady", observe: []float64{4}, mean: 4, count: 3},
		{what: "statsbridge restarted", observe: []float64{2}, restartRelay: true, mean: math.NaN(), count: 1},
		{what: "after the statsbridge restart", observe: []float64{6, 8}, mean: 7, count: 3},
		{what: "Prosody restarted", observe: []float64{5}, restartProsody: true, mean: 5, count: 4},
		{what: "after the Prosody restart", observe: []float64{1, 2, 3}, mean: 2, count: 7},
	}
	r := newRelay()
	for _, s := range steps {
		if s.restartRelay {
			r = newRelay()
		}
		if s.restartProsody {
			prosody.sum = 0
		}
		for _, v := range s.observe {
			r.send(t, prosody.observe(v)...)
		}
		r.send(t, prosody.collect())
		h := r.interval()
		if h == nil {
			t.Fatalf("%s: no histogram", s.what)
		}
		if mean := h.DeltaSum / h.DeltaCount; !math.IsNaN(s.mean) && mean != s.mean {
			t.Errorf("%s: mean of the interval %v (sum %v / count %v), want %v", s.what, mean, h.DeltaSum, h.DeltaCount, s.mean)
		}
		if h.Sum != prosody.sum || h.Count != s.count {
			t.Errorf("%s: _sum %v _count %v, want Prosody's running total %v and %v", s.what, h.Sum, h.Count, prosody.sum, s.count)
		}
		if inf := h.Buckets[len(h.Buckets)-1]; inf != h.Count {
			t.Errorf("%s: +Inf bucket %v != count %v", s.what, inf, h.Count)
		}
	}
}
