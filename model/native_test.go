package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/statsbridge/statsbridge/ingest"
)

// observation is one value with its weight (1/sample rate).
type observation struct{ v, w float64 }

// clientGolangNative feeds a stream to client_golang's histogram with the
// same native settings (a weight of n is n observations, as
// statsd_exporter makes them) and returns its native part as a
// NativePoint.
func clientGolangNative(t *testing.T, o NativeOptions, stream []observation) NativePoint {
	t.Helper()
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "x", Help: "x",
		NativeHistogramBucketFactor: o.BucketFactor, NativeHistogramMaxBucketNumber: o.MaxBuckets})
	for _, ob := range stream {
		if ob.w != math.Trunc(ob.w) {
			t.Fatalf("client_golang takes whole observations only, not a weight of %v", ob.w)
		}
		for range int(ob.w) {
			h.Observe(ob.v)
		}
	}
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		t.Fatal(err)
	}
	return nativeFromDTO(m.GetHistogram())
}

// nativeFromDTO reads a protobuf native histogram (integer deltas) into a
// NativePoint's absolute counts.
func nativeFromDTO(h *dto.Histogram) NativePoint {
	p := NativePoint{Schema: h.GetSchema(), ZeroThreshold: h.GetZeroThreshold(), ZeroCount: float64(h.GetZeroCount()), Integer: true}
	read := func(spans []*dto.BucketSpan, deltas []int64) ([]NativeSpan, []float64) {
		var ss []NativeSpan
		var counts []float64
		for _, s := range spans {
			ss = append(ss, NativeSpan{Offset: s.GetOffset(), Length: s.GetLength()})
		}
		var c int64
		for _, d := range deltas {
			c += d
			counts = append(counts, float64(c))
		}
		return ss, counts
	}
	p.PositiveSpans, p.PositiveCounts = read(h.GetPositiveSpan(), h.GetPositiveDelta())
	p.NegativeSpans, p.NegativeCounts = read(h.GetNegativeSpan(), h.GetNegativeDelta())
	return p
}

// statsbridgeNative feeds the stream to a native histogram and lays it out.
func statsbridgeNative(o NativeOptions, stream []observation) NativePoint {
	n := newNativeHistogram(o)
	for _, ob := range stream {
		n.observe(ob.v, ob.w)
	}
	var a nativeArena
	p := *a.take(n, false)
	p.First = false
	return p
}

func TestNativeSchemaIsClientGolangs(t *testing.T) {
	for _, factor := range []float64{1.0001, 1.002, 1.00271, 1.003, 1.01, 1.05, 1.0905, 1.1, 1.2, 1.5, 2, 2.5, 4, 16, 300, 65536, 1e6, 1e300} {
		got := NativeSchema(factor)
		want := clientGolangNative(t, NativeOptions{BucketFactor: factor}, nil).Schema
		if got != want {
			t.Errorf("factor %v: schema %d, client_golang's %d", factor, got, want)
		}
	}
}

// TestNativeBucketBounds holds every bucket bound of every schema, and the
// floats either side of it, to client_golang's placement, across the
// float range.
func TestNativeBucketBounds(t *testing.T) {
	for schema := int32(nativeSchemaMin); schema <= nativeSchemaMax; schema++ {
		// A factor a little above the schema's own, whose double
		// logarithm is not rounded across the integer below.
		factor := math.Exp2(math.Exp2(float64(-schema))) * 1.0001
		if NativeSchema(factor) != schema {
			t.Fatalf("factor %v gives schema %d, not %d", factor, NativeSchema(factor), schema)
		}
		var fracs []float64
		if schema > 0 {
			fracs = nativeBounds[schema]
		} else {
			fracs = []float64{0.5}
		}
		checked := 0
		for _, frac := range fracs {
			for _, exp := range []int{-120, -40, -3, 0, 1, 7, 300, 1023} {
				bound := math.Ldexp(frac, exp+1)
				for _, v := range []float64{math.Nextafter(bound, 0), bound, math.Nextafter(bound, math.Inf(1))} {
					for _, signed := range []float64{v, -v} {
						want := clientGolangKey(t, factor, signed)
						if got := nativeKey(signed, schema); got != want {
							t.Fatalf("schema %d: %v (%x) goes to bucket %d, client_golang's %d", schema, signed, math.Float64bits(signed), got, want)
						}
						checked++
					}
				}
			}
		}
		if schema == nativeSchemaMax && checked < 256*8*6 {
			t.Errorf("only %d values checked at schema 8", checked)
		}
	}
}

