package cork

import "testing"

// BenchmarkFlushIntoBatches corks one flush of 100,000 records of 60 bytes
// into batches of 1,000, as a push sink packs a flush of as many series.
func BenchmarkFlushIntoBatches(b *testing.B) {
	record := []byte("stats_counts.app.requests.shard_12345.count 1 1796016434\n")
	var batches int
	buf := NewBuffer(Limits{Records: 1000, Bytes: 1 << 20}, func(Batch) { batches++ })
	b.ReportAllocs()
	for b.Loop() {
		buf.Cork()
		for range 100_000 {
			buf.Append(func(p []byte) []byte { return append(p, record...) })
		}
		buf.Uncork()
	}
	b.ReportMetric(float64(batches)/float64(b.N), "batches/op")
}
