package model

import (
	"bytes"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/statsbridge/statsbridge/ingest"
	"github.com/statsbridge/statsbridge/throttle"
)

func parse(t *testing.T, line string) *ingest.Sample {
	t.Helper()
	var s ingest.Sample
	if r := (&ingest.Parser{}).Parse([]byte(line), &s); r != ingest.ReasonNone {
		t.Fatalf("%q: %v", line, r)
	}
	return &s
}

// dryCountingMapper counts its Map calls, as the Prosody dialect counts
// unknown names; DryMap does not.
type dryCountingMapper struct{ maps, dry atomic.Int64 }

func (c *dryCountingMapper) Map(name string, typ ingest.Type, tags Labels) (Mapping, bool) {
	c.maps.Add(1)
	return c.DryMap(name, typ, tags)
}

func (c *dryCountingMapper) DryMap(name string, typ ingest.Type, tags Labels) (Mapping, bool) {
	if !strings.HasPrefix(name, "mine.") {
		return Mapping{}, false
	}
	c.dry.Add(1)
	return Mapping{Family: Family{Name: "mine", Type: Gauge, LabelNames: []string{"what"}}, Kind: KindGauge,
		Labels: Labels{{Name: "what", Value: name[5:]}}, Part: PartValue, Rule: "mine"}, true
}

// TestExplainIsADryRun: Explain says what a name becomes, and why a name is
// refused, without creating a series, counting, or calling a counting
// mapper's Map.
func TestExplainIsADryRun(t *testing.T) {
	mine := &dryCountingMapper{}
	m := New(Options{MaxSeries: 4, MaxSeriesPerFamily: 2, MaxLabels: 2, Mappers: []Mapper{mine}})
	feed(t, m, "fam:1|c|#a:1", "fam:1|c|#a:2", "typed:1|g")
	mapped := mine.maps.Load()
	tests := []struct {
		line, family, labels, rule, refused string
	}{
		{"mine.x:1|g", "mine", `{what="x"}`, "mine", ""},
		{"api.hits:1|c|#env:prod", "api_hits", `{env="prod"}`, DefaultRule, ""},
		{"fam:1|c|#a:1", "fam", `{a="1"}`, DefaultRule, ""}, // exists
		{"fam:1|c|#a:3", "fam", `{a="3"}`, DefaultRule, "max_series_per_family"},
		{"typed:1|c", "typed", `{}`, DefaultRule, "conflict"},
		{"wide:1|c|#a:1,b:2,c:3", "wide", `{a="1",b="2",c="3"}`, DefaultRule, "max_labels"},
	}
	for _, tt := range tests {
		d := m.Explain(parse(t, tt.line))
		if d.Family.Name != tt.family || d.Labels.String() != tt.labels || d.Rule != tt.rule || d.Refused != tt.refused {
			t.Errorf("%s: family %s labels %s rule %q refused %q; want %s %s %q %q",
				tt.line, d.Family.Name, d.Labels, d.Rule, d.Refused, tt.family, tt.labels, tt.rule, tt.refused)
		}
	}
	if mine.maps.Load() != mapped || mine.dry.Load() != 1 {
		t.Errorf("Map called %d times, DryMap %d: Explain must only dry-run", mine.maps.Load()-mapped, mine.dry.Load())
	}
	feed(t, m, "other:1|c")
	if d := m.Explain(parse(t, "new:1|c")); d.Refused != "max_series" {
		t.Errorf("at max_series a new series is refused: got %q", d.Refused)
	}
	if m.Series() != 4 || m.Dropped(DropMaxSeriesPerFamily) != 0 || m.Conflicts() != 0 {
		t.Errorf("Explain changed the model: %d series, %d dropped, %d conflicts", m.Series(), m.Dropped(DropMaxSeriesPerFamily), m.Conflicts())
	}
}

// TestDebugLogShowsNewNamesBounded: at debug level each new name is logged
// with what it became, at most newNamesPerSecond a second; the rest are
// counted.
func TestDebugLogShowsNewNamesBounded(t *testing.T) {
	var b bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelDebug}))
	events := throttle.New(logger, time.Hour)
	m := New(Options{MaxSeries: 1000, MaxSeriesPerFamily: 1000, Logger: logger, Events: events})
	var lines []string
	for i := range 2 * newNamesPerSecond {
		lines = append(lines, "name"+strings.Repeat("x", i%7)+string(rune('a'+i%26))+":1|c|#i:"+string(rune('A'+i/26)))
	}
	feed(t, m, lines...)
	events.Flush()
	out := b.String()
	if got := strings.Count(out, `msg="a new name"`); got != newNamesPerSecond {
		t.Errorf("%d new-name lines, want %d", got, newNamesPerSecond)
	}
	if !strings.Contains(out, `family=namea type=counter labels="{i=\"A\"}" rule="default mapping`) {
		t.Errorf("a new-name line lacks what it mapped to:\n%s", out[:min(len(out), 600)])
	}
	if !strings.Contains(out, "suppressed=") {
		t.Errorf("the names past the bound are not counted:\n%s", out[len(out)-300:])
	}
	// Not at info level.
	b.Reset()
	m = New(Options{MaxSeries: 1000, MaxSeriesPerFamily: 1000, Logger: slog.New(slog.NewTextHandler(&b, nil))})
	feed(t, m, "quiet:1|c")
	if b.Len() != 0 {
		t.Errorf("at info level: %s", b.String())
	}
}