// clientGolangKey is the bucket client_golang puts v in: a histogram of v
// alone has one bucket, and its only span's offset is its index.
func clientGolangKey(t *testing.T, factor, v float64) int32 {
	t.Helper()
	var m dto.Metric
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "x", Help: "x", NativeHistogramBucketFactor: factor})
	h.Observe(v)
	if err := h.Write(&m); err != nil {
		t.Fatal(err)
	}
	spans := m.GetHistogram().GetPositiveSpan()
	if v < 0 {
		spans = m.GetHistogram().GetNegativeSpan()
	}
	if len(spans) != 1 {
		t.Fatalf("%v: spans %v", v, spans)
	}
	return spans[0].GetOffset()
}

// TestNativeHistogramIsClientGolangs: the same observations with the same
// settings give the same schema, zero bucket, spans and counts as
// client_golang's native histogram, bucket cap and resolution reductions
// included.
func TestNativeHistogramIsClientGolangs(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 42))
	latencies := func(n int, median float64, weights ...float64) []observation {
		out := make([]observation, n)
		for i := range out {
			w := 1.0
			if len(weights) > 0 {
				w = weights[i%len(weights)]
			}
			out[i] = observation{median * math.Exp(rng.NormFloat64()), w}
		}
		return out
	}
	spread := func(n int) []observation {
		out := make([]observation, n)
		for i := range out {
			out[i] = observation{math.Ldexp(1+rng.Float64(), rng.IntN(120)-60), 1}
		}
		return out
	}
	signed := []observation{{-3, 1}, {0, 2}, {1e-40, 1}, {-1e-40, 1}, {nativeZeroThreshold, 1}, {math.Nextafter(nativeZeroThreshold, 1), 1}, {2.5, 1}, {-0.001, 3}, {7, 1}, {0, 1}, {-3.1, 1}, {1024, 1}}
	tests := []struct {
		name   string
		opts   NativeOptions
		stream []observation
		// reductions is how many times the resolution must halve, at
		// least: a case that claims to pass the cap must pass it.
		reductions int
	}{
		{"timer latencies at 1.1", NativeOptions{BucketFactor: 1.1, MaxBuckets: 256}, latencies(2000, 0.05), 0},
		{"sampled at rates 0.5, 0.25 and 0.1", NativeOptions{BucketFactor: 1.1, MaxBuckets: 256}, latencies(500, 0.3, 1, 2, 4, 10), 0},
		{"negative, zero and below the zero threshold", NativeOptions{BucketFactor: 1.1, MaxBuckets: 256}, signed, 0},
		{"the finest schema", NativeOptions{BucketFactor: 1.001, MaxBuckets: 4096}, latencies(1000, 2), 0},
		{"the coarsest schema", NativeOptions{BucketFactor: 1e6, MaxBuckets: 256}, spread(300), 0},
		{"past the cap: halved until it fits", NativeOptions{BucketFactor: 1.1, MaxBuckets: 20}, latencies(1000, 0.05), 2},
		{"a spread the cap cannot hold: one halving per observation", NativeOptions{BucketFactor: 1.01, MaxBuckets: 10}, spread(60), 6},
		{"past the cap with weights: one halving per observation a weight stands for", NativeOptions{BucketFactor: 1.05, MaxBuckets: 3},
			[]observation{{1, 1}, {100, 1}, {1e4, 1}, {1e6, 5}, {1e8, 1}}, 2},
		{"a cap of one bucket, signed", NativeOptions{BucketFactor: 1.1, MaxBuckets: 1}, signed, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := clientGolangNative(t, tt.opts, tt.stream)
			got := statsbridgeNative(tt.opts, tt.stream)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("statsbridge:\n%s\nclient_golang:\n%s", describeNative(got), describeNative(want))
			}
			if schema := NativeSchema(tt.opts.BucketFactor); schema-got.Schema < int32(tt.reductions) {
				t.Errorf("schema %d from %d: fewer than the %d halvings the case is about", got.Schema, schema, tt.reductions)
			}
		})
	}
}

