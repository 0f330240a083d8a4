package model

import (
	"bytes"
	"runtime"
	"strconv"
	"testing"

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
