package tap

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/statsbridge/statsbridge/ingest"
	"github.com/statsbridge/statsbridge/model"
)

func samples(t *testing.T, lines ...string) []ingest.Sample {
	t.Helper()
	out := make([]ingest.Sample, len(lines))
	p := ingest.Parser{}
	for i, l := range lines {
		if r := p.Parse([]byte(l), &out[i]); r != ingest.ReasonNone {
			t.Fatalf("%q: %v", l, r)
		}
	}
	return out
}

func explainByName(s *ingest.Sample) model.Decision {
	name := strings.ReplaceAll(string(s.Name), ".", "_")
	d := model.Decision{Family: model.Family{Name: name, Type: model.Counter}, Kind: model.KindCounter, Rule: "test"}
	if strings.HasPrefix(name, "refused") {
		d.Refused = "max_series"
	}
	return d
}

// TestSamplesNeverBlock: with nobody draining the queue, offering far more
// than it holds returns at once, and what did not fit is counted.
func TestSamplesNeverBlock(t *testing.T) {
	h := NewHub(explainByName)
	batch := samples(t, "a:1|c", "b:1|c", "c:1|c", "d:1|c")
	done := make(chan struct{})
	go func() {
		for range 2 * queueSize {
			h.Samples(batch)
		}
		for range queueSize {
			h.BadLine(ingest.ReasonBadType, []byte("x:1|q"))
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Samples blocked")
	}
	if h.lost.Load() == 0 {
		t.Error("nothing counted as lost")
	}
	if h.BadLine(ingest.ReasonBadType, []byte("x")); len(h.queue) != queueSize {
		t.Errorf("the queue holds %d, want it full at %d", len(h.queue), queueSize)
	}
}

// TestHubKeepsAShareAtHighRates: past MaxPerSecond the Hub keeps a share of
// the samples, each weighing what it stands for.
func TestHubKeepsAShareAtHighRates(t *testing.T) {
	h := NewHub(explainByName)
	h.watchers.Store(1)
	h.adjust(10 * MaxPerSecond)
	batch := make([]ingest.Sample, 1000)
	for i := range batch {
		batch[i] = samples(t, "hits:1|c")[0]
	}
	for range 10 {
		h.Samples(batch)
	}
	// A tenth of 10,000: 1000, with a standard deviation of 30.
	if kept := len(h.queue); kept < 800 || kept > 1200 {
		t.Errorf("kept %d of 10000 at a tenth", kept)
	}
	k := <-h.queue
	if k.weight < 9.9 || k.weight > 10.1 {
		t.Errorf("a kept sample weighs %v, want 10", k.weight)
	}
	h.adjust(MaxPerSecond / 2)
	if h.keep.Load() != 1<<32 {
		t.Errorf("below MaxPerSecond the Hub keeps a share of %v", float64(h.keep.Load())/(1<<32))
	}
}

func TestFilter(t *testing.T) {
	tests := []struct {
		glob, expr, name string
		match            bool
	}{
		{"prosody.*", "", "prosody.prosody_mod_c2s.connections", true},
		{"prosody.*", "", "xprosody.a", false},
		{"api.?its", "", "api.hits", true},
		{"a.b", "", "axb", false}, // a glob's '.' is a dot
		{"", "mod_c2s", "prosody.prosody_mod_c2s.x", true},
		{"", "^api", "xapi", false},
	}
	for _, tt := range tests {
		re, err := Filter(tt.glob, tt.expr)
		if err != nil {
			t.Fatal(err)
		}
		if got := re.MatchString(tt.name); got != tt.match {
			t.Errorf("glob %q regexp %q on %q: %v", tt.glob, tt.expr, tt.name, got)
		}
	}
	if _, err := Filter("a*", "b"); err == nil {
		t.Error("a glob and a regexp at once")
	}
}

// TestStreamAndPlainLines: a tap over HTTP gets each name with what it
// became, filtered, and bad lines; Watch prints them as plain lines.
func TestStreamAndPlainLines(t *testing.T) {
	h := NewHub(explainByName)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var running sync.WaitGroup
	running.Go(func() { h.Run(ctx) })
	srv := httptest.NewServer(h)
	defer srv.Close()

	var out bytes.Buffer
	var mu sync.Mutex
	watchCtx, stopWatching := context.WithCancel(context.Background())
	watched := make(chan error, 1)
	go func() {
		watched <- Watch(watchCtx, Options{URL: srv.URL + "?match=app.*", Out: lockedWriter{&out, &mu}})
	}()
	for !h.Watching() {
		time.Sleep(time.Millisecond)
	}
	h.Samples(samples(t, "app.hits:1|c|#env:prod", "other.hits:1|c", "refused.x:1|c"))
	h.BadLine(ingest.ReasonBadType, []byte("app.bad:1|q"))
	h.BadLine(ingest.ReasonBadType, []byte("other.bad:1|q"))
	want := []string{
		"app.hits|c|#env:prod -> app_hits counter (test)",
		"bad line (bad_type): app.bad:1|q",
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		got := out.String()
		mu.Unlock()
		if strings.Count(got, "\n") >= len(want) {
			if got != strings.Join(want, "\n")+"\n" {
				t.Errorf("got:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 5s the tap printed:\n%s", got)
		}
		time.Sleep(5 * time.Millisecond)
	}
	stopWatching()
	if err := <-watched; err != nil {
		t.Errorf("Watch: %v", err)
	}
	for h.Watching() {
		time.Sleep(time.Millisecond)
	}
	cancel()
	running.Wait()
}

type lockedWriter struct {
	b  *bytes.Buffer
	mu *sync.Mutex
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func TestWatchRefused(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "forbidden", http.StatusForbidden)
	}))
	defer srv.Close()
	if err := Watch(context.Background(), Options{URL: srv.URL, Out: &bytes.Buffer{}}); !errors.Is(err, ErrRefused) {
		t.Errorf("Watch: %v, want ErrRefused", err)
	}
}