func describeNative(p NativePoint) string {
	return fmt.Sprintf("schema %d zero %v (threshold %g) integer %v\n  + %v %v\n  - %v %v", p.Schema, p.ZeroCount, p.ZeroThreshold, p.Integer,
		p.PositiveSpans, p.PositiveCounts, p.NegativeSpans, p.NegativeCounts)
}

func TestNativeOptions(t *testing.T) {
	tests := []struct {
		opts       NativeOptions
		on         bool
		schema     int32
		maxBuckets int
	}{
		{NativeOptions{}, false, 0, 0},
		{NativeOptions{BucketFactor: 1}, false, 0, 0},
		{NativeOptions{BucketFactor: math.Inf(1)}, false, 0, 0},
		{NativeOptions{BucketFactor: math.NaN()}, false, 0, 0},
		{NativeOptions{BucketFactor: 1.1}, true, 3, DefaultNativeMaxBuckets},
		{NativeOptions{BucketFactor: 2, MaxBuckets: 10}, true, 0, 10},
		{NativeOptions{BucketFactor: 1.1, MaxBuckets: math.MaxUint32}, true, 3, MaxNativeBuckets},
	}
	for _, tt := range tests {
		n := newNativeHistogram(tt.opts)
		switch {
		case tt.opts.On() != tt.on || (n != nil) != tt.on:
			t.Errorf("%+v: on %v, histogram %v; want %v", tt.opts, tt.opts.On(), n != nil, tt.on)
		case n != nil && (n.schema != tt.schema || n.maxBuckets != tt.maxBuckets):
			t.Errorf("%+v: schema %d, cap %d; want %d, %d", tt.opts, n.schema, n.maxBuckets, tt.schema, tt.maxBuckets)
		}
	}
}

// TestNativeHistogramsInTheModel: a timer's family keeps native buckets
// when the observer defaults ask, in seconds, beside its classic buckets;
// a fractional weight makes the counts floats; the first flush says it is
// the first; reductions past the cap are counted.
func TestNativeHistogramsInTheModel(t *testing.T) {
	obs := DefaultObservers
	obs.Native = NativeOptions{BucketFactor: 1.1, MaxBuckets: 4}
	m := New(Options{MaxSeries: 100, MaxSeriesPerFamily: 10, Observers: obs})
	if m.NativeHistograms() {
		t.Fatal("an empty model has native histograms")
	}
	feed(t, m, "api.time:250|ms", "api.time:1500|ms|@0.5", "size:3|h|@0.3", "hits:1|c")
	if !m.NativeHistograms() {
		t.Fatal("no native histograms after a timer")
	}
	got := pointsByFamily(m)
	timer := got["api_time_seconds"][0].Histogram
	if timer.Native == nil || len(timer.Buckets) != len(DefaultBuckets)+1 {
		t.Fatalf("timer: native %v, classic buckets %v", timer.Native, timer.Buckets)
	}
	want := NativePoint{Schema: 3, ZeroThreshold: nativeZeroThreshold, Integer: true, First: true,
		PositiveSpans:  []NativeSpan{{Offset: nativeKey(0.25, 3), Length: 1}, {Offset: nativeKey(1.5, 3) - nativeKey(0.25, 3) - 1, Length: 1}},
		PositiveCounts: []float64{1, 2}}
	if !reflect.DeepEqual(*timer.Native, want) {
		t.Errorf("timer:\n%s\nwant\n%s", describeNative(*timer.Native), describeNative(want))
	}
	if size := got["size"][0].Histogram.Native; size == nil || size.Integer || size.PositiveCounts[0] != 1/0.3 {
		t.Errorf("size sent at @0.3: %+v, want a float count of %v", size, 1/0.3)
	}
	if got["hits"][0].Histogram != nil {
		t.Error("a counter has a histogram")
	}
	if n := m.NativeSchemaReductions(); n != 0 {
		t.Errorf("%d reductions before any", n)
	}
	feed(t, m, "api.time:10|ms", "api.time:100000|ms", "api.time:0.1|ms")
	timer = pointsByFamily(m)["api_time_seconds"][0].Histogram
	if timer.Native.First || timer.Native.Schema >= 3 {
		t.Errorf("second flush: first %v, schema %d (5 buckets past a cap of 4 must halve)", timer.Native.First, timer.Native.Schema)
	}
	if n := m.NativeSchemaReductions(); n != uint64(3-timer.Native.Schema) {
		t.Errorf("%d reductions counted, schema went from 3 to %d", n, timer.Native.Schema)
	}
}

