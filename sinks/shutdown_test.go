package sinks

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/statsbridge/statsbridge/cork"
	"github.com/statsbridge/statsbridge/sinks/spool"
)

// readSpool reads every record a spool directory holds, in order.
func readSpool(t *testing.T, dir string) []string {
	t.Helper()
	s, err := spool.Open(dir, spool.Options{MaxBytes: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var out []string
	for {
		b, _, ok, err := s.Peek()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return out
		}
		for i := 0; i < b.Len(); i++ {
			out = append(out, string(b.Record(i)))
		}
		s.Ack()
	}
}

// waitForAttempt waits until the transport was tried once.
func waitForAttempt(tr *fakeTransport) {
	for {
		tr.mu.Lock()
		n := tr.attempts
		tr.mu.Unlock()
		if n > 0 {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// TestShutdownKeepsTheSpoolInOrder: the batch in hand is older than what
// overflowed into the spool while it was retried; shutdown puts it first.
func TestShutdownKeepsTheSpoolInOrder(t *testing.T) {
	dir := t.TempDir()
	sp, _ := spool.Open(dir, spool.Options{MaxBytes: 1 << 30})
	enc := &textEncoder{}
	tr := &fakeTransport{answer: func([]string) error { return errors.New("down") }}
	p := NewPush(Options{Batch: cork.Limits{Records: 1, Bytes: 1 << 20}, QueueBytes: 3, Spool: sp}, enc, tr)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	enc.next = []string{"A"}
	flushSoon(p)
	waitForAttempt(tr) // A is in hand
	for _, r := range []string{"B", "C", "D", "E", "F"} {
		enc.next = []string{r}
		flushSoon(p)
	}
	cancel()
	<-done
	if got := strings.Join(readSpool(t, dir), ""); got != "ABCDEF" {
		t.Errorf("spool after shutdown: %q, want ABCDEF", got)
	}
}

// TestThePartsOfASpooledBatchKeepItSpooled: a spooled batch split after a
// refusal stays in the spool until its parts are done, so a crash while
// they are retried loses nothing, and shutdown does not write them twice.
func TestThePartsOfASpooledBatchKeepItSpooled(t *testing.T) {
	dir := t.TempDir()
	sp, _ := spool.Open(dir, spool.Options{MaxBytes: 1 << 30})
	sp.Append(batchOf("a", "b"), time.Now())
	sp.Append(batchOf("c"), time.Now())
	enc := &textEncoder{}
	var refused atomic.Bool
	tr := &fakeTransport{answer: func(r []string) error {
		if len(r) == 2 && refused.CompareAndSwap(false, true) {
			return &Failure{Outcome: Refused, Err: errors.New("400")}
		}
		return errors.New("down")
	}}
	p := NewPush(Options{Batch: cork.Limits{Records: 4, Bytes: 1 << 20}, QueueBytes: 1 << 20, Spool: sp}, enc, tr)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	for !refused.Load() {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // the parts are being retried
	cancel()
	<-done
	if got := strings.Join(readSpool(t, dir), ""); got != "abc" {
		t.Errorf("spool after shutdown: %q, want abc once", got)
	}
}

// TestQueueMemoryIsBounded: after one large flush, later small batches do
// not each hold a large buffer; queue_size bounds what the queue holds.
func TestQueueMemoryIsBounded(t *testing.T) {
	enc := &textEncoder{}
	tr := &fakeTransport{answer: func([]string) error { return errors.New("down") }}
	p := NewPush(Options{Batch: cork.Limits{Records: 1000, Bytes: 1 << 20}, QueueBytes: 8 << 20}, enc, tr)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go p.Run(ctx)
	big := strings.Repeat("x", 1024)
	enc.next = make([]string, 1000)
	for i := range enc.next {
		enc.next[i] = big
	}
	flushSoon(p)
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	enc.next = []string{strings.Repeat("y", 100)}
	for i := 0; i < 2000; i++ {
		flushSoon(p)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 32<<20 {
		t.Errorf("an 8 MiB queue grew the heap by %d MiB", grew>>20)
	}
}

// TestASpoolIsNotGivenUpForAge: with a spool, an outage longer than
// max_retry_age loses nothing: spool_size is the bound.
func TestASpoolIsNotGivenUpForAge(t *testing.T) {
	sp, _ := spool.Open(t.TempDir(), spool.Options{MaxBytes: 1 << 30})
	enc := &textEncoder{}
	var down atomic.Bool
	down.Store(true)
	tr := &fakeTransport{answer: func([]string) error {
		if down.Load() {
			return errors.New("down")
		}
		return nil
	}}
	p := NewPush(Options{Batch: cork.Limits{Records: 1, Bytes: 1 << 20}, QueueBytes: 1 << 20,
		Policy: Policy{MaxRetryAge: 100 * time.Millisecond}, Spool: sp}, enc, tr)
	done := make(chan struct{})
	go func() { p.Run(context.Background()); close(done) }()
	for _, r := range []string{"a", "b", "c", "d", "e"} {
		enc.next = []string{r}
		flushSoon(p)
		time.Sleep(80 * time.Millisecond)
	}
	down.Store(false)
	p.Close()
	<-done
	if got := strings.Join(tr.got(), ""); got != "abcde" || p.Stats().Dropped[DropRetryAge].Load() != 0 {
		t.Errorf("delivered %q, dropped %d at max_retry_age", got, p.Stats().Dropped[DropRetryAge].Load())
	}
}

// unconfirmingTransport is always down and holds back one batch it wrote
// but cannot confirm, as the graphite transport does.
type unconfirmingTransport struct{ held cork.Batch }

func (u *unconfirmingTransport) Send(context.Context, cork.Batch) error { return errors.New("down") }
func (u *unconfirmingTransport) Unconfirmed() []cork.Batch {
	b := u.held
	u.held = cork.Batch{}
	if b.Len() == 0 {
		return nil
	}
	return []cork.Batch{b}
}

// TestUnconfirmedBatchesAreSpooledFirstAtShutdown: what a transport could
// not confirm is older than anything still queued, and is kept.
func TestUnconfirmedBatchesAreSpooledFirstAtShutdown(t *testing.T) {
	dir := t.TempDir()
	sp, _ := spool.Open(dir, spool.Options{MaxBytes: 1 << 30})
	enc := &textEncoder{next: []string{"queued"}}
	tr := &unconfirmingTransport{held: batchOf("unconfirmed")}
	p := NewPush(Options{Batch: cork.Limits{Records: 10, Bytes: 1 << 20}, QueueBytes: 1 << 20, Spool: sp}, enc, tr)
	flushSoon(p)
	p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	p.Run(ctx)
	if got := strings.Join(readSpool(t, dir), ","); got != "unconfirmed,queued" {
		t.Errorf("spool after shutdown: %q", got)
	}
}

func batchOf(records ...string) cork.Batch {
	var b cork.Batch
	for _, r := range records {
		b.Data = append(b.Data, r...)
		b.Ends = append(b.Ends, len(b.Data))
	}
	return b
}
