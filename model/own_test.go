package model

import (
	"strings"
	"testing"
	"time"
)

// TestOwnSeriesShareAFamilyClientsSendTo: when a client sends to a family
// that holds statsbridge's own series, those count against no limit, a
// scrape shows the client's series then the own ones as registered, a
// flush puts the own ones last, and Unregister takes out only its series.
func TestOwnSeriesShareAFamilyClientsSendTo(t *testing.T) {
	m := New(Options{MaxSeries: 100, MaxSeriesPerFamily: 1})
	for _, sink := range []string{"b", "a", "z"} {
		m.Register(Family{Name: "statsbridge_x", Type: Gauge, LabelNames: []string{"sink"}}, "statsbridge.x."+sink,
			Labels{{Name: "sink", Value: sink}}, func() float64 { return 1 })
	}
	feed(t, m, "statsbridge_x:5|g|#sink:c", "statsbridge_x:5|g|#sink:d", "aaa:1|g")
	if m.Dropped(DropMaxSeriesPerFamily) != 1 || m.Series() != 2 {
		t.Fatalf("%d series, %d refused at max_series_per_family 1; want the client's first taken, its second refused",
			m.Series(), m.Dropped(DropMaxSeriesPerFamily))
	}
	scrape := func() string {
		var out []string
		m.Gather(func(f *Family, ps []Point) {
			for _, p := range ps {
				out = append(out, f.Name+p.Series.Labels().String())
			}
		})
		return strings.Join(out, " ")
	}
	flush := func() (string, int) {
		f := &Flush{}
		f.End = time.Now()
		m.Collect(f)
		var out []string
		for _, p := range f.Points {
			out = append(out, p.Series.Family().Name+p.Series.Labels().String())
		}
		return strings.Join(out, " "), f.Own
	}
	steps := []struct {
		unregister    string
		scrape, flush string
		own           int
	}{
		{"", `aaa{} statsbridge_x{sink="c"} statsbridge_x{sink="b"} statsbridge_x{sink="a"} statsbridge_x{sink="z"}`,
			`aaa{} statsbridge_x{sink="c"} statsbridge_x{sink="b"} statsbridge_x{sink="a"} statsbridge_x{sink="z"}`, 2},
		{"b", `aaa{} statsbridge_x{sink="c"} statsbridge_x{sink="a"} statsbridge_x{sink="z"}`,
			`aaa{} statsbridge_x{sink="c"} statsbridge_x{sink="a"} statsbridge_x{sink="z"}`, 2},
		{"c", // not an own series: it stays
			`aaa{} statsbridge_x{sink="c"} statsbridge_x{sink="a"} statsbridge_x{sink="z"}`,
			`aaa{} statsbridge_x{sink="c"} statsbridge_x{sink="a"} statsbridge_x{sink="z"}`, 2},
	}
	for _, st := range steps {
		if st.unregister != "" {
			m.Unregister("statsbridge_x", Labels{{Name: "sink", Value: st.unregister}})
		}
		if got := scrape(); got != st.scrape {
			t.Errorf("after unregistering %q, a scrape shows %s, want %s", st.unregister, got, st.scrape)
		}
		if got, own := flush(); got != st.flush || own != st.own {
			t.Errorf("after unregistering %q, a flush has %s (own from %d), want %s (own from %d)", st.unregister, got, own, st.flush, st.own)
		}
	}
	if m.Series() != 2 {
		t.Errorf("%d series, want the client's 2", m.Series())
	}
}
