package sinks

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/statsbridge/statsbridge/cork"
	"github.com/statsbridge/statsbridge/model"
)

// closingTransport is a fakeTransport that records its Close.
type closingTransport struct {
	fakeTransport
	closed atomic.Bool
}

func (c *closingTransport) Close() { c.closed.Store(true) }

// TestReconfigureKeepsWhatWaits: a reload that keeps a sink's identity
// gives it a new transport and settings; what waited for the old one (in
// an outage) is delivered by the new one, in order, and the old transport
// is closed.
func TestReconfigureKeepsWhatWaits(t *testing.T) {
	down := errors.New("connection refused")
	old := &closingTransport{fakeTransport: fakeTransport{answer: func([]string) error { return down }}}
	enc := &textEncoder{}
	p := newTestPush(enc, &old.fakeTransport, Options{Name: "graphite[0]", Policy: Policy{MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}})
	p.mu.Lock()
	p.transport = old // with its Close
	p.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	enc.next = []string{"r1", "r2", "r3", "r4", "r5"}
	flushSoon(p)
	for p.Stats().Up.Load() != 0 { // the old backend is down
		time.Sleep(time.Millisecond)
	}

	fresh := &fakeTransport{answer: func([]string) error { return nil }}
	next := &textEncoder{next: []string{"r6"}}
	p.Reconfigure(Options{Name: "graphite[1]", Batch: cork.Limits{Records: 2, Bytes: 1 << 20}, QueueBytes: 1 << 20}, next, fresh, 0)
	flushSoon(p)
	p.Close()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the reconfigured sink did not deliver")
	}
	if got := fresh.got(); !slices.Equal(got, []string{"r1", "r2", "r3", "r4", "r5", "r6"}) {
		t.Errorf("the new transport delivered %v", got)
	}
	if !old.closed.Load() {
		t.Error("the old transport was not closed")
	}
	if p.Name() != "graphite[1]" {
		t.Errorf("name %q", p.Name())
	}
}

// TestLeaveOutOwn: a sink with self_metrics = false encodes the flush
// without statsbridge's own series.
func TestLeaveOutOwn(t *testing.T) {
	m := model.New(model.Options{MaxSeries: 10, MaxSeriesPerFamily: 10})
	m.Register(model.Family{Name: "statsbridge_x", Type: model.Gauge}, "statsbridge.x", nil, func() float64 { return 1 })
	var f model.Flush
	f.End = time.Now()
	m.Collect(&f)
	for _, leaveOut := range []bool{false, true} {
		seen := &countingEncoder{}
		p := NewPush(Options{Batch: cork.Limits{Records: 10, Bytes: 1 << 10}, QueueBytes: 1 << 20, LeaveOutOwn: leaveOut}, seen, &fakeTransport{})
		p.Flush(context.Background(), &f)
		if want := map[bool]int{false: 1, true: 0}[leaveOut]; seen.points != want {
			t.Errorf("LeaveOutOwn %v: the encoder saw %d points, want %d", leaveOut, seen.points, want)
		}
	}
}

type countingEncoder struct{ points int }

func (c *countingEncoder) Encode(f *model.Flush, _ *cork.Buffer) { c.points += len(f.Points) }
