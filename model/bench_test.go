package model

import (
	"fmt"
	"net/netip"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/statsbridge/statsbridge/ingest"
)

// BenchmarkReadBufferToModel measures the whole per-line path for a series
// that exists: a read buffer split into lines, parsed, batched and applied
// to the model, one datagram per line (as Prosody sends). BENCHMARKS.md has
// the figures: go test -run '^$' -bench ReadBufferToModel -benchmem ./model/
func BenchmarkReadBufferToModel(b *testing.B) {
	shapes := []struct{ name, line string }{
		{"counter", "api.requests.count:1|c"},
		{"gauge", "api.memory.used:123456789|g"},
		{"timer_with_rate", "api.request.time:320.5|ms|@0.1"},
		{"dogstatsd_tags", "api.requests:1|c|#env:prod,service:web,region:eu-west-1,canary"},
		{"set", "api.users:alice|s"},
		{"prosody_gauge", "prosody.prosody_mod_c2s.connections.localhost.c2s.ipv4:2|g"},
	}
	for _, sh := range shapes {
		b.Run(sh.name, func(b *testing.B) {
			m := New(Options{MaxSeries: 1000, MaxSeriesPerFamily: 1000, Percentiles: []float64{90}})
			r := ingest.NewReader(ingest.ReaderConfig{
				Parser:  ingest.Parser{Dialect: ingest.Dialect{RelativeGauges: true, LiteralPrefix: []byte("prosody.")}},
				Handler: m.NewWriter(), Stats: &ingest.Stats{}, MaxLine: 65536,
			})
			line := []byte(sh.line)
			r.Datagram(line, netip.Addr{}) // the series exists from here on
			r.Flush()
			f := &Flush{}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				r.Datagram(line, netip.Addr{})
				r.Flush()
				if i%100_000 == 0 { // an interval ends now and then, as in production
					m.Collect(f)
				}
			}
		})
	}
}

// BenchmarkUpdateExistingSeries measures applying parsed samples in batches
// of 256 (the reader's batch), one writer per core, to 10,000 counter
// series: the model's share of the per-line cost, with readers contending.
func BenchmarkUpdateExistingSeries(b *testing.B) {
	m := New(Options{MaxSeries: 1 << 20, MaxSeriesPerFamily: 1 << 20})
	p := ingest.Parser{}
	const names = 10000
	lines := make([][]byte, names)
	for i := range lines {
		lines[i] = []byte("app.requests." + strconv.Itoa(i) + ":1|c")
	}
	warm := m.NewWriter()
	batch := make([]ingest.Sample, 1)
	for _, l := range lines {
		p.Parse(l, &batch[0])
		warm.Handle(batch)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		w := m.NewWriter()
		batch := make([]ingest.Sample, 256)
		for i := range batch {
			p.Parse(lines[(i*37)%names], &batch[i])
		}
		w.Handle(batch) // sets the writer's clock and mapper generation
		n := 0
		for pb.Next() {
			w.apply(&batch[n%256])
			n++
		}
	})
}

// BenchmarkMemoryPerSeries creates one million counter series and reports
// the heap they take, in bytes per series (the name cache included).
func BenchmarkMemoryPerSeries(b *testing.B) {
	const series = 1_000_000
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		m := New(Options{MaxSeries: series, MaxSeriesPerFamily: series})
		w := m.NewWriter()
		p := ingest.Parser{}
		batch := make([]ingest.Sample, 1)
		buf := make([]byte, 0, 64)
		for i := 0; i < series; i++ {
			buf = fmt.Appendf(buf[:0], "app.requests:1|c|#shard:%d", i)
			p.Parse(buf, &batch[0])
			w.Handle(batch)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		if m.Series() != series {
			b.Fatalf("%d series", m.Series())
		}
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/series, "bytes/series")
		runtime.KeepAlive(m)
	}
}

// BenchmarkFlush ends intervals of 100,000 idle counter series, a family
// each: "collect" is a push sink's flush (a point for every series);
// "end_interval" a flush without push sinks, where nothing changed and
// there is nothing to do.
//
//	go test -run '^$' -bench Flush -benchmem ./model/
func BenchmarkFlush(b *testing.B) {
	const series = 100_000
	m := New(Options{MaxSeries: series, MaxSeriesPerFamily: series, SeriesTTL: time.Hour})
	p := ingest.Parser{}
	batch := make([]ingest.Sample, 1000)
	for done := 0; done < series; done += len(batch) {
		for i := range batch {
			p.Parse(fmt.Appendf(nil, "app.requests.%d:1|c", done+i), &batch[i])
		}
		m.NewWriter().Handle(batch)
	}
	f := &Flush{}
	end := time.Now()
	m.EndInterval(end) // the interval the series came in
	// The clock moves a millisecond a flush: nothing expires.
	b.Run("collect", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			end = end.Add(time.Millisecond)
			f.End = end
			m.Collect(f)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/series, "ns/series")
	})
	b.Run("end_interval", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			end = end.Add(time.Millisecond)
			m.EndInterval(end)
		}
	})
}