// TestMappingFileNativeOptions: where a statsd_exporter mapping file sets
// native histogram options (in a mapping or in its defaults), they mean
// what statsd_exporter's registry makes of them; where it sets none,
// statsbridge's own defaults decide.
func TestMappingFileNativeOptions(t *testing.T) {
	const mappings = `
- match: "set.factor.*"
  name: "factor_only"
  histogram_options:
    native_histogram_bucket_factor: 1.5
- match: "set.max.*"
  name: "max_only"
  histogram_options:
    native_histogram_max_buckets: 40
- match: "set.none.*"
  name: "none_set"
- match: "summary.*"
  name: "a_summary"
  observer_type: summary
`
	own := NativeOptions{BucketFactor: 1.01, MaxBuckets: 500}
	tests := []struct {
		name     string
		defaults string
		own      NativeOptions
		want     map[string]NativeOptions // by the name sent
	}{
		{"no native settings anywhere, statsbridge's off", "defaults:\n  observer_type: histogram\n", NativeOptions{},
			map[string]NativeOptions{"set.factor.a": {1.5, 256}, "set.max.a": {1.1, 40}, "set.none.a": {}, "unmapped": {}, "summary.a": {}}},
		{"no native settings in the defaults: statsbridge's for the rest", "defaults:\n  observer_type: histogram\n", own,
			map[string]NativeOptions{"set.factor.a": {1.5, 256}, "set.max.a": {1.1, 40}, "set.none.a": own, "unmapped": own, "summary.a": {}}},
		{"a factor in the defaults: statsd_exporter's meaning everywhere",
			"defaults:\n  observer_type: histogram\n  histogram_options:\n    native_histogram_bucket_factor: 1.05\n", own,
			map[string]NativeOptions{"set.factor.a": {1.5, 256}, "set.max.a": {1.05, 40}, "set.none.a": {1.05, 256}, "unmapped": {1.05, 256}, "summary.a": {}}},
		{"a cap in the defaults: statsd_exporter's factor of 1.1",
			"defaults:\n  observer_type: histogram\n  histogram_options:\n    native_histogram_max_buckets: 64\n", own,
			map[string]NativeOptions{"set.factor.a": {1.5, 64}, "set.max.a": {1.1, 40}, "set.none.a": {1.1, 64}, "unmapped": {1.1, 64}, "summary.a": {}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fm, err := ParseMapping(tt.defaults + "mappings:" + mappings)
			if err != nil {
				t.Fatal(err)
			}
			fm.NativeDefaults(tt.own)
			m := New(Options{MaxSeries: 100, MaxSeriesPerFamily: 10, Mappers: []Mapper{fm}, Observers: fm.Observers()})
			for name, want := range tt.want {
				feed(t, m, name+":5|ms")
				d := m.Explain(&ingest.Sample{Name: []byte(name), Type: ingest.Timer})
				if d.Family.Native != want {
					t.Errorf("%s (%s): native %+v, want %+v", name, d.Family.Name, d.Family.Native, want)
				}
			}
			for _, p := range collect(m) {
				if on := p.Histogram != nil && p.Histogram.Native != nil; on != p.Series.Family().Native.On() {
					t.Errorf("%s: native histogram %v, family's options %+v", p.Series.Family().Name, on, p.Series.Family().Native)
				}
			}
		})
	}
}

