package sinks

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/statsbridge/statsbridge/cork"
	"github.com/statsbridge/statsbridge/model"
	"github.com/statsbridge/statsbridge/sinks/spool"
)

// runPush runs p until the test ends, and returns finish, which closes p
// and waits for Run to deliver everything and return.
func runPush(t *testing.T, p *Push) (finish func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return func() {
		t.Helper()
		p.Close()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatal("Run did not deliver everything in 30s")
		}
	}
}

func records(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%05d value %d\n", prefix, i, i)
	}
	return out
}

// TestAFlushLargerThanTheQueueReachesAHealthyBackendWhole: queue_size bounds
// what waits in an outage, not what is in flight to a backend that takes
// it: the flush waits for room instead of dropping.
func TestAFlushLargerThanTheQueueReachesAHealthyBackendWhole(t *testing.T) {
	tests := []struct {
		name       string
		batch      cork.Limits
		queueBytes int
		records    int
	}{
		{"2,000 records, batches of 4KiB, an 8KiB queue", cork.Limits{Records: 1000, Bytes: 4 << 10}, 8 << 10, 2000},
		{"20,000 records through a queue of one batch", cork.Limits{Records: 100, Bytes: 1 << 20}, 1, 20000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enc := &textEncoder{next: records("c", tt.records)}
			tr := &fakeTransport{answer: func([]string) error { time.Sleep(100 * time.Microsecond); return nil }}
			p := newTestPush(enc, tr, Options{Batch: tt.batch, QueueBytes: tt.queueBytes})
			finish := runPush(t, p)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // the next flush is far off
			defer cancel()
			p.Flush(ctx, &model.Flush{})
			finish()
			if got := len(tr.got()); got != tt.records {
				t.Errorf("delivered %d of %d", got, tt.records)
			}
			for _, r := range DropReasons() {
				if n := p.Stats().Dropped[r].Load(); n != 0 {
					t.Errorf("dropped %d as %s from a healthy backend", n, r)
				}
			}
			if p.Stats().WaitedNs.Load() == 0 {
				t.Error("the flush never waited for room: the queue did not bound it")
			}
		})
	}
}

// TestAFlushWaitsNoLongerThanUntilTheNextIsDue: a backend slower than the
// flushes does not hold the flush up past its deadline: the oldest batches
// make room, counted.
func TestAFlushWaitsNoLongerThanUntilTheNextIsDue(t *testing.T) {
	enc := &textEncoder{next: records("c", 50)}
	tr := &fakeTransport{answer: func([]string) error { time.Sleep(50 * time.Millisecond); return nil }}
	p := newTestPush(enc, tr, Options{Batch: cork.Limits{Records: 1, Bytes: 1 << 20}, QueueBytes: 1})
	runPush(t, p)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	done := make(chan struct{})
	go func() { p.Flush(ctx, &model.Flush{}); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second): // a hang, not a speed
		t.Fatal("the flush kept waiting past its deadline")
	}
	if n := p.Stats().Dropped[DropQueueFull].Load(); n == 0 {
		t.Error("nothing was counted as dropped behind a backend slower than the flushes")
	}
}

// TestAFailingBackendStopsTheWait: a flush that waits for room stops as
// soon as the backend fails, and the outage queue takes over.
func TestAFailingBackendStopsTheWait(t *testing.T) {
	var up atomic.Bool
	up.Store(true)
	enc := &textEncoder{next: records("c", 100)}
	tr := &fakeTransport{answer: func([]string) error {
		time.Sleep(time.Millisecond)
		if !up.Load() {
			return errors.New("connection refused")
		}
		return nil
	}}
	p := newTestPush(enc, tr, Options{Batch: cork.Limits{Records: 1, Bytes: 1 << 20}, QueueBytes: 100})
	runPush(t, p)
	go func() { time.Sleep(20 * time.Millisecond); up.Store(false) }()
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	done := make(chan struct{})
	go func() { p.Flush(ctx, &model.Flush{}); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the flush kept waiting for a backend that failed")
	}
	if p.Stats().Up.Load() != 0 {
		t.Error("statsbridge_sink_up is not 0 in the outage")
	}
}

