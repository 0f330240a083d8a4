package model

import (
	"slices"
	"testing"
	"time"
)

// TestAReloadedSeriesTTLAppliesToTheSeriesHeld: a reload's series_ttl
// applies to the series that exist, by their last sample, whether
// series_ttl was set before or not; set to 0, nothing expires any more.
func TestAReloadedSeriesTTLAppliesToTheSeriesHeld(t *testing.T) {
	start := time.Unix(1_800_000_000, 0)
	now := start
	opts := Options{MaxSeries: 100, MaxSeriesPerFamily: 100, Now: func() time.Time { return now }}
	m := New(opts)
	reload := func(ttl time.Duration) {
		o := opts
		o.SeriesTTL = ttl
		m.Reconfigure(o)
	}
	names := func() []string {
		var out []string
		m.Gather(func(f *Family, _ []Point) { out = append(out, f.Name) })
		return out
	}
	steps := []struct {
		at    time.Duration // since start
		ttl   time.Duration // reloaded before the step, when not -1
		lines []string
		want  []string // the families after the interval ends at at
	}{
		{0, -1, []string{"early:1|c", "busy:1|c"}, []string{"busy", "early"}},
		{10 * time.Second, -1, []string{"later:1|c"}, []string{"busy", "early", "later"}},
		// Set after the series came: early (last seen at 0) and later (10 s)
		// go a minute after their last sample, busy stays as it is sent.
		{50 * time.Second, time.Minute, []string{"busy:1|c"}, []string{"busy", "early", "later"}},
		{65 * time.Second, -1, nil, []string{"busy", "later"}},
		{75 * time.Second, -1, []string{"fresh:1|c"}, []string{"busy", "fresh"}},
		// Lengthened: busy (last seen at 50 s) stays past 110 s.
		{80 * time.Second, 10 * time.Minute, nil, []string{"busy", "fresh"}},
		{5 * time.Minute, -1, nil, []string{"busy", "fresh"}},
		// Off: nothing expires.
		{6 * time.Minute, 0, nil, []string{"busy", "fresh"}},
		{time.Hour, -1, []string{"off:1|c"}, []string{"busy", "fresh", "off"}},
		// On again: each by its last sample, those registered while it
		// was off included.
		{2 * time.Hour, time.Hour, nil, []string{"off"}},
		{2*time.Hour + time.Minute, -1, nil, nil},
	}
	for _, st := range steps {
		if st.ttl >= 0 {
			reload(st.ttl)
		}
		now = start.Add(st.at)
		feed(t, m, st.lines...)
		m.EndInterval(now)
		if got := names(); !slices.Equal(got, st.want) {
			t.Errorf("at %v: families %v, want %v", st.at, got, st.want)
		}
	}
}