// recordingTap is a Tap that records what it was shown.
type recordingTap struct {
	watching atomic.Bool
	names    []string
}

func (r *recordingTap) Watching() bool { return r.watching.Load() }
func (r *recordingTap) Samples(batch []ingest.Sample) {
	for i := range batch {
		r.names = append(r.names, string(batch[i].Name))
	}
}

// TestTapSeesBatchesOnlyWhileWatching: the tap is shown every batch while
// it watches, and nothing otherwise.
func TestTapSeesBatchesOnlyWhileWatching(t *testing.T) {
	tap := &recordingTap{}
	m := New(Options{MaxSeries: 10, MaxSeriesPerFamily: 10, Tap: tap})
	feed(t, m, "before:1|c")
	tap.watching.Store(true)
	feed(t, m, "during:1|c", "during:2|c")
	tap.watching.Store(false)
	feed(t, m, "after:1|c")
	if got := strings.Join(tap.names, " "); got != "during during" {
		t.Errorf("the tap saw %q", got)
	}
}

// TestOwnSeriesComeLastAndCanBeLeftOut: self-metrics follow what clients
// sent in a flush, so that a sink can leave them out; Unregister removes
// one; a summary of statsbridge's own reports its quantiles and deltas.
func TestOwnSeriesComeLastAndCanBeLeftOut(t *testing.T) {
	m := newTestModel()
	feed(t, m, "zzz:1|c", "aaa:1|g")
	m.Register(Family{Name: "statsbridge_x", Type: Gauge}, "statsbridge.x.a", Labels{{Name: "sink", Value: "a"}}, func() float64 { return 1 })
	m.Register(Family{Name: "statsbridge_x", Type: Gauge}, "statsbridge.x.b", Labels{{Name: "sink", Value: "b"}}, func() float64 { return 2 })
	count := 10.0
	m.RegisterSummary(Family{Name: "go_gc", Summary: SummaryOptions{Quantiles: []float64{0.5, 1}}}, "statsbridge.go_gc", nil, func(p *SummaryPoint) {
		p.Count, p.Sum, p.Quantiles = count, count/10, append(p.Quantiles, 0.1, 0.2)
	})
	f := &Flush{}
	f.End = time.Now()
	m.Collect(f)
	var names []string
	for _, p := range f.Points {
		names = append(names, p.Series.Family().Name+p.Series.Labels().String())
	}
	want := `aaa{} zzz{} go_gc{} statsbridge_x{sink="a"} statsbridge_x{sink="b"}`
	if got := strings.Join(names, " "); got != want || f.Own != 2 {
		t.Fatalf("points %s (own from %d), want %s (own from 2)", got, f.Own, want)
	}
	if n := len(f.WithoutOwn().Points); n != 2 {
		t.Errorf("without own: %d points", n)
	}
	if got := f.Points[1].Series.Key(); got != "zzz" {
		t.Errorf("a sent series' key %q", got)
	}
	if got := f.Points[3].Series.Key(); got != "statsbridge.x.a" {
		t.Errorf("an own labelled series' Graphite key is %q, want the one it was registered with, statsbridge.x.a", got)
	}
	if s := f.Points[2].Summary; s == nil || s.Count != 10 || s.DeltaCount != 10 || len(s.Quantiles) != 2 || s.Quantiles[1] != 0.2 {
		t.Errorf("own summary %+v", s)
	}
	count = 15
	m.Unregister("statsbridge_x", Labels{{Name: "sink", Value: "a"}})
	m.Collect(f)
	if len(f.Points) != 4 || f.Points[2].Summary.DeltaCount != 5 {
		t.Errorf("after Unregister: %d points, summary %+v", len(f.Points), f.Points[2].Summary)
	}
}

// TestReconfigureChangesLimitsAndKeepsSeries: a reload's limits apply to
// names seen after it, and the series held keep their state.
func TestReconfigureChangesLimitsAndKeepsSeries(t *testing.T) {
	m := New(Options{MaxSeries: 100, MaxSeriesPerFamily: 100, MaxLabels: 1})
	feed(t, m, "kept:2|c", "wide:1|c|#a:1,b:2")
	if m.Dropped(DropTooManyLabels) != 1 {
		t.Fatalf("max_labels 1 let two labels through")
	}
	m.Reconfigure(Options{MaxSeries: 100, MaxSeriesPerFamily: 100, MaxLabels: 2})
	feed(t, m, "kept:3|c", "wide:1|c|#a:1,b:2")
	p := collect(m)
	if p["kept"].Value != 5 {
		t.Errorf("kept counter %v after the reload, want 5", p["kept"].Value)
	}
	if _, ok := p[identity("wide", Labels{{Name: "a", Value: "1"}, {Name: "b", Value: "2"}})]; !ok {
		t.Errorf("the raised max_labels did not apply to a name refused before")
	}
}