// TestRetryAfterIsCapped: one 503 with Retry-After: 86400 used to stall a
// sink for a day.
func TestRetryAfterIsCapped(t *testing.T) {
	var answered atomic.Int32
	enc := &textEncoder{next: []string{"a"}}
	tr := &fakeTransport{answer: func([]string) error {
		if answered.Add(1) == 1 {
			return Classify(Answer{Status: 503, RetryAfter: 24 * time.Hour})
		}
		return nil
	}}
	p := newTestPush(enc, tr, Options{Policy: Policy{MaxRetryAfter: 100 * time.Millisecond}})
	finish := runPush(t, p)
	flushSoon(p)
	finish()
	if len(tr.got()) != 1 {
		t.Fatal("a day's Retry-After held the sink past max_retry_after")
	}
}

// TestABackendThatRefusesEverythingIsNotHammered: a backend answering 400 to
// everything got 339,078 requests in 85 s. Bisection now gives a batch up
// once a whole descent was refused, and backs off.
func TestABackendThatRefusesEverythingIsNotHammered(t *testing.T) {
	const batches, perBatch = 10, 100
	enc := &textEncoder{}
	tr := &fakeTransport{answer: func([]string) error { return Classify(Answer{Status: 400, Body: "bad"}) }}
	p := newTestPush(enc, tr, Options{Batch: cork.Limits{Records: perBatch, Bytes: 1 << 20},
		Policy: Policy{MinBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond}})
	deliver(t, p, enc, records("c", batches*perBatch))
	// One descent of a batch of 100 is 2*(7+1) = 16 attempts.
	if tr.attempts > batches*16 {
		t.Errorf("%d requests for %d refused batches, want at most %d", tr.attempts, batches, batches*16)
	}
	if n := p.Stats().Dropped[DropRejected].Load(); n != batches*perBatch {
		t.Errorf("%d records counted as rejected, want all %d", n, batches*perBatch)
	}
}

// TestBisectionStillFindsScatteredBadRecords: the budget does not give up
// good records around a few bad ones.
func TestBisectionStillFindsScatteredBadRecords(t *testing.T) {
	recs := records("c", 1000)
	for _, i := range []int{0, 1, 2, 333, 334, 700, 999} {
		recs[i] = "bad" + recs[i]
	}
	enc := &textEncoder{}
	tr := &fakeTransport{answer: func(rs []string) error {
		for _, r := range rs {
			if strings.HasPrefix(r, "bad") {
				return Classify(Answer{Status: 400, Body: "out of order sample"})
			}
		}
		return nil
	}}
	p := newTestPush(enc, tr, Options{Batch: cork.Limits{Records: 1000, Bytes: 1 << 20}})
	deliver(t, p, enc, recs)
	if got := len(tr.got()); got != 993 {
		t.Errorf("delivered %d of the 993 good records", got)
	}
	if n := p.Stats().Dropped[DropRejected].Load(); n != 7 {
		t.Errorf("dropped %d as rejected, want the 7 bad ones", n)
	}
}

