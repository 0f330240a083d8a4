package sinks

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/statsbridge/statsbridge/cork"
	"github.com/statsbridge/statsbridge/model"
	"github.com/statsbridge/statsbridge/sinks/spool"
)

// textEncoder ignores the flush and writes the records it is told to.
type textEncoder struct{ next []string }

func (e *textEncoder) Encode(_ *model.Flush, buf *cork.Buffer) {
	for _, r := range e.next {
		buf.Append(func(b []byte) []byte { return append(b, r...) })
	}
}

// fakeTransport answers by a rule and records what it delivered.
type fakeTransport struct {
	mu        sync.Mutex
	answer    func(records []string) error
	delivered []string
	attempts  int
	gate      chan struct{} // when set, each Send waits for a value
}

func (f *fakeTransport) Send(ctx context.Context, b cork.Batch) error {
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	recs := make([]string, b.Len())
	for i := range recs {
		recs[i] = string(b.Record(i))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.attempts++
	err := f.answer(recs)
	if o, _ := OutcomeOf(err); o == Delivered || o == PartlyStored {
		for _, r := range recs {
			if !strings.HasPrefix(r, "bad") {
				f.delivered = append(f.delivered, r)
			}
		}
	}
	return err
}

func (f *fakeTransport) got() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.delivered...)
}

func newTestPush(enc *textEncoder, tr *fakeTransport, opts Options) *Push {
	if opts.Batch.Records == 0 {
		opts.Batch = cork.Limits{Records: 4, Bytes: 1 << 20}
	}
	if opts.QueueBytes == 0 {
		opts.QueueBytes = 1 << 20
	}
	return NewPush(opts, enc, tr)
}

// deliver pushes flushes of records through p and runs it to completion.
func deliver(t *testing.T, p *Push, enc *textEncoder, flushes ...[]string) {
	t.Helper()
	for _, recs := range flushes {
		enc.next = recs
		flushSoon(p)
	}
	p.Close()
	done := make(chan struct{})
	go func() { p.Run(context.Background()); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not finish")
	}
}

func TestDeliveryInOrder(t *testing.T) {
	enc, tr := &textEncoder{}, &fakeTransport{answer: func([]string) error { return nil }}
	p := newTestPush(enc, tr, Options{})
	deliver(t, p, enc, []string{"a", "b", "c", "d", "e"}, []string{"f"})
	if got := strings.Join(tr.got(), ""); got != "abcdef" {
		t.Errorf("delivered %q", got)
	}
	if p.Stats().Batches.Load() != 3 || p.Stats().Records.Load() != 6 {
		t.Errorf("batches %d records %d", p.Stats().Batches.Load(), p.Stats().Records.Load())
	}
}

func TestRetriesUntilDelivered(t *testing.T) {
	fails := 3
	enc := &textEncoder{}
	tr := &fakeTransport{answer: func([]string) error {
		if fails > 0 {
			fails--
			return errors.New("connection refused")
		}
		return nil
	}}
	p := newTestPush(enc, tr, Options{})
	deliver(t, p, enc, []string{"a"})
	if got := tr.got(); !slices.Equal(got, []string{"a"}) || p.Stats().Retries.Load() != 3 {
		t.Errorf("delivered %v after %d retries", got, p.Stats().Retries.Load())
	}
}

// TestRejectedBatchesAreSplitToFindTheBadRecord: a backend that refuses any
// batch holding a bad record, as Prometheus does, still gets every good one.
func TestRejectedBatchesAreSplitToFindTheBadRecord(t *testing.T) {
	enc := &textEncoder{}
	tr := &fakeTransport{answer: func(recs []string) error {
		for _, r := range recs {
			if strings.HasPrefix(r, "bad") {
				return &Failure{Outcome: Refused, Err: errors.New("HTTP 400 out of order sample")}
			}
		}
		return nil
	}}
	p := newTestPush(enc, tr, Options{Batch: cork.Limits{Records: 8, Bytes: 1 << 20}})
	deliver(t, p, enc, []string{"a", "b", "bad1", "c", "d", "e", "bad2", "f"}, []string{"g"})
	if got := strings.Join(tr.got(), ""); got != "abcdefg" {
		t.Errorf("delivered %q, want every good record in order", got)
	}
	if n := p.Stats().Dropped[DropRejected].Load(); n != 2 {
		t.Errorf("dropped %d as rejected, want 2", n)
	}
}

