package model

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// workDone is what the model's interval ends did between two readings.
type workDone struct{ namesSorted, expiryChecks, intervalsEnded int64 }

func (m *Model) workSoFar() workDone {
	return workDone{m.work.namesSorted.Load(), m.work.expiryChecks.Load(), m.work.intervalsEnded.Load()}
}

func (w workDone) since(before workDone) workDone {
	return workDone{w.namesSorted - before.namesSorted, w.expiryChecks - before.expiryChecks,
		w.intervalsEnded - before.intervalsEnded}
}

// TestAFlushCostsWhatChanged: with a TTL in force, a flush of series that
// did not change sorts no name and looks at no series to expire; new names
// are sorted once, and expiry looks only at the series whose TTL may have
// passed. It counts operations, not time.
func TestAFlushCostsWhatChanged(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	m := New(Options{MaxSeries: 1 << 20, MaxSeriesPerFamily: 1 << 20, SeriesTTL: time.Minute,
		Now: func() time.Time { return now }})
	lines := func(format string, n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf(format, i)
		}
		return out
	}
	feed(t, m, lines("idle.%d:1|c", 5000)...)
	feed(t, m, lines("shared:1|g|#i:%d", 5000)...)
	flush := func() workDone {
		before := m.workSoFar()
		now = now.Add(10 * time.Second)
		collectAt(m, now)
		return m.workSoFar().since(before)
	}
	if w := flush(); w.namesSorted > 5001 {
		t.Errorf("the first flush sorted %d names for 5001 families", w.namesSorted)
	}
	tests := []struct {
		name  string
		lines []string
		want  workDone
	}{
		{"nothing changed", nil, workDone{}},
		{"values changed", lines("idle.%d:2|c", 100), workDone{}},
		{"ten new families", lines("new.%d:1|c", 10), workDone{namesSorted: 10}},
		{"a new series in a known family", []string{"shared:1|g|#i:new"}, workDone{}},
	}
	for _, tt := range tests {
		feed(t, m, tt.lines...)
		if w := flush(); w != tt.want {
			t.Errorf("%s: the flush did %+v, want %+v", tt.name, w, tt.want)
		}
	}
	// 9,900 of the first 10,000 series were last touched 50 s ago; 30 s
	// on, they expire, and expiry looks at them and hardly at anything
	// else.
	now = now.Add(30 * time.Second)
	before := m.workSoFar()
	collectAt(m, now)
	w := m.workSoFar().since(before)
	if w.expiryChecks < 9900 || w.expiryChecks > 10000 || m.Series() != 111 {
		t.Errorf("expiry looked at %d series and left %d; want the 9,900 that expired looked at", w.expiryChecks, m.Series())
	}
}

// TestWithoutPushSinksAnIntervalEndLooksAtWhatChanged: ending an interval
// for a model no push sink reads looks at the series that changed in it
// (or were registered), and at no other.
func TestWithoutPushSinksAnIntervalEndLooksAtWhatChanged(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	m := New(Options{MaxSeries: 1 << 20, MaxSeriesPerFamily: 1 << 20, Now: func() time.Time { return now }})
	for i := range 100 {
		feed(t, m, fmt.Sprintf("c.%d:1|c", i), fmt.Sprintf("g:%d|g|#i:%d", i, i), fmt.Sprintf("t.%d:%d|ms", i, i))
	}
	tests := []struct {
		name  string
		lines []string
		want  int64
	}{
		{"the interval the series came in", nil, 300},
		{"nothing changed", nil, 0},
		{"three changed, one twice", []string{"c.1:1|c", "c.1:1|c", "g:5|g|#i:7", "t.9:1|ms"}, 3},
		{"one new", []string{"new:1|c"}, 1},
	}
	for _, tt := range tests {
		feed(t, m, tt.lines...)
		before := m.workSoFar()
		now = now.Add(10 * time.Second)
		m.EndInterval(now)
		if got := m.workSoFar().since(before).intervalsEnded; got != tt.want {
			t.Errorf("%s: looked at %d series, want %d", tt.name, got, tt.want)
		}
	}
}

// TestWithoutPushSinksSetsCountEachInterval: a scrape shows a set's
// distinct members of the last interval that ended, and 0 once an interval
// ended without members, though no push sink ends intervals with a snapshot.
func TestWithoutPushSinksSetsCountEachInterval(t *testing.T) {
	m := newTestModel()
	scrape := func() float64 {
		v := -1.0
		m.Gather(func(_ *Family, ps []Point) { v = ps[0].Value })
		return v
	}
	feed(t, m, "users:alice|s", "users:bob|s", "users:alice|s")
	if v := scrape(); v != 0 {
		t.Errorf("before the interval ended: %v, want 0", v)
	}
	m.EndInterval(time.Now())
	if v := scrape(); v != 2 {
		t.Errorf("after the interval: %v, want 2", v)
	}
	m.EndInterval(time.Now())
	if v := scrape(); v != 0 {
		t.Errorf("after an interval without members: %v, want 0", v)
	}
	feed(t, m, "users:carol|s")
	m.EndInterval(time.Now())
	if v := scrape(); v != 1 {
		t.Errorf("after carol: %v, want 1", v)
	}
}

