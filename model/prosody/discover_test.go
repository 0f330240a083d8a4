package prosody

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// syncBuffer is a log destination the watcher and the test share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestWatchRetriesSoonAfterAFailedRead starts with Prosody down: the first
// reads fail, and the watcher must try again within seconds (not at the
// next refresh, an hour away here) and say at info level that it read the
// page once Prosody answers.
func TestWatchRetriesSoonAfterAFailedRead(t *testing.T) {
	var requests atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if requests.Add(1) <= 3 {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/openmetrics-text; version=1.0.0")
		w.Write([]byte("# TYPE prosody_mod_c2s__connections gauge\n# HELP prosody_mod_c2s__connections Established c2s connections\n# EOF\n"))
	}))
	defer srv.Close()

	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	state := NewState()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if ReadOnce(ctx, state, srv.URL, logger) {
		t.Fatal("the first read succeeded against a server that fails")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		watch(ctx, state, srv.URL, time.Hour, 10*time.Millisecond, logger)
	}()
	deadline := time.After(30 * time.Second)
	for len(*state.known.Load()) == 0 {
		select {
		case <-deadline:
			t.Fatalf("no successful read after %d requests; log:\n%s", requests.Load(), logs.String())
		case <-time.After(5 * time.Millisecond):
		}
	}
	cancel()
	<-done
	if n := requests.Load(); n < 4 {
		t.Errorf("%d requests, want at least 4", n)
	}
	if !strings.Contains(logs.String(), `level=INFO msg="read Prosody's families"`) {
		t.Errorf("the successful read was not logged at info:\n%s", logs.String())
	}
}

// TestRetryDelaysDoubleUpToTheRefresh pins the backoff: from the first
// delay, doubling, never past the refresh interval.
func TestRetryDelaysDoubleUpToTheRefresh(t *testing.T) {
	for _, c := range []struct {
		failures int
		want     time.Duration
	}{
		{0, 5 * time.Minute}, {1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second},
		{9, 256 * time.Second}, {10, 5 * time.Minute}, {60, 5 * time.Minute},
	} {
		if got := nextRead(c.failures, time.Second, 5*time.Minute); got != c.want {
			t.Errorf("after %d failures: %v, want %v", c.failures, got, c.want)
		}
	}
}