// TestTopView: the top view ranks names by rate and shows bad lines,
// refused series and the sinks, cut to the terminal.
func TestTopView(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	tp := newTop(now.Add(-20 * time.Second))
	name := func(n string, weight float64, refused string) Event {
		return Event{Time: now, Name: &Name{Name: n, Type: "c", Family: strings.ReplaceAll(n, ".", "_"), FamilyType: "counter",
			Labels: "{}", Rule: "default mapping", Refused: refused, Weight: weight}}
	}
	for range 30 {
		tp.add(name("busy.name", 1, ""))
	}
	tp.add(name("quiet.name", 1, ""))
	tp.add(name("too.many", 5, "max_series"))
	tp.add(Event{Time: now, Bad: &BadLine{Reason: "bad_type", Line: "x:1|q", Weight: 1}})
	tp.add(Event{Time: now, Sinks: []SinkState{{Name: "graphite[0]", Target: "graphite 127.0.0.1:2003", Up: true,
		LastSuccess: now.Add(-3 * time.Second), QueueBytes: 2048}}})
	tp.add(Event{Time: now, Status: &Status{Rate: 5000, Kept: 0.4}})
	lines := tp.render(now, "127.0.0.1:9102", 100, 40)
	text := strings.Join(lines, "\n")
	for _, want := range []string{
		"5000.0 lines/s received, sampled 1 in 2.5",
		"NAMES BY RATE",
		"3.0  busy.name|c -> busy_name counter (default mapping)",
		"0.1  quiet.name|c -> quiet_name counter (default mapping)",
		"max_series             too.many|c -> too_many",
		"bad_type           x:1|q",
		"graphite[0]      yes  3s ago",
		"2.0KiB",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the view lacks %q:\n%s", want, text)
		}
	}
	if strings.Index(text, "busy.name") > strings.Index(text, "quiet.name") {
		t.Errorf("names not ranked by rate:\n%s", text)
	}
	for _, l := range lines {
		if len([]rune(l)) > 100 {
			t.Errorf("a line wider than the terminal: %q", l)
		}
	}
	if small := tp.render(now, "x", 40, 10); len(small) > 9 {
		t.Errorf("%d lines on a terminal of 10", len(small))
	}
}

// TestTapsAreBounded: past maxTaps, a tap is turned away.
func TestTapsAreBounded(t *testing.T) {
	h := NewHub(explainByName)
	for range maxTaps {
		if h.subscribe(nil) == nil {
			t.Fatal("a tap turned away below maxTaps")
		}
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/-/tap", nil))
	if w.Code != http.StatusServiceUnavailable {
		t.Errorf("tap %d: %d", maxTaps+1, w.Code)
	}
}
