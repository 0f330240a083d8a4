package model

import (
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/statsbridge/statsbridge/ingest"
)

// TestScrapesAndExpiringFlushesDoNotDeadlock: a scrape reads the
// statsbridge_model_series self-metric (which asks the model) while a flush
// with a TTL expires series (which holds the model and takes series locks).
func TestScrapesAndExpiringFlushesDoNotDeadlock(t *testing.T) {
	m := New(Options{MaxSeries: 1 << 20, MaxSeriesPerFamily: 1 << 20, SeriesTTL: time.Hour})
	m.Register(Family{Name: "statsbridge_model_series", Type: Gauge}, "statsbridge.model_series", nil, func() float64 { return float64(m.Series()) })
	p := ingest.Parser{}
	batch := make([]ingest.Sample, 5000)
	for i := range batch {
		p.Parse(fmt.Appendf(nil, "a%d:1|g", i), &batch[i])
	}
	m.NewWriter().Handle(batch)
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
				m.Gather(func(*Family, []Point) {})
			}
		}
	}()
	done := make(chan struct{})
	go func() {
		for i := 0; i < 50; i++ {
			f := &Flush{}
			f.End = time.Now()
			m.Collect(f)
		}
		close(done)
	}()
	select {
	case <-done:
		close(stop)
	case <-time.After(5 * time.Minute): // a hang, not a speed: -race on a busy machine is slow
		t.Fatal("flushes and scrapes deadlocked")
	}
}

// TestExpiryNeverLosesAConcurrentSample: samples applied while their idle
// series expire land either before the expiry (and keep the series) or in a
// new series; every one of them is flushed.
func TestExpiryNeverLosesAConcurrentSample(t *testing.T) {
	const n = 3000
	var clock atomic.Int64
	clock.Store(time.Unix(1_000_000, 0).UnixNano())
	m := New(Options{MaxSeries: 1 << 20, MaxSeriesPerFamily: 1 << 20, SeriesTTL: 10 * time.Second,
		Now: func() time.Time { return time.Unix(0, clock.Load()) }})
	p := ingest.Parser{}
	parse := func() []ingest.Sample {
		b := make([]ingest.Sample, n)
		for i := range b {
			p.Parse(fmt.Appendf(nil, "c%d:1|c", i), &b[i])
		}
		return b
	}
	total := 0.0
	collect := func() {
		f := &Flush{}
		f.End = time.Unix(0, clock.Load())
		m.Collect(f)
		for _, pt := range f.Points {
			total += pt.Delta
		}
	}
	for round := 0; round < 30; round++ {
		m.NewWriter().Handle(parse())
		collect()
		clock.Add(int64(11 * time.Second)) // every series is now idle past its TTL
		var wg sync.WaitGroup
		late := parse()
		wg.Go(func() { m.NewWriter().Handle(late) })
		collect() // expires them while the late samples arrive
		wg.Wait()
		collect()
		clock.Add(int64(11 * time.Second))
		collect()
	}
	if want := float64(2 * n * 30); total != want {
		t.Fatalf("%v increments flushed of %v applied", total, want)
	}
}

// TestRefusalsAreRememberedThenLookedAtAgain: past max_series a new name is
// refused without taking the registry lock again for a while; once room is
// made (a series expired), it is looked at again.
func TestRefusalsAreRememberedThenLookedAtAgain(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	m := New(Options{MaxSeries: 1, MaxSeriesPerFamily: 10, SeriesTTL: 5 * time.Second, Now: func() time.Time { return now }})
	feed(t, m, "first:1|c", "second:1|c", "second:1|c", "second:1|c")
	if m.Dropped(DropMaxSeries) != 1 {
		t.Errorf("refusals counted %d: the remembered refusal should count once", m.Dropped(DropMaxSeries))
	}
	now = now.Add(refusalMemory + time.Second) // first expires, the refusal is forgotten
	collectAt(m, now)
	feed(t, m, "second:1|c")
	if p, ok := collectAt(m, now)["second"]; !ok || p.Value != 1 {
		t.Errorf("second after room was made: %+v, %v", p, ok)
	}
}

