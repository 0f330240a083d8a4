package model

import (
	"bytes"
	"fmt"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/statsbridge/statsbridge/ingest"
)

// heapAfterGC is the live heap once the garbage is collected.
func heapAfterGC() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestLongNamesCostAHashNotTheName: 80,000 distinct 8 KB names leave the
// heap only a few MiB larger, whether they are refused (too long) or mapped
// by a mapping file onto one series: the name cache holds hashes of names,
// not names, and the mapping file's mapper keeps no cache of its own. This
// is a bound on memory, not on time.
func TestLongNamesCostAHashNotTheName(t *testing.T) {
	if testing.Short() {
		t.Skip("feeds 640 MB of names")
	}
	fm, err := ParseMapping("mappings:\n- match: \"*.long\"\n  name: long\n")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		opts    Options
		suffix  string
		perName int64 // bytes of heap a name may cost at most
		check   func(m *Model) bool
	}{
		{"refused as too long", Options{MaxNameLength: 256}, "", 64,
			func(m *Model) bool { return m.Dropped(DropNameTooLong) == 80_000 && m.Series() == 0 }},
		{"mapped onto one series", Options{Mappers: []Mapper{fm}, Observers: fm.Observers()}, ".long", 128,
			func(m *Model) bool { return m.Series() == 1 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const names, nameLen, batchSize = 80_000, 8 << 10, 100
			tt.opts.MaxSeries, tt.opts.MaxSeriesPerFamily = 1_000_000, 100_000
			m := New(tt.opts)
			w := m.NewWriter()
			batch := make([]ingest.Sample, batchSize)
			for i := range batch {
				name := append(bytes.Repeat([]byte("n"), nameLen), tt.suffix...)
				batch[i] = sample(string(name), ingest.Counter, 1, 1)
			}
			before := heapAfterGC()
			for done := 0; done < names; done += batchSize {
				for i := range batch {
					// A distinct number at the front of each name.
					strconv.AppendInt(batch[i].Name[:0], int64(1e9+done+i), 10)
				}
				w.Handle(batch)
			}
			after := heapAfterGC()
			runtime.KeepAlive(w)
			if !tt.check(m) {
				t.Fatalf("%d series, %d refused", m.Series(), m.Dropped(DropNameTooLong))
			}
			grown := int64(after) - int64(before)
			t.Logf("the heap grew by %d KiB (%d bytes a name)", grown>>10, grown/names)
			if grown > tt.perName*names {
				t.Errorf("the heap grew by %d KiB for %d names of %d bytes", grown>>10, names, nameLen)
			}
		})
	}
}

// TestMassExpiryGivesMemoryBack: once 200,000 series expire, the heap is
// back within a few MiB of what it was before they came: the model's maps
// are rebuilt to the size of what is left (Go's maps never shrink).
func TestMassExpiryGivesMemoryBack(t *testing.T) {
	if testing.Short() {
		t.Skip("makes 200,000 series")
	}
	const series, batchSize = 200_000, 1000
	now := time.Unix(1_800_000_000, 0)
	m := New(Options{MaxSeries: 1 << 20, MaxSeriesPerFamily: 1 << 20, SeriesTTL: time.Minute,
		Now: func() time.Time { return now }})
	m.Register(Family{Name: "statsbridge_kept", Type: Gauge}, "statsbridge.kept", nil, func() float64 { return 1 })
	w := m.NewWriter()
	before := heapAfterGC()
	batch := make([]ingest.Sample, batchSize)
	for i := range batch {
		batch[i] = sample("", ingest.Counter, 1, 1)
		batch[i].Tags = []ingest.Tag{{Key: []byte("k"), Value: []byte("v")}}
	}
	for done := 0; done < series; done += batchSize {
		for i := range batch {
			batch[i].Name = strconv.AppendInt(append(batch[i].Name[:0], "series.number"...), int64(done+i), 10)
		}
		w.Handle(batch)
	}
	if m.Series() != series {
		t.Fatalf("%d series, want %d", m.Series(), series)
	}
	full := heapAfterGC()
	now = now.Add(2 * time.Minute)
	collectAt(m, now)
	if m.Series() != 0 {
		t.Fatalf("%d series left", m.Series())
	}
	after := heapAfterGC()
	runtime.KeepAlive(w)
	t.Logf("heap: %d MiB before, %d MiB with the series, %d MiB after they expired", before>>20, full>>20, after>>20)
	if grown := int64(after) - int64(before); grown > 4<<20 {
		t.Errorf("the heap is %d MiB larger than before the series came", grown>>20)
	}
	if pts := collectAt(m, now); len(pts) != 1 {
		t.Errorf("the self-metric went with them: %v", pts)
	}
}

// TestHeapPerSeries: 100,000 live counter series, flushed once, take at
// most a bound of heap each, whether each has a name of its own (a family
// per series, as Graphite-style names make) or they share one name and
// differ by a tag. The bound is loose (about a fifth above what the model
// takes): it catches a per-series cost that comes back, not a few bytes.
func TestHeapPerSeries(t *testing.T) {
	if testing.Short() {
		t.Skip("makes 100,000 series")
	}
	tests := []struct {
		name   string
		format string
		bound  uint64 // bytes a series may take, the flush's point included
	}{
		{"a family per series", "app.requests.%d:1|c", 480},
		{"one family, a tag per series", "app.requests:1|c|#shard:%d", 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const series, batchSize = 100_000, 1000
			p := ingest.Parser{}
			before := heapAfterGC()
			m := New(Options{MaxSeries: series, MaxSeriesPerFamily: series})
			w := m.NewWriter()
			batch := make([]ingest.Sample, batchSize)
			for done := 0; done < series; done += batchSize {
				for i := range batch {
					p.Parse(fmt.Appendf(nil, tt.format, done+i), &batch[i])
				}
				w.Handle(batch)
			}
			f := &Flush{}
			f.End = time.Now()
			m.Collect(f)
			batch = nil
			after := heapAfterGC()
			runtime.KeepAlive(m)
			runtime.KeepAlive(f)
			if m.Series() != series || len(f.Points) != series {
				t.Fatalf("%d series, %d points", m.Series(), len(f.Points))
			}
			perSeries := (after - before) / series
			t.Logf("%d bytes of heap a series", perSeries)
			if perSeries > tt.bound {
				t.Errorf("%d bytes of heap a series, want at most %d", perSeries, tt.bound)
			}
		})
	}
}