func TestPartialWriteIsNotResent(t *testing.T) {
	enc := &textEncoder{}
	tr := &fakeTransport{answer: func([]string) error {
		return &Failure{Outcome: PartlyStored, Err: errors.New("partial write")}
	}}
	p := newTestPush(enc, tr, Options{})
	deliver(t, p, enc, []string{"a", "bad", "b"})
	if tr.attempts != 1 || strings.Join(tr.got(), "") != "ab" {
		t.Errorf("%d attempts, delivered %v", tr.attempts, tr.got())
	}
	if n := p.Stats().Failures[PartlyStored].Load(); n != 1 {
		t.Errorf("statsbridge_sink_failures_total{reason=\"partly_stored\"} = %d, want 1", n)
	}
}

func TestPermanentFailureDrops(t *testing.T) {
	enc := &textEncoder{}
	tr := &fakeTransport{answer: func([]string) error { return &Failure{Outcome: Permanent, Err: errors.New("bad URL")} }}
	p := newTestPush(enc, tr, Options{})
	deliver(t, p, enc, []string{"a", "b"})
	if tr.attempts != 1 || p.Stats().Dropped[DropPermanent].Load() != 2 {
		t.Errorf("%d attempts, %d dropped", tr.attempts, p.Stats().Dropped[DropPermanent].Load())
	}
}

func TestRetriesEndAtMaxRetryAge(t *testing.T) {
	enc := &textEncoder{}
	tr := &fakeTransport{answer: func([]string) error { return errors.New("down") }}
	p := newTestPush(enc, tr, Options{Policy: Policy{MaxRetryAge: 300 * time.Millisecond}})
	deliver(t, p, enc, []string{"a"})
	if p.Stats().Dropped[DropRetryAge].Load() != 1 || tr.attempts < 2 {
		t.Errorf("%d attempts, dropped %d", tr.attempts, p.Stats().Dropped[DropRetryAge].Load())
	}
}

// TestAStuckBackendFillsOnlyItsQueue: flushes never block while the backend
// hangs; past queue_size the oldest batches go, counted.
func TestAStuckBackendFillsOnlyItsQueue(t *testing.T) {
	enc := &textEncoder{}
	tr := &fakeTransport{answer: func([]string) error { return nil }, gate: make(chan struct{})}
	p := newTestPush(enc, tr, Options{Batch: cork.Limits{Records: 1, Bytes: 1 << 20}, QueueBytes: 10})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	start := time.Now()
	for i := 0; i < 100; i++ {
		enc.next = []string{fmt.Sprintf("r%03d", i)}
		flushSoon(p)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("flushing into a stuck sink took %v", d)
	}
	if q := p.Stats().QueueBytes.Load(); q > 10 {
		t.Errorf("queue holds %d bytes, over its 10", q)
	}
	if n := p.Stats().Dropped[DropQueueFull].Load(); n < 90 {
		t.Errorf("dropped %d as queue_full, want at least 90", n)
	}
	cancel()
	<-done
	if n := p.Stats().QueueBytes.Load(); n != 0 {
		t.Errorf("queue not emptied at cut-off: %d", n)
	}
}

