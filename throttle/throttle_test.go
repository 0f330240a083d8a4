package throttle

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestEventWritesOncePerPeriodAndCountsTheRest(t *testing.T) {
	type step struct {
		advance time.Duration // before the call
		logs    int           // Log calls at this moment
		flush   bool
	}
	tests := []struct {
		name  string
		burst int // lines a period; 0 is Event's one
		steps []step
		want  []string // the lines written, in order, each by a substring
	}{
		{"a single event is written", 0, []step{{logs: 1}}, []string{`msg=refused from=x`}},
		{"a burst writes one line", 0, []step{{logs: 3000}}, []string{`msg=refused from=x`}},
		{"the next period reports what was held back", 0,
			[]step{{logs: 5}, {advance: time.Second, logs: 1}},
			[]string{`msg=refused from=x`, `msg=refused from=x suppressed=4`}},
		{"a burst that stops is reported by Flush", 0,
			[]step{{logs: 7}, {flush: true}, {flush: true}},
			[]string{`msg=refused from=x`, `msg="refused (held back; counted)" suppressed=6`}},
		{"within the period nothing more is written", 0,
			[]step{{logs: 1}, {advance: 999 * time.Millisecond, logs: 1}},
			[]string{`msg=refused from=x`}},
		{"an event with a burst writes that many lines a period", 3,
			[]step{{logs: 5}, {advance: time.Second, logs: 1}},
			[]string{`msg=refused from=x`, `msg=refused from=x`, `msg=refused from=x`, `msg=refused from=x suppressed=2`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			now := time.Unix(1000, 0)
			l := New(slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{
				ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
					if a.Key == slog.TimeKey || a.Key == slog.LevelKey {
						return slog.Attr{}
					}
					return a
				}})), time.Second)
			l.now = func() time.Time { return now }
			ev := l.Event(slog.LevelWarn, "refused")
			if tt.burst > 0 {
				ev = l.EventBurst(slog.LevelWarn, "refused", tt.burst)
			}
			for _, s := range tt.steps {
				now = now.Add(s.advance)
				for range s.logs {
					ev.Log("from", "x")
				}
				if s.flush {
					l.Flush()
				}
			}
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			if len(lines) != len(tt.want) {
				t.Fatalf("wrote %d lines, want %d:\n%s", len(lines), len(tt.want), out.String())
			}
			for i, w := range tt.want {
				if !strings.Contains(lines[i], w) {
					t.Errorf("line %d = %q, want it to contain %q", i, lines[i], w)
				}
			}
		})
	}
}

func TestEventCountsEveryCallUnderConcurrency(t *testing.T) {
	var out bytes.Buffer
	var mu sync.Mutex
	l := New(slog.New(slog.NewTextHandler(lockedWriter{&out, &mu}, nil)), time.Hour)
	ev := l.Event(slog.LevelWarn, "bad line")
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				ev.Log()
			}
		})
	}
	wg.Wait()
	l.Flush()
	mu.Lock()
	defer mu.Unlock()
	if got := strings.Count(out.String(), "\n"); got != 2 {
		t.Fatalf("wrote %d lines, want 2:\n%s", got, out.String())
	}
	if !strings.Contains(out.String(), "suppressed=7999") {
		t.Fatalf("8000 events should be one line and 7999 held back:\n%s", out.String())
	}
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
