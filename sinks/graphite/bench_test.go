package graphite

import (
	"fmt"
	"testing"

	"github.com/statsbridge/statsbridge/cork"
	"github.com/statsbridge/statsbridge/model"
	"github.com/statsbridge/statsbridge/model/modeltest"
)

// BenchmarkEncodeEtsyTimers renders one flush of 2,000 tagged timers in the
// etsy layout (about 14 lines each) with an external label.
func BenchmarkEncodeEtsyTimers(b *testing.B) {
	lines := make([]string, 2000)
	for i := range lines {
		lines[i] = fmt.Sprintf("api.t%d:%d|ms|#env:prod,region:eu", i, i%300)
	}
	f := modeltest.Flush(modeltest.Model(b, lines...), modeltest.Interval(start))
	enc := NewEncoder(Options{Layout: Etsy, ExternalLabels: model.Labels{{Name: "instance", Value: "relay1"}}})
	buf := cork.NewBuffer(cork.Limits{Records: 1 << 20, Bytes: 1 << 30}, func(cork.Batch) {})
	b.ReportAllocs()
	for b.Loop() {
		buf.Cork()
		enc.Encode(f, buf)
		buf.Uncork()
	}
}

// BenchmarkEncodeEtsyCounters renders one flush of 100,000 untagged
// counters in the etsy layout (two lines each), the shape a million
// Graphite-style names make.
func BenchmarkEncodeEtsyCounters(b *testing.B) {
	lines := make([]string, 100_000)
	for i := range lines {
		lines[i] = fmt.Sprintf("bench.counter.%d:1|c", i)
	}
	f := modeltest.Flush(modeltest.Model(b, lines...), modeltest.Interval(start))
	enc := NewEncoder(Options{Layout: Etsy})
	buf := cork.NewBuffer(cork.Limits{Records: 1024, Bytes: 1 << 20}, func(cork.Batch) {})
	b.ReportAllocs()
	for b.Loop() {
		buf.Cork()
		enc.Encode(f, buf)
		buf.Uncork()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(lines)), "ns/series")
}
