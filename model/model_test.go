package model

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/statsbridge/statsbridge/ingest"
)

// feed parses lines and applies them through one Writer.
func feed(t testing.TB, m *Model, lines ...string) {
	t.Helper()
	p := ingest.Parser{Dialect: ingest.Dialect{RelativeGauges: true}}
	w := m.NewWriter()
	batch := make([]ingest.Sample, len(lines))
	for i, l := range lines {
		if r := p.Parse([]byte(l), &batch[i]); r != ingest.ReasonNone {
			t.Fatalf("%q: %v", l, r)
		}
	}
	w.Handle(batch)
}

// collect ends an interval and returns its points by series identity.
func collect(m *Model) map[string]Point { return collectAt(m, time.Now()) }

// collectAt ends an interval at end.
func collectAt(m *Model, end time.Time) map[string]Point {
	f := &Flush{}
	f.End = end
	m.Collect(f)
	out := map[string]Point{}
	for _, p := range f.Points {
		out[identity(p.Series.Family().Name, p.Series.Labels())] = p
	}
	return out
}

// identity names a series by its family and labels, for tests to find it.
// Separator bytes cannot occur in names or values (the parser rejects
// control characters).
func identity(family string, labels Labels) string {
	var b strings.Builder
	b.WriteString(family)
	for _, l := range labels {
		b.WriteByte(0x1e)
		b.WriteString(l.Name)
		b.WriteByte(0x1f)
		b.WriteString(l.Value)
	}
	return b.String()
}

func newTestModel() *Model {
	return New(Options{MaxSeries: 100, MaxSeriesPerFamily: 10})
}

func TestCountersAreCumulativeWithDeltas(t *testing.T) {
	m := newTestModel()
	feed(t, m, "hits:1|c", "hits:2|c", "hits:1|c|@0.25")
	p := collect(m)["hits"]
	if p.Value != 7 || p.Delta != 7 || !p.Touched {
		t.Errorf("first interval: %+v, want total 7, delta 7", p)
	}
	p = collect(m)["hits"]
	if p.Value != 7 || p.Delta != 0 || p.Touched {
		t.Errorf("idle interval: %+v, want total 7, delta 0, untouched", p)
	}
	feed(t, m, "hits:-2|c")
	if p = collect(m)["hits"]; p.Value != 5 || p.Delta != -2 {
		t.Errorf("after -2: %+v", p)
	}
}

// TestSampledCountersAddAsEtsyStatsdAdds: a sampled counter adds
// value * (1/rate), as Etsy statsd does, which is not always value/rate to
// the last bit (3/0.9 is 3.333333333333333, 3*(1/0.9) 3.3333333333333335):
// Graphite users compare the two side by side.
func TestSampledCountersAddAsEtsyStatsdAdds(t *testing.T) {
	m := newTestModel()
	feed(t, m, "a:3|c|@0.9", "b:7|c|@0.07")
	got := collect(m)
	if a, b := got["a"].Delta, got["b"].Delta; a != 3.3333333333333335 || b != 100 {
		t.Errorf("deltas %v and %v, want 3.3333333333333335 and 100", a, b)
	}
}

func TestGauges(t *testing.T) {
	m := newTestModel()
	feed(t, m, "temp:10|g", "temp:+5|g", "temp:-3|g")
	if p := collect(m)["temp"]; p.Value != 12 {
		t.Errorf("10 +5 -3 = %v, want 12", p.Value)
	}
	feed(t, m, "temp:21.5|g")
	if p := collect(m)["temp"]; p.Value != 21.5 {
		t.Errorf("absolute: %v", p.Value)
	}
	if p := collect(m)["temp"]; p.Value != 21.5 || p.Touched {
		t.Errorf("an idle gauge keeps its value: %+v", p)
	}
}

func TestNamesAndTags(t *testing.T) {
	m := newTestModel()
	feed(t, m, "api.request-time:1|c|#env:prod,dc:eu", "api.request-time:1|c|#dc:eu,env:prod", "requests_total:1|c", "9lives:1|g|#bad-key:x")
	pts := collect(m)
	if p, ok := pts["api_request_time\x1edc\x1feu\x1eenv\x1fprod"]; !ok || p.Value != 2 {
		t.Errorf("tags in any order are one series: %v", pts)
	}
	if _, ok := pts["requests"]; !ok {
		t.Errorf("a counter named *_total is family %q: %v", "requests", pts)
	}
	if _, ok := pts["_9lives\x1ebad_key\x1fx"]; !ok {
		t.Errorf("sanitised names: %v", pts)
	}
	for _, p := range pts {
		if p.Series.Family().Name == "api_request_time" && p.Series.Key() != "api.request-time" {
			t.Errorf("key %q, want the StatsD name as sent", p.Series.Key())
		}
	}
}

func TestTypeConflictIsDroppedAndCounted(t *testing.T) {
	m := newTestModel()
	feed(t, m, "x:1|c", "x:5|g", "x:2|c")
	pts := collect(m)
	if len(pts) != 1 || pts["x"].Value != 3 || pts["x"].Series.Family().Type != Counter {
		t.Errorf("the family was changed by a conflicting sample: %v", pts)
	}
	if n := m.Conflicts(); n != 1 {
		t.Errorf("conflicts counted %d, want 1", n)
	}
}