// TestOverflowGoesToTheSpoolAndComesBackInOrder: while the backend hangs,
// what overflows the memory queue goes to disk; once it answers, every
// batch arrives, oldest first.
func TestOverflowGoesToTheSpoolAndComesBackInOrder(t *testing.T) {
	sp, err := spool.Open(t.TempDir(), spool.Options{MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	enc := &textEncoder{}
	tr := &fakeTransport{answer: func([]string) error { return nil }, gate: make(chan struct{})}
	p := newTestPush(enc, tr, Options{Batch: cork.Limits{Records: 1, Bytes: 1 << 20}, QueueBytes: 20, Spool: sp})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	var want []string
	for i := 0; i < 100; i++ {
		r := fmt.Sprintf("r%03d", i)
		want = append(want, r)
		enc.next = []string{r}
		flushSoon(p)
	}
	if p.Stats().SpoolBytes.Load() == 0 || p.Stats().Dropped[DropQueueFull].Load() != 0 {
		t.Fatalf("spool %d bytes, dropped %d", p.Stats().SpoolBytes.Load(), p.Stats().Dropped[DropQueueFull].Load())
	}
	close(tr.gate) // the backend answers again
	p.Close()
	<-done
	if got := tr.got(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("delivered %v", got)
	}
	if p.Stats().SpoolBytes.Load() != 0 {
		t.Errorf("spool not empty: %d bytes", p.Stats().SpoolBytes.Load())
	}
}

// TestShutdownSpoolsWhatItCouldNotDeliver: at the shutdown deadline what is
// left goes to the spool, and the next run delivers it first.
func TestShutdownSpoolsWhatItCouldNotDeliver(t *testing.T) {
	dir := t.TempDir()
	sp, _ := spool.Open(dir, spool.Options{MaxBytes: 1 << 20})
	enc := &textEncoder{}
	down := &fakeTransport{answer: func([]string) error { return errors.New("connection refused") }}
	p := newTestPush(enc, down, Options{Spool: sp})
	for _, r := range []string{"a", "b", "c"} {
		enc.next = []string{r}
		flushSoon(p)
	}
	p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	p.Run(ctx) // the shutdown deadline passes with the backend down
	cancel()
	if n := p.Stats().Dropped[DropShutdown].Load(); n != 0 {
		t.Fatalf("%d dropped at shutdown with a spool", n)
	}

	sp, _ = spool.Open(dir, spool.Options{MaxBytes: 1 << 20})
	up := &fakeTransport{answer: func([]string) error { return nil }}
	next := newTestPush(enc, up, Options{Spool: sp})
	enc.next = []string{"d"}
	flushSoon(next)
	next.Close()
	next.Run(context.Background())
	if got := strings.Join(up.got(), ""); got != "abcd" {
		t.Errorf("the next run delivered %q, want the spooled abc first, then d", got)
	}
}

func TestOutcomeOf(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want Outcome
	}{
		{nil, Delivered},
		{errors.New("dial tcp: connection refused"), Unreachable},
		{context.DeadlineExceeded, TimedOut},
		{Classify(Answer{Status: 503}), ServerError},
		{Classify(Answer{Status: 429, RetryAfter: time.Minute}), Throttled},
		{Classify(Answer{Status: 404}), ConfigError},
		{Classify(Answer{Status: 401}), ConfigError},
		{Classify(Answer{Status: 400}), Refused},
		{Classify(Answer{Status: 413}), Refused},
		{Classify(Answer{Status: 204}), Delivered},
		{fmt.Errorf("wrapped: %w", &Failure{Outcome: Permanent, Err: errors.New("bad")}), Permanent},
	} {
		if got, _ := OutcomeOf(tt.err); got != tt.want {
			t.Errorf("%v: %v, want %v", tt.err, got, tt.want)
		}
	}
	if _, after := OutcomeOf(Classify(Answer{Status: 429, RetryAfter: time.Minute})); after != time.Minute {
		t.Errorf("Retry-After read as %v", after)
	}
}

// TestAConfigurationErrorKeepsItsData: a missing database (404) is not given
// up at max_retry_age; the data is delivered once the operator mends it.
func TestAConfigurationErrorKeepsItsData(t *testing.T) {
	var mu sync.Mutex
	mended := false
	enc := &textEncoder{}
	tr := &fakeTransport{answer: func([]string) error {
		mu.Lock()
		defer mu.Unlock()
		if !mended {
			return Classify(Answer{Status: 404, Body: `{"error":"database not found: \"x\""}`})
		}
		return nil
	}}
	p := newTestPush(enc, tr, Options{Policy: Policy{MaxRetryAge: 100 * time.Millisecond}})
	enc.next = []string{"kept"}
	flushSoon(p)
	p.Close()
	go func() {
		time.Sleep(600 * time.Millisecond) // well past max_retry_age
		mu.Lock()
		mended = true
		mu.Unlock()
	}()
	p.Run(context.Background())
	if got := tr.got(); len(got) != 1 || p.Stats().Dropped[DropRetryAge].Load() != 0 {
		t.Errorf("delivered %v, dropped %d at max_retry_age", got, p.Stats().Dropped[DropRetryAge].Load())
	}
}

// flushSoon flushes as the clock does when the next flush is due in 20ms:
// a flush waits for room no longer than that.
func flushSoon(p *Push) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	p.Flush(ctx, &model.Flush{})
}