// TestNativeCountsPastExactIntegers are floats: past 2^53 (a long-lived
// series sampled at 1e-6), whole weights make counts no integer field can
// be trusted with.
func TestNativeCountsPastExactIntegers(t *testing.T) {
	n := newNativeHistogram(NativeOptions{BucketFactor: 1.1})
	var a nativeArena
	n.observe(1, 1e6)
	if p := a.take(n, false); !p.Integer {
		t.Errorf("a weight of 1e6: %+v, want integer counts", p)
	}
	n.observe(-1, 1<<53)
	if p := a.take(n, false); p.Integer {
		t.Errorf("a count past 2^53: %+v, want float counts", p)
	}
}

// TestNativeHistogramMemoryIsBounded: values spread over the whole float
// range, of both signs, never make a series keep more buckets than its cap
// (past an observation's halving), nor its schema go below -4.
func TestNativeHistogramMemoryIsBounded(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, maxBuckets := range []uint32{1, 16, 256} {
		n := newNativeHistogram(NativeOptions{BucketFactor: 1.0001, MaxBuckets: maxBuckets})
		most := 0
		for range 100_000 {
			v := math.Ldexp(1+rng.Float64(), rng.IntN(2040)-1020)
			if rng.IntN(2) == 0 {
				v = -v
			}
			n.observe(v, float64(1+rng.IntN(3)))
			most = max(most, len(n.positive.keys)+len(n.negative.keys))
		}
		// At schema -4 a bucket spans 2^16: (2^-128, 2^1024] takes 73 of
		// them a sign, and nothing merges them further.
		if limit := max(int(maxBuckets), 2*73); most > limit+1 || n.schema < nativeSchemaMin {
			t.Errorf("cap %d: up to %d buckets, schema %d", maxBuckets, most, n.schema)
		}
	}
}

// BenchmarkTimerObservation measures applying a timer value to a series
// that exists, with and without native buckets, over 1,000 values from
// 1 ms to a few seconds: go test -run '^$' -bench TimerObservation ./model/
func BenchmarkTimerObservation(b *testing.B) {
	p := ingest.Parser{}
	batch := make([]ingest.Sample, 1000)
	rng := rand.New(rand.NewPCG(3, 4))
	lines := make([][]byte, len(batch))
	for i := range batch {
		lines[i] = fmt.Appendf(nil, "api.time:%.3f|ms|@0.5", 30*math.Exp(1.5*rng.NormFloat64()))
		if r := p.Parse(lines[i], &batch[i]); r != ingest.ReasonNone {
			b.Fatal(r)
		}
	}
	for _, native := range []NativeOptions{{}, {BucketFactor: 1.1, MaxBuckets: 256}} {
		b.Run(fmt.Sprintf("native=%v", native.On()), func(b *testing.B) {
			obs := DefaultObservers
			obs.Native = native
			m := New(Options{MaxSeries: 10, MaxSeriesPerFamily: 10, Percentiles: []float64{90}, Observers: obs})
			w := m.NewWriter()
			w.Handle(batch)
			f := &Flush{}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				w.Handle(batch)
				if i%100 == 0 {
					m.Collect(f) // the interval's values are kept until a flush
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(batch)), "ns/value")
		})
	}
}