// TestWithoutPushSinksIdleSeriesExpire: the expiry of a model no push sink
// reads works from the interval ends alone.
func TestWithoutPushSinksIdleSeriesExpire(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	m := New(Options{MaxSeries: 100, MaxSeriesPerFamily: 100, SeriesTTL: 30 * time.Second,
		Now: func() time.Time { return now }})
	feed(t, m, "idle:1|c", "busy:1|c")
	for range 5 {
		now = now.Add(10 * time.Second)
		feed(t, m, "busy:1|c")
		m.EndInterval(now)
	}
	pts := collectAt(m, now)
	if _, ok := pts["idle"]; ok || m.Series() != 1 {
		t.Errorf("idle for 50s with a TTL of 30s, it is still there: %d series", m.Series())
	}
	if p := pts["busy"]; p.Value != 6 {
		t.Errorf("busy: %+v, want 6", p)
	}
}

// TestFamiliesStayInNameOrder: families come and go over many flushes, a
// few at a time and in bursts that make the order be rebuilt; every flush
// and every scrape lists the live families, each once, in name order.
func TestFamiliesStayInNameOrder(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	m := New(Options{MaxSeries: 1 << 20, MaxSeriesPerFamily: 1 << 20, SeriesTTL: 25 * time.Second,
		Now: func() time.Time { return now }})
	rng := rand.New(rand.NewPCG(1, 2))
	live := map[string]time.Time{} // family: last sample
	for round := range 60 {
		n := 1 + rng.IntN(20)
		if round%15 == 7 {
			n = 3000 // a burst
		}
		var lines []string
		for range n {
			name := fmt.Sprintf("f%05d", rng.IntN(50_000))
			lines = append(lines, name+":1|c")
			live[name] = now
		}
		feed(t, m, lines...)
		now = now.Add(10 * time.Second)
		f := &Flush{}
		f.End = now
		m.Collect(f)
		// The flush has a point of every series, then removes the expired.
		wantFlushed := slices.Sorted(maps.Keys(live))
		for name, last := range live {
			if last.Before(now.Add(-25 * time.Second)) {
				delete(live, name)
			}
		}
		var flushed, scraped []string
		for _, p := range f.Points {
			flushed = append(flushed, p.Series.Family().Name)
		}
		m.Gather(func(f *Family, _ []Point) { scraped = append(scraped, f.Name) })
		wantScraped := slices.Sorted(maps.Keys(live))
		if !slices.Equal(flushed, wantFlushed) || !slices.Equal(scraped, wantScraped) {
			t.Fatalf("round %d: %d families flushed, %d scraped, want %d and %d in name order\nflushed %v\nscraped %v",
				round, len(flushed), len(scraped), len(wantFlushed), len(wantScraped), head(flushed), head(scraped))
		}
	}
}

func head(s []string) []string { return s[:min(len(s), 20)] }

// TestALargeFamilyFindsItsSeriesAsTheyComeAndGo: a family large enough to
// keep an index finds each series by its labels while series expire and
// come back (series leave their family by swapping places).
func TestALargeFamilyFindsItsSeriesAsTheyComeAndGo(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	m := New(Options{MaxSeries: 1000, MaxSeriesPerFamily: 1000, SeriesTTL: 15 * time.Second,
		Now: func() time.Time { return now }})
	line := func(i int) string { return fmt.Sprintf("big:1|c|#i:%d", i) }
	var all, even []string
	for i := range 100 {
		all = append(all, line(i))
		if i%2 == 0 {
			even = append(even, line(i))
		}
	}
	feed(t, m, all...)
	for range 2 { // the odd series expire
		now = now.Add(10 * time.Second)
		feed(t, m, even...)
		collectAt(m, now)
	}
	if m.Series() != 50 {
		t.Fatalf("%d series, want the 50 even ones", m.Series())
	}
	feed(t, m, all...) // the odd ones come back, new
	pts := collectAt(m, now.Add(10*time.Second))
	for i := range 100 {
		want := 1.0
		if i%2 == 0 {
			want = 4
		}
		if p := pts[identity("big", Labels{{"i", fmt.Sprint(i)}})]; p.Value != want {
			t.Errorf("big{i=%d}: %v, want %v", i, p.Value, want)
		}
	}
	if len(pts) != 100 {
		t.Errorf("%d points, want 100", len(pts))
	}
}

// TestAFamilyIndexTellsCollidingLabelSetsApart: two label sets whose
// hashes collide are both found, and either can leave.
func TestAFamilyIndexTellsCollidingLabelSetsApart(t *testing.T) {
	m := newTestModel()
	fe, _ := m.newFamily(&Family{Name: "f", Type: Counter}, KindCounter, "f")
	fe.index = &familyIndex{byHash: map[uint64]*Series{}}
	a := newSeries(fe, KindCounter, Labels{{"i", "a"}}, "f", nil, 0, nil)
	b := newSeries(fe, KindCounter, Labels{{"i", "b"}}, "f", nil, 0, nil)
	const h = 42 // as if both label sets hashed to it
	fe.series = []*Series{a, b}
	fe.index.add(a, h)
	fe.index.add(b, h)
	if fe.lookup(a.labels, h) != a || fe.lookup(b.labels, h) != b || fe.lookup(Labels{{"i", "c"}}, h) != nil {
		t.Fatal("colliding label sets are not told apart")
	}
}