func TestSeriesLimits(t *testing.T) {
	m := New(Options{MaxSeries: 3, MaxSeriesPerFamily: 2})
	feed(t, m, "a:1|c|#i:1", "a:1|c|#i:2", "a:1|c|#i:3", "b:1|c", "c:1|c", "a:1|c|#i:1")
	if m.Series() != 3 {
		t.Errorf("series %d, want 3", m.Series())
	}
	if m.Dropped(DropMaxSeriesPerFamily) != 1 || m.Dropped(DropMaxSeries) != 1 {
		t.Errorf("dropped per family %d, in all %d; want 1 and 1", m.Dropped(DropMaxSeriesPerFamily), m.Dropped(DropMaxSeries))
	}
	if p := collect(m)["a\x1ei\x1f1"]; p.Value != 2 {
		t.Errorf("an existing series stops working at the cap: %+v", p)
	}
}

func TestTTLRemovesIdleSeriesAndRecreatesThem(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	m := New(Options{MaxSeries: 10, MaxSeriesPerFamily: 10, SeriesTTL: time.Minute, Now: func() time.Time { return now }})
	feed(t, m, "old:1|c", "kept:1|c")
	first := collect(m)["old"].Series.Created()
	now = now.Add(2 * time.Minute)
	feed(t, m, "kept:1|c")
	collectAt(m, now)
	pts := collectAt(m, now)
	if _, ok := pts["old"]; ok || m.Series() != 1 {
		t.Fatalf("idle series not removed: %v", pts)
	}
	now = now.Add(time.Second)
	feed(t, m, "old:5|c")
	p := collectAt(m, now)["old"]
	if p.Value != 5 || !p.Series.Created().After(first) {
		t.Errorf("a counter that comes back starts again: %+v created %v (first %v)", p, p.Series.Created(), first)
	}
}

// TestConcurrentUpdatesAreCountedExactlyOnce races writers against flushes:
// the deltas of all flushes, and the final total, must add up exactly.
func TestConcurrentUpdatesAreCountedExactlyOnce(t *testing.T) {
	m := New(Options{MaxSeries: 1000, MaxSeriesPerFamily: 1000})
	const writers, perWriter = 4, 5000
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Go(func() {
			p := ingest.Parser{}
			wr := m.NewWriter()
			batch := make([]ingest.Sample, 1)
			for i := 0; i < perWriter; i++ {
				p.Parse(fmt.Appendf(nil, "c%d:1|c", i%7), &batch[0])
				wr.Handle(batch)
			}
		})
	}
	deltas := 0.0
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
		}
		for _, p := range collect(m) {
			deltas += p.Delta
		}
	}
	total := 0.0
	for _, p := range collect(m) {
		deltas += p.Delta
		total += p.Value
	}
	if deltas != writers*perWriter || total != writers*perWriter {
		t.Errorf("deltas add to %v and totals to %v, want %d", deltas, total, writers*perWriter)
	}
}

func TestRegisteredSelfMetrics(t *testing.T) {
	m := newTestModel()
	n := 0.0
	m.Register(Family{Name: "statsbridge_things", Type: Counter}, "statsbridge.things.a", Labels{{Name: "kind", Value: "a"}}, func() float64 { return n })
	n = 5
	p := collect(m)["statsbridge_things\x1ekind\x1fa"]
	if p.Value != 5 || p.Delta != 5 {
		t.Errorf("%+v", p)
	}
	n = 8
	if p = collect(m)["statsbridge_things\x1ekind\x1fa"]; p.Value != 8 || p.Delta != 3 {
		t.Errorf("%+v", p)
	}
	if m.Series() != 0 {
		t.Errorf("self-metrics count against the series limit")
	}
}

func TestSanitize(t *testing.T) {
	for in, want := range map[string]string{
		"a.b-c d": "a_b_c_d", "ok_name": "ok_name", "1x": "_1x", "": "_", "é": "_", "a:b": "a_b", "a--b": "a_b", "\xa7 x": "__x",
	} {
		if got := SanitizeMetricName(in); got != want {
			t.Errorf("SanitizeMetricName(%q) = %q, want %q", in, got, want)
		}
	}
	if got := SanitizeLabelName("__reserved"); got != "_reserved" {
		t.Errorf("SanitizeLabelName(__reserved) = %q", got)
	}
}

func TestAppendMergedLabels(t *testing.T) {
	external := Labels{{"instance", "relay1"}, {"zone", "dev"}}
	tests := []struct {
		name   string
		labels Labels
		want   string
	}{
		{"none of its own", nil, "instance=relay1 zone=dev"},
		{"its own wins", Labels{{"zone", "b"}}, "instance=relay1 zone=b"},
		{"an empty one is absent: the external applies", Labels{{"zone", ""}}, "instance=relay1 zone=dev"},
		{"unsorted in, sorted out", Labels{{"z", "1"}, {"B", "2"}, {"a", "3"}}, "B=2 a=3 instance=relay1 z=1 zone=dev"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := Labels{{"kept", "before"}}
			got := tt.labels.AppendMerged(prefix, external)
			var parts []string
			for _, l := range got[1:] {
				parts = append(parts, l.Name+"="+l.Value)
			}
			if s := strings.Join(parts, " "); s != tt.want || got[0] != prefix[0] {
				t.Errorf("got %v, want kept=before then %s", got, tt.want)
			}
		})
	}
}