// TestAReloadMakesOlderBindingsMisses: a binding made with the mappers
// before a reload is not used after it.
func TestAReloadMakesOlderBindingsMisses(t *testing.T) {
	m := New(Options{MaxSeries: 10, MaxSeriesPerFamily: 10})
	w := m.NewWriter()
	p := ingest.Parser{}
	batch := make([]ingest.Sample, 1)
	p.Parse([]byte("app.hits:1|c"), &batch[0])
	w.Handle(batch)
	fm, _ := ParseMapping("mappings:\n- match: app.*\n  name: mapped_total\n")
	// A binding cached with the old generation after the reload cleared the
	// cache, as a bind racing SetMappers would leave it.
	m.SetMappers([]Mapper{fm}, fm.Observers())
	raw := appendCacheKey(nil, &batch[0])
	key := cacheKey{maphash.Bytes(m.seeds[0], raw), maphash.Bytes(m.seeds[1], raw)}
	old := binding{series: collect(m)["app_hits"].Series, hi: uint32(key.hi), part: PartValue, generation: 1}
	m.cache[key.lo%cacheShards].bound[key.lo] = old
	w.Handle(batch)
	got := collect(m)
	if got["mapped"].Value != 1 || got["app_hits"].Delta != 0 {
		t.Errorf("after the reload: mapped %+v, app_hits %+v", got["mapped"], got["app_hits"])
	}
}

// countingMapper maps nothing itself; it counts how often the model asks.
type countingMapper struct{ calls int }

func (c *countingMapper) Map(string, ingest.Type, Labels) (Mapping, bool) {
	c.calls++
	return Mapping{}, false
}

// TestRefusedNamesAreNotMappedAgain: a name refused once (a type conflict,
// a label limit, a mapping's drop) is remembered, so repeating it neither
// maps it again nor takes the registry lock, yet each repeat is counted as
// before.
func TestRefusedNamesAreNotMappedAgain(t *testing.T) {
	dropAll, err := ParseMapping("mappings:\n- match: gone.*\n  action: drop\n  name: dropped\n")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		opts    Options
		first   string // registers the family the refused line conflicts with
		refused string
		count   func(m *Model) uint64
	}{
		{"type conflict", Options{}, "x:1|c", "x:5|g", (*Model).Conflicts},
		{"too many labels", Options{MaxLabels: 1}, "", "a:1|c|#i:1,j:2",
			func(m *Model) uint64 { return m.Dropped(DropTooManyLabels) }},
		{"name too long", Options{MaxNameLength: 4}, "", "abcdef:1|c",
			func(m *Model) uint64 { return m.Dropped(DropNameTooLong) }},
		{"mapping drop", Options{}, "", "gone.x:1|c",
			func(m *Model) uint64 { return m.Dropped(DropMapping) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			counting := &countingMapper{}
			tt.opts.MaxSeries, tt.opts.MaxSeriesPerFamily = 100, 100
			tt.opts.Mappers = []Mapper{counting, dropAll}
			m := New(tt.opts)
			if tt.first != "" {
				feed(t, m, tt.first)
			}
			before := counting.calls
			feed(t, m, tt.refused, tt.refused, tt.refused)
			if n := counting.calls - before; n != 1 {
				t.Errorf("the refused name was mapped %d times, want once", n)
			}
			if n := tt.count(m); n != 3 {
				t.Errorf("counted %d refusals, want 3 (one per sample)", n)
			}
		})
	}
}

// TestIntervalEndsNeverLoseASample: two readers apply samples to counters
// and sets while interval ends with and without a snapshot, and scrapes,
// run beside them; every increment is in the counters' totals at the end.
func TestIntervalEndsNeverLoseASample(t *testing.T) {
	const names, rounds = 500, 40
	m := New(Options{MaxSeries: 1 << 20, MaxSeriesPerFamily: 1 << 20, SeriesTTL: time.Hour})
	p := ingest.Parser{}
	batch := func(offset int) []ingest.Sample {
		b := make([]ingest.Sample, names)
		for i := range b {
			line := fmt.Appendf(nil, "c%d:1|c", (i+offset)%names)
			if i%10 == 0 {
				line = fmt.Appendf(nil, "s%d:m%d|s", i, offset)
			}
			p.Parse(line, &b[i])
		}
		return b
	}
	var wg sync.WaitGroup
	for r := range 2 {
		wg.Go(func() {
			w := m.NewWriter()
			for round := range rounds {
				w.Handle(batch(r*7 + round))
			}
		})
	}
	stop := make(chan struct{})
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if i%2 == 0 {
				m.EndInterval(time.Now())
			} else {
				f := &Flush{}
				f.End = time.Now()
				m.Collect(f)
			}
			m.Gather(func(*Family, []Point) {})
		}
	}()
	wg.Wait()
	close(stop)
	<-ended
	total := 0.0
	for _, pt := range collect(m) {
		if pt.Series.Kind() == KindCounter {
			total += pt.Value
		}
	}
	if want := float64(2 * rounds * names * 9 / 10); total != want {
		t.Fatalf("counters total %v, want %v", total, want)
	}
}