// TestAFailedDeliveryPutsWhatWaitsOnDisk: with a spool, once delivery
// fails, everything that waits is in the spool's files, so that a SIGKILL
// at that moment loses none of it.
func TestAFailedDeliveryPutsWhatWaitsOnDisk(t *testing.T) {
	dir := t.TempDir()
	sp, err := spool.Open(dir, spool.Options{MaxBytes: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	enc := &textEncoder{}
	tr := &fakeTransport{answer: func([]string) error { return errors.New("connection refused") }}
	// A memory queue far larger than the outage: without the spool taking
	// over at the failure, it would all stay in memory.
	p := newTestPush(enc, tr, Options{Batch: cork.Limits{Records: 10, Bytes: 1 << 20}, QueueBytes: 64 << 20, Spool: sp,
		Policy: Policy{MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}})
	runPush(t, p)
	var want []string
	for i := range 5 {
		enc.next = records(fmt.Sprintf("f%d-", i), 25)
		want = append(want, enc.next...)
		flushSoon(p)
	}
	waitForAttempt(tr)
	var onDisk []string
	deadline := time.Now().Add(10 * time.Second)
	for {
		onDisk = readCopyOfSpool(t, dir)
		if len(onDisk) == len(want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if strings.Join(onDisk, "") != strings.Join(want, "") {
		t.Fatalf("the spool's files hold %d records of the %d that wait, or not in order", len(onDisk), len(want))
	}
	if q := p.Stats().QueueBytes.Load(); q != 0 {
		t.Errorf("%d bytes still wait only in memory", q)
	}
}

// readCopyOfSpool reads what a spool directory holds, as a process started
// after a crash would, from a copy: the live one is locked.
func readCopyOfSpool(t *testing.T, dir string) []string {
	t.Helper()
	cp := t.TempDir()
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Name() == "lock" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // deleted meanwhile
		}
		os.WriteFile(filepath.Join(cp, e.Name()), b, 0o600)
	}
	return readSpool(t, cp)
}

// TestTheSpoolIsSyncedWithinASecond: what an outage writes to the spool
// reaches the disk on the stated schedule.
func TestTheSpoolIsSyncedWithinASecond(t *testing.T) {
	sp, err := spool.Open(t.TempDir(), spool.Options{MaxBytes: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	enc := &textEncoder{next: []string{"a"}}
	tr := &fakeTransport{answer: func([]string) error { return errors.New("connection refused") }}
	p := newTestPush(enc, tr, Options{Spool: sp})
	runPush(t, p)
	flushSoon(p)
	waitForAttempt(tr)
	deadline := time.Now().Add(10 * time.Second)
	for p.Stats().SpoolSyncs.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the spool was never synced")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestUnconfirmedBatchesAreSentAgainFirst: what a transport wrote on a
// connection it found gone is sent again before anything new.
func TestUnconfirmedBatchesAreSentAgainFirst(t *testing.T) {
	enc := &textEncoder{}
	tr := &forgetfulTransport{}
	p := NewPush(Options{Batch: cork.Limits{Records: 1, Bytes: 1 << 20}, QueueBytes: 1 << 20}, enc, tr)
	for _, r := range []string{"a", "b", "c"} {
		enc.next = []string{r}
		flushSoon(p)
	}
	p.Close()
	p.Run(context.Background())
	if got := strings.Join(tr.stored, ","); got != "a,b,a,b,c" {
		t.Errorf("stored %q: want a and b again (unconfirmed) before c", got)
	}
}

// forgetfulTransport finds its connection gone on the third Send: a and b
// were written on it, unconfirmed.
type forgetfulTransport struct {
	sends       int
	stored      []string
	unconfirmed []cork.Batch
}

func (f *forgetfulTransport) Send(_ context.Context, b cork.Batch) error {
	f.sends++
	if f.sends == 3 {
		f.unconfirmed = []cork.Batch{batchOf("a"), batchOf("b")}
		return errors.New("carbon closed the connection")
	}
	f.stored = append(f.stored, string(b.Data))
	return nil
}

func (f *forgetfulTransport) Unconfirmed() []cork.Batch {
	out := f.unconfirmed
	f.unconfirmed = nil
	return out
}

// concurrentTransport records how many Sends were in flight at once, and
// stores what it is sent, in the order the sends end.
type concurrentTransport struct {
	mu          sync.Mutex
	inFlight    int
	maxInFlight int
	stored      []string
	fail        func(records []string) error // nil: store everything
}

func (c *concurrentTransport) Send(_ context.Context, b cork.Batch) error {
	c.mu.Lock()
	c.inFlight++
	c.maxInFlight = max(c.maxInFlight, c.inFlight)
	c.mu.Unlock()
	time.Sleep(5 * time.Millisecond) // long enough for the others to start
	recs := make([]string, b.Len())
	for i := range recs {
		recs[i] = string(b.Record(i))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.inFlight--
	if c.fail != nil {
		if err := c.fail(recs); err != nil {
			return err
		}
	}
	c.stored = append(c.stored, recs...)
	return nil
}

// TestAFlushsBatchesGoTogetherAndFlushesInOrder: with concurrency 4 a
// flush's batches are in flight four at a time; the next flush's, which
// hold the same series, go only after every batch of the one before.
func TestAFlushsBatchesGoTogetherAndFlushesInOrder(t *testing.T) {
	tests := []struct {
		name string
		fail func() func([]string) error
	}{
		{"a healthy backend", func() func([]string) error { return nil }},
		{"a network error in a wave", func() func([]string) error {
			failed := false
			return func(recs []string) error {
				if !failed && recs[0] == "s0006@1" {
					failed = true
					return errors.New("connection reset by peer")
				}
				return nil
			}
		}},
		{"a bad record in a wave", func() func([]string) error {
			return func(recs []string) error {
				for _, r := range recs {
					if r == "s0013@0" {
						return Classify(Answer{Status: 400, Body: "out of order sample"})
					}
				}
				return nil
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const series, flushes = 16, 3
			tr := &concurrentTransport{fail: tt.fail()}
			enc := &textEncoder{}
			p := NewPush(Options{Batch: cork.Limits{Records: 2, Bytes: 1 << 20}, QueueBytes: 1 << 20, Concurrency: 4,
				Policy: Policy{MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond}}, enc, tr)
			finish := runPush(t, p)
			for f := range flushes {
				enc.next = nil
				for s := range series {
					enc.next = append(enc.next, fmt.Sprintf("s%04d@%d", s, f))
				}
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				p.Flush(ctx, &model.Flush{})
				cancel()
			}
			finish()
			tr.mu.Lock()
			defer tr.mu.Unlock()
			if tr.maxInFlight != 4 {
				t.Errorf("%d batches in flight at most, want 4", tr.maxInFlight)
			}
			last := map[string]int{} // series -> the last flush stored
			for _, r := range tr.stored {
				var s string
				var f int
				fmt.Sscanf(strings.Replace(r, "@", " ", 1), "%s %d", &s, &f)
				if prev, ok := last[s]; ok && prev >= f {
					t.Errorf("%s stored after flush %d of its series", r, prev)
				}
				last[s] = f
			}
			want := series * flushes
			if tt.name == "a bad record in a wave" {
				want--
			}
			if len(tr.stored) != want {
				t.Errorf("stored %d records, want %d", len(tr.stored), want)
			}
		})
	}
}

// pointEncoder writes one record per point: its value.
type pointEncoder struct{}

func (pointEncoder) Encode(f *model.Flush, buf *cork.Buffer) {
	for i := range f.Points {
		v := f.Points[i].Value
		buf.Append(func(b []byte) []byte { return fmt.Appendf(b, "%g\n", v) })
	}
}

// TestABackendSlowerThanTheFlushesGetsEverySeriesInTurn: a backend that
// takes a fifth of each flush before the next is due gets every series
// within a few flushes, not the same fifth every time: each flush starts
// where the one before was cut short, and what it could not reach is
// counted.
func TestABackendSlowerThanTheFlushesGetsEverySeriesInTurn(t *testing.T) {
	const series = 5 * flushPart
	tr := &fakeTransport{answer: func([]string) error { time.Sleep(time.Millisecond); return nil }}
	p := NewPush(Options{Batch: cork.Limits{Records: 16, Bytes: 1 << 20}, QueueBytes: 1}, pointEncoder{}, tr)
	runPush(t, p)
	f := &model.Flush{Points: make([]model.Point, series)}
	for i := range f.Points {
		f.Points[i].Value = float64(i)
	}
	seen := map[string]bool{}
	flushes := 0
	for ; len(seen) < series && flushes < 100; flushes++ {
		ctx, cancel := context.WithTimeout(context.Background(), 80*time.Millisecond)
		p.Flush(ctx, f)
		<-ctx.Done() // the next flush is due no sooner
		cancel()
		for _, r := range tr.got() {
			seen[r] = true
		}
	}
	if len(seen) < series {
		t.Errorf("after %d flushes the backend got %d of %d series", flushes, len(seen), series)
	}
	if p.Stats().Dropped[DropQueueFull].Load() == 0 {
		t.Error("the points a flush could not reach were not counted")
	}
	t.Logf("%d flushes", flushes)
}
