// Package sinks delivers flushes to backends. Each sub-package renders one
// backend's wire format and classifies its answers; this package holds what
// the push sinks share: the cork buffer a flush is packed into, the flow
// control between it and the backend, the bounded outage queue (in memory,
// or on disk in a spool), the retry policy, and the delivery goroutine.
package sinks

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/statsbridge/statsbridge/cork"
	"github.com/statsbridge/statsbridge/model"
	"github.com/statsbridge/statsbridge/sinks/spool"
	"github.com/statsbridge/statsbridge/throttle"
)

// Encoder renders a flush into a push sink's records.
type Encoder interface {
	// Encode appends one record per point of f (points it cannot or need
	// not send are left out) to buf.
	Encode(f *model.Flush, buf *cork.Buffer)
}

// Unconfirmed is what a Transport may also offer: batches it wrote but
// cannot tell were stored (carbon acknowledges nothing), once it found the
// connection they went over gone. The sink sends them again first.
type Unconfirmed interface {
	Unconfirmed() []cork.Batch
}

// Stripper is what a Transport may also offer: when the backend answered
// Unsupported, the batch without the records of the kind it does not take,
// and how many it left out.
type Stripper interface {
	Strip(b cork.Batch) (kept cork.Batch, left int)
}

// Transport sends one batch to the backend. It only classifies the answer:
// nil is delivered; otherwise a *Failure says what happened, and any other
// error is a network failure (see OutcomeOf). What to do next is the
// Policy's decision.
type Transport interface {
	Send(ctx context.Context, b cork.Batch) error
}

// Options configure a push sink's delivery.
type Options struct {
	Name  string // for logs and self-metrics: "graphite[0]"
	Batch cork.Limits
	// QueueBytes bounds what waits in memory while the backend is down.
	// A healthy backend is never dropped from for it: a flush larger than
	// the queue waits for the backend to take batches (flow control).
	QueueBytes int
	// Policy is the retry policy; its zero durations take the defaults
	// (DefaultPolicy), and Spooled is set from Spool.
	Policy Policy
	// Spool, when set, is the outage queue: once delivery fails, what
	// waits is written to it. The Push owns it from then on.
	Spool *spool.Spool
	// LeaveOutOwn leaves statsbridge's own series (self-metrics) out.
	LeaveOutOwn bool
	// Concurrency is how many batches of one flush may be in flight at
	// once (0 or 1: one at a time). A flush's batches hold no series twice,
	// so they may arrive in any order; those of the next flush wait until
	// the flush before is done. The Transport must take concurrent Sends.
	Concurrency int
	Logger      *slog.Logger
	// Events throttles the sink's per-event log lines; nil makes one of
	// the sink's own.
	Events *throttle.Log
}

// DefaultPolicy is the retry policy's defaults: backoff from 50ms to 10s,
// and a Retry-After honoured up to 5 minutes.
var DefaultPolicy = Policy{MinBackoff: 50 * time.Millisecond, MaxBackoff: 10 * time.Second, MaxRetryAfter: 5 * time.Minute}

// Stats are a push sink's counters.
type Stats struct {
	Batches    atomic.Uint64 // batches delivered
	Records    atomic.Uint64 // records (points) delivered
	Bytes      atomic.Uint64
	Retries    atomic.Uint64
	Failures   [numOutcomes]atomic.Uint64 // failed attempts, by outcome
	Dropped    [numDropReasons]atomic.Uint64
	QueueBytes atomic.Int64
	SpoolBytes atomic.Int64
	Damaged    atomic.Uint64 // spool segments cut short by damage
	SpoolSyncs atomic.Uint64
	LatencyNs  atomic.Int64 // of the last delivered batch
	// LastDelivered is when a batch was last delivered (unix
	// nanoseconds), 0 before the first.
	LastDelivered atomic.Int64
	// DeliveryNs adds up the time delivered batches took, for the mean
	// (with Batches).
	DeliveryNs atomic.Int64
	// WaitedNs adds up the time flushes waited for the backend to take
	// batches (flow control).
	WaitedNs atomic.Int64
	// Up is 1 while the last attempt reached the backend, 0 in an outage.
	Up atomic.Int64
}

// DropReason says why records were given up.
type DropReason uint8

// The reasons a push sink gives records up.
const (
	// DropQueueFull: the memory queue overflowed in an outage, or behind a
	// backend slower than the flushes, without a spool: the oldest go.
	DropQueueFull  DropReason = iota
	DropRetryAge              // retried for longer than max_retry_age
	DropRejected              // the backend refused the record itself
	DropPermanent             // a failure that retrying cannot mend
	DropShutdown              // undelivered when shutdown_timeout ran out, with no spool
	DropSpoolFull             // the spool reached its size: its oldest go
	DropSpoolError            // the spool could not be written
	// DropUnsupported: a kind of record the backend does not take (see
	// Unsupported).
	DropUnsupported
	numDropReasons
)

var dropNames = [numDropReasons]string{"queue_full", "retry_age", "rejected", "permanent", "shutdown", "spool_full", "spool_error",
	"unsupported"}

func (r DropReason) String() string { return dropNames[r] }

// DropReasons lists them all.
func DropReasons() []DropReason {
	out := make([]DropReason, numDropReasons)
	for i := range out {
		out[i] = DropReason(i)
	}
	return out
}

// spoolSyncEvery is how often what was written to a spool is synced to the
// disk: a power loss loses at most this much of it.
const spoolSyncEvery = time.Second

// Push is one push sink. A flush is encoded into its cork buffer; full
// batches wait in its queue; its own goroutine (Run) delivers them in order.
//
// While the backend takes batches, a flush larger than the queue waits for
// room (flow control), until the next flush is due. In an outage, or behind
// a backend slower than the flushes, the queue makes room: with a spool,
// everything that waits is written to disk, and new batches follow it there
// until the spool is delivered; without one, the oldest batches go, counted.
type Push struct {
	opts  Options // Name and Spool aside, read and changed between flushes
	name  atomic.Pointer[string]
	enc   Encoder
	buf   *cork.Buffer
	stats Stats
	// flushCtx is the context of the Flush in progress: its end (the next
	// flush is due, or shutdown) stops flow control's wait. flushes numbers
	// the flushes. Only Flush's goroutine uses them.
	flushCtx context.Context
	flushes  uint64
	// resume is where the next flush starts. Behind a backend slower than
	// the flushes, a flush stops where the next one is due and the next
	// starts there, so that such a backend gets every series in turn, not
	// the same ones every time. cut says a batch of the flush in progress
	// was dropped for that reason. Only Flush's goroutine uses them.
	resume int
	cut    bool

	mu        sync.Mutex
	policy    Policy
	transport Transport
	// concurrency is opts.Concurrency for Run, which may not read opts
	// while Reconfigure changes them.
	concurrency int
	// retired are transports Reconfigure replaced; Run closes them.
	retired []Transport
	queue   []queued
	qbytes  int
	spool   *spool.Spool
	failing bool // the last attempt failed to reach the backend
	closed  bool
	wake    chan struct{} // tells Run there is something to deliver
	room    chan struct{} // tells a waiting flush the queue shrank, or the backend failed

	failed, misconfigured, refused, givenUp, spoolFailed, unsupported *throttle.Event
}

type queued struct {
	batch   cork.Batch
	created time.Time
	// spooled marks a batch read from the spool: it stays there until it
	// is delivered.
	spooled bool
	// parent is set on the parts a spooled batch was split into: the
	// batch leaves the spool once all its parts are done.
	parent *spooledParent
	// bisection follows the splitting of the refused batch this is a part
	// of; nil outside a bisection.
	bisection *Bisection
	// flush numbers the flush the batch holds points of (memory batches
	// only): the batches of one flush may be sent at once.
	flush uint64
}

type spooledParent struct{ pending int }

// NewPush returns a push sink. Run must be called to deliver.
func NewPush(opts Options, enc Encoder, t Transport) *Push {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Events == nil {
		opts.Events = throttle.New(opts.Logger, time.Second)
	}
	ev := opts.Events
	p := &Push{opts: opts, policy: policyOf(opts), concurrency: opts.Concurrency, enc: enc, transport: t, spool: opts.Spool,
		wake: make(chan struct{}, 1), room: make(chan struct{}, 1),
		failed:        ev.Event(slog.LevelWarn, "delivery failed; will retry"),
		misconfigured: ev.Event(slog.LevelError, "the backend refuses this sink's configuration (URL, database, credentials or certificates); the data waits until it is mended"),
		refused:       ev.Event(slog.LevelError, "the backend refused records; they are dropped"),
		givenUp:       ev.Event(slog.LevelError, "gave a batch up"),
		spoolFailed:   ev.Event(slog.LevelError, "could not use the spool"),
		unsupported: ev.Event(slog.LevelError, "the backend does not take records this sink is configured to send "+
			"(a Prometheus without --enable-feature=native-histograms, for native_histograms = true); "+
			"they are dropped and the rest is sent: turn the feature on, or the option off"),
	}
	p.name.Store(&opts.Name)
	p.buf = cork.NewBuffer(opts.Batch, p.enqueue)
	p.stats.Up.Store(1)
	if p.spool != nil {
		p.stats.SpoolBytes.Store(p.spool.Bytes())
	}
	return p
}

// policyOf is the retry policy of opts, with the defaults filled in.
func policyOf(opts Options) Policy {
	policy := opts.Policy
	if policy.MinBackoff <= 0 {
		policy.MinBackoff = DefaultPolicy.MinBackoff
	}
	if policy.MaxBackoff <= 0 {
		policy.MaxBackoff = DefaultPolicy.MaxBackoff
	}
	if policy.MaxRetryAfter <= 0 {
		policy.MaxRetryAfter = DefaultPolicy.MaxRetryAfter
	}
	policy.Spooled = opts.Spool != nil
	return policy
}

// Reconfigure gives a sink whose identity a reload kept (its backend, and
// what it writes there) its new settings, encoder and transport, and keeps
// what waits: its queue, its spool and the batch in hand. opts.Spool,
// Logger and Events are ignored: the sink keeps its own; spoolBytes, when
// more than 0, is the spool's new bound. It is called between flushes;
// Run closes the old transport.
func (p *Push) Reconfigure(opts Options, enc Encoder, t Transport, spoolBytes int64) {
	opts.Spool, opts.Logger, opts.Events = p.opts.Spool, p.opts.Logger, p.opts.Events
	p.opts = opts
	p.name.Store(&opts.Name)
	p.enc = enc
	p.buf = cork.NewBuffer(opts.Batch, p.enqueue)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.policy = policyOf(opts)
	p.concurrency = opts.Concurrency
	if t != p.transport {
		p.retired = append(p.retired, p.transport)
		p.transport = t
	}
	if p.spool != nil && spoolBytes > 0 {
		p.spool.SetMaxBytes(spoolBytes)
	}
	p.signal(p.wake)
}

// current returns the transport, retry policy and concurrency in force,
// and closes the transports Reconfigure replaced, returning what they wrote
// but could not confirm: it is sent again first.
func (p *Push) current() (Transport, Policy, int, []queued) {
	p.mu.Lock()
	retired := p.retired
	p.retired = nil
	t, policy, concurrency := p.transport, p.policy, p.concurrency
	p.mu.Unlock()
	var unconfirmed []queued
	for _, old := range retired {
		if u, ok := old.(Unconfirmed); ok {
			for _, b := range u.Unconfirmed() {
				unconfirmed = append(unconfirmed, queued{batch: b, created: time.Now()})
			}
		}
		if c, ok := old.(interface{ Close() }); ok {
			c.Close()
		}
	}
	return t, policy, concurrency, unconfirmed
}

// Name is the sink's name.
func (p *Push) Name() string { return *p.name.Load() }

// Stats returns the sink's counters.
func (p *Push) Stats() *Stats { return &p.stats }

// Flush packs one flush into batches: corked while it is encoded, so that
// batches are as full as the limits allow; uncorked at its end. It returns
// once every batch is queued; while the backend takes batches that can mean
// waiting for room, but never past ctx's end.
func (p *Push) Flush(ctx context.Context, f *model.Flush) {
	p.flushCtx = ctx
	p.flushes++
	if p.opts.LeaveOutOwn {
		f = f.WithoutOwn()
	}
	p.buf.Cork()
	n := len(f.Points)
	if n == 0 {
		p.enc.Encode(f, p.buf)
	}
	start := p.resume
	if start >= n {
		start = 0
	}
	// From start to the end, then from the beginning to start, a part at
	// a time, until the next flush is due while the backend is up but
	// cannot keep up: the part in which that happened goes first next time.
	p.cut = false
	encoded, cutPart := 0, 0
	for encoded < n && !p.behind(ctx) {
		from := (start + encoded) % n
		to := n
		if from < start {
			to = start
		}
		to = min(to, from+flushPart)
		part := *f
		part.Points = f.Points[from:to]
		p.enc.Encode(&part, p.buf)
		if p.cut {
			cutPart = to - from
			break
		}
		encoded += to - from
	}
	p.buf.Uncork()
	if encoded < n {
		p.resume = (start + encoded) % n
		// The part that was cut short was counted as its batches were
		// dropped; the parts after it were never encoded.
		p.stats.Dropped[DropQueueFull].Add(uint64(n - encoded - cutPart))
	}
	p.flushCtx = nil
}

// flushPart is how many points a flush encodes between two looks at
// whether the next flush is due.
const flushPart = 1024

// behind reports whether the next flush is due while the backend is up,
// taking batches more slowly than the flushes come, and there is no spool
// to keep what it cannot take.
func (p *Push) behind(ctx context.Context) bool {
	if ctx.Err() == nil || p.spool != nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.failing
}

// enqueue takes a full batch from the cork buffer.
func (p *Push) enqueue(b cork.Batch) {
	q := queued{batch: b, created: time.Now(), flush: p.flushes}
	ctx := p.flushCtx
	if ctx == nil {
		ctx = context.Background()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	defer p.signal(p.wake)
	for {
		switch {
		case p.spool != nil && (p.failing || !p.spool.Empty()):
			// The spool is the outage queue, and keeps the order: while it
			// holds anything, new batches go behind it.
			p.appendToSpool(q)
			return
		case len(p.queue) == 0 || p.qbytes+cap(b.Data) <= p.opts.QueueBytes:
			p.queue = append(p.queue, q)
			p.qbytes += cap(b.Data) // what it holds in memory, not only what it uses
			p.stats.QueueBytes.Store(int64(p.qbytes))
			return
		case !p.failing && ctx.Err() != nil && p.spool == nil:
			// A backend slower than the flushes, and no spool to keep
			// what it cannot take: what this flush has not queued yet
			// goes first in the next one.
			p.cut = true
			p.stats.Dropped[DropQueueFull].Add(uint64(b.Len()))
			return
		case p.failing || ctx.Err() != nil:
			// An outage, or a backend slower than the flushes with a
			// spool: make room.
			if p.spool != nil {
				p.spill(nil)
				continue
			}
			for len(p.queue) > 0 && p.qbytes+cap(b.Data) > p.opts.QueueBytes {
				oldest := p.queue[0]
				p.queue[0] = queued{}
				p.queue = p.queue[1:]
				p.qbytes -= cap(oldest.batch.Data)
				p.stats.Dropped[DropQueueFull].Add(uint64(oldest.batch.Len()))
			}
			continue
		}
		// The backend is taking batches: wait until it took one.
		start := time.Now()
		p.mu.Unlock()
		select {
		case <-p.room:
		case <-ctx.Done():
		}
		p.mu.Lock()
		p.stats.WaitedNs.Add(int64(time.Since(start)))
	}
}

func (p *Push) signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// appendToSpool writes a batch at the spool's end. p.mu is held.
func (p *Push) appendToSpool(q queued) {
	dropped, err := p.spool.Append(q.batch, q.created)
	p.stats.Dropped[DropSpoolFull].Add(uint64(dropped))
	if err != nil {
		p.stats.Dropped[DropSpoolError].Add(uint64(q.batch.Len()))
		p.spoolFailed.Log("sink", p.Name(), "err", err, "records", q.batch.Len())
	}
	p.stats.SpoolBytes.Store(p.spool.Bytes())
}

// spill writes everything that waits in memory to the spool, in delivery
// order: older (what the transport could not confirm, and the batches in
// hand that are not spooled yet) in front of anything the spool holds, the
// memory queue behind it. p.mu is held.
func (p *Push) spill(older []cork.Batch) {
	if len(older) > 0 {
		if p.spool.Empty() {
			for _, b := range older {
				p.appendToSpool(queued{batch: b, created: time.Now()})
			}
		} else if err := p.spool.Prepend(older, time.Now()); err != nil {
			for _, b := range older {
				p.stats.Dropped[DropSpoolError].Add(uint64(b.Len()))
			}
			p.spoolFailed.Log("sink", p.Name(), "err", err)
		}
	}
	for i, q := range p.queue {
		p.appendToSpool(q)
		p.queue[i] = queued{}
	}
	p.queue, p.qbytes = p.queue[:0], 0
	p.stats.QueueBytes.Store(0)
	p.stats.SpoolBytes.Store(p.spool.Bytes())
}

// Close says no more flushes come: Run returns once the queue is empty.
func (p *Push) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.signal(p.wake)
}

// Run delivers batches until Close was called and the queues are empty, or
// until ctx is done: what is left then goes to the spool, or is counted as
// dropped without one. The batch being delivered is taken out of the queue,
// so that making room only ever moves batches that wait.
func (p *Push) Run(ctx context.Context) {
	var work []queued // the batch in hand, or the parts it was split into
	syncCtx, stopSyncing := context.WithCancel(ctx)
	var syncing sync.WaitGroup
	if p.spool != nil {
		syncing.Go(func() { p.syncSpool(syncCtx) })
	}
	defer func() {
		stopSyncing()
		syncing.Wait()
		_, _, _, unconfirmed := p.current()
		work = append(unconfirmed, work...)
		p.mu.Lock()
		defer p.mu.Unlock()
		p.keepAtShutdown(work)
		p.queue, p.qbytes = nil, 0
		p.stats.QueueBytes.Store(0)
		if p.spool != nil {
			p.stats.SpoolBytes.Store(p.spool.Bytes())
			p.spool.Close()
		}
	}()
	failures := 0 // attempts in a row that delivered nothing
	for {
		if len(work) == 0 {
			q, ok, closed := p.take()
			if closed {
				return
			}
			if !ok {
				select {
				case <-ctx.Done():
					return
				case <-p.wake:
				}
				continue
			}
			work = append(work, q)
		}
		transport, policy, concurrency, unconfirmed := p.current()
		work = append(unconfirmed, work...)
		var err error
		sent := false
		if concurrency > 1 && len(work) == 1 && work[0].fresh() {
			wave := append(work, p.takeMore(work[0].flush, concurrency-1)...)
			if len(wave) > 1 {
				if work, err = p.sendWave(ctx, transport, wave); ctx.Err() != nil {
					return // shutdown keeps what was not delivered
				}
				if len(work) == 0 {
					failures = 0
					p.recovered()
					continue
				}
				failures, sent = 0, true // the first that failed is handled below
			}
		}
		q := &work[0]
		start := time.Now()
		if !sent {
			err = transport.Send(ctx, q.batch)
		}
		if ctx.Err() != nil {
			return
		}
		outcome, retryAfter := OutcomeOf(err)
		attempt := Attempt{Outcome: outcome, RetryAfter: retryAfter, Age: time.Since(q.created), Records: q.batch.Len()}
		if outcome != Delivered {
			p.stats.Failures[outcome].Add(1)
		}
		if outcome == Delivered || outcome == PartlyStored {
			failures = 0
		} else {
			failures++
		}
		attempt.Failures = failures
		switch {
		case q.bisection != nil:
			q.bisection.Requests++
			if outcome == Delivered || outcome == PartlyStored {
				q.bisection.Accepted++
			}
			attempt.Bisection = *q.bisection
		case outcome == Refused:
			q.bisection = &Bisection{Size: q.batch.Len(), Requests: 1}
			attempt.Bisection = *q.bisection
		}
		d := policy.Decide(attempt, rand.Float64())
		if outcome != Permanent && d.Action != Retry && d.Action != Hold {
			p.recovered() // keepWaiting marks an outage, as it spills
		}
		switch d.Action {
		case Next:
			if outcome == Delivered {
				p.delivered(q.batch, time.Since(start))
			} else {
				p.refused.Log("sink", p.Name(), "answer", err.Error(), "stored", "the rest of the batch")
			}
			work = p.done(work)
			continue
		case Split:
			work = append(p.split(*q), work[1:]...)
			continue
		case Strip:
			var kept cork.Batch
			left := 0
			if s, ok := transport.(Stripper); ok {
				kept, left = s.Strip(q.batch)
			}
			if left == 0 {
				// Nothing of the kind to leave out: the backend refuses
				// the batch for what it is.
				left, kept = q.batch.Len(), cork.Batch{}
			}
			p.stats.Dropped[d.Reason].Add(uint64(left))
			p.unsupported.Log("sink", p.Name(), "answer", err.Error(), "dropped", left, "sent", kept.Len())
			if kept.Len() == 0 {
				work = p.done(work)
			} else {
				q.batch = kept
			}
			continue
		case Drop:
			if q.bisection != nil && outcome == Refused {
				q.bisection.Found++ // a bad record found: it buys the next descent
			}
			p.stats.Dropped[d.Reason].Add(uint64(q.batch.Len()))
			p.logDrop(d.Reason, err, q.batch.Len())
			work = p.done(work)
		case DropRest:
			n := 0
			for len(work) > 0 {
				n += work[0].batch.Len()
				work = p.done(work)
			}
			p.stats.Dropped[d.Reason].Add(uint64(n))
			p.givenUp.Log("sink", p.Name(), "reason", "the backend refused every part of a batch; the rest of it is dropped",
				"records", n, "answer", err.Error())
		case Retry, Hold:
			p.stats.Retries.Add(1)
			ev := p.failed
			if d.Action == Hold {
				ev = p.misconfigured
			}
			ev.Log("sink", p.Name(), "err", err.Error(), "retry_in", d.Delay.Round(time.Millisecond))
			work = p.keepWaiting(work)
		}
		if d.Delay > 0 {
			t := time.NewTimer(d.Delay)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
	}
}

// fresh reports whether a batch came from the memory queue as it is: one
// that may go in a wave with others of its flush.
func (q *queued) fresh() bool {
	return !q.spooled && q.parent == nil && q.bisection == nil && q.flush != 0
}

// sendWave sends batches of one flush at once, and returns those that were
// not delivered, in their order, with the error of the first: the delivery
// loop handles that one as if it had been sent alone, and the others after
// it. A batch the backend stored in part is done, as it is sent alone.
func (p *Push) sendWave(ctx context.Context, t Transport, wave []queued) ([]queued, error) {
	errs := make([]error, len(wave))
	took := make([]time.Duration, len(wave))
	var sending sync.WaitGroup
	for i := range wave {
		sending.Go(func() {
			start := time.Now()
			errs[i] = t.Send(ctx, wave[i].batch)
			took[i] = time.Since(start)
		})
	}
	sending.Wait()
	var left []queued
	var first error
	for i, err := range errs {
		switch outcome, _ := OutcomeOf(err); {
		case err == nil:
			p.delivered(wave[i].batch, took[i])
		case outcome == PartlyStored:
			p.stats.Failures[outcome].Add(1)
			p.refused.Log("sink", p.Name(), "answer", err.Error(), "stored", "the rest of the batch")
		default:
			if first == nil {
				first = err // counted as the loop handles it
			} else {
				p.stats.Failures[outcome].Add(1)
			}
			left = append(left, wave[i])
		}
	}
	return left, first
}

// delivered counts a batch the backend took.
func (p *Push) delivered(b cork.Batch, took time.Duration) {
	p.stats.Batches.Add(1)
	p.stats.Records.Add(uint64(b.Len()))
	p.stats.Bytes.Add(uint64(len(b.Data)))
	p.stats.LatencyNs.Store(int64(took))
	p.stats.LastDelivered.Store(time.Now().UnixNano())
	p.stats.DeliveryNs.Add(int64(took))
}

func (p *Push) logDrop(r DropReason, err error, records int) {
	if r == DropRejected {
		p.refused.Log("sink", p.Name(), "records", records, "answer", err.Error())
		return
	}
	p.givenUp.Log("sink", p.Name(), "reason", r.String(), "records", records, "err", err.Error())
}

func (p *Push) currentTransport() Transport {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.transport
}

// recovered records that the backend answered: the outage, if any, is
// over.
func (p *Push) recovered() {
	p.mu.Lock()
	p.failing = false
	p.mu.Unlock()
	p.stats.Up.Store(1)
}

// keepWaiting records an outage, puts what the failed attempt leaves where
// it waits for the next one, and returns what stays in hand. What the
// transport could not confirm is sent again first. With a spool,
// everything that waits goes to disk now, so that a crash in the outage
// loses none of it; the outage is marked in the same hold of p.mu as the
// spill, so that no newer batch reaches the spool before the older ones.
// A flush waiting for room stops waiting.
func (p *Push) keepWaiting(work []queued) []queued {
	var unconfirmed []cork.Batch
	if u, ok := p.currentTransport().(Unconfirmed); ok {
		unconfirmed = u.Unconfirmed()
	}
	p.stats.Up.Store(0)
	defer p.signal(p.room)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failing = true
	if p.spool == nil {
		front := make([]queued, 0, len(unconfirmed)+len(work))
		for _, b := range unconfirmed {
			front = append(front, queued{batch: b, created: time.Now()})
		}
		return append(front, work...)
	}
	older := unconfirmed
	var inSpool []queued
	for _, q := range work {
		if q.spooled || q.parent != nil {
			inSpool = append(inSpool, q)
		} else {
			older = append(older, q.batch)
		}
	}
	p.spill(older)
	return inSpool
}

// syncSpool syncs what was written to the spool to the disk every
// spoolSyncEvery, until ctx is done.
func (p *Push) syncSpool(ctx context.Context) {
	tick := time.NewTicker(spoolSyncEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		p.mu.Lock()
		if err := p.spool.Sync(); err != nil {
			p.spoolFailed.Log("sink", p.Name(), "err", err)
		}
		p.stats.SpoolSyncs.Store(p.spool.Syncs)
		p.mu.Unlock()
	}
}

// keepAtShutdown puts what is left in the spool, in delivery order: what
// the transport could not confirm and what is in hand are older than
// anything spooled (a batch is only taken from memory when the spool is
// empty), so they go in front; the memory queue goes at the end. A spooled
// batch in hand is still in the spool. Without a spool, all of it is
// counted as dropped. p.mu is held.
func (p *Push) keepAtShutdown(work []queued) {
	var front []cork.Batch
	if u, ok := p.transport.(Unconfirmed); ok { // p.mu is held
		front = append(front, u.Unconfirmed()...)
	}
	for _, q := range work {
		if !q.spooled && q.parent == nil { // those are still in the spool
			front = append(front, q.batch)
		}
	}
	if p.spool == nil {
		for _, b := range front {
			p.stats.Dropped[DropShutdown].Add(uint64(b.Len()))
		}
		for _, q := range p.queue {
			p.stats.Dropped[DropShutdown].Add(uint64(q.batch.Len()))
		}
		return
	}
	p.spill(front)
}

// split divides a refused batch in two, so that the refused records are
// isolated and the good ones still go.
func (p *Push) split(q queued) []queued {
	first, second := q.batch.Split()
	// The parts of a spooled batch keep it in the spool until both are
	// done: a crash meanwhile delivers it again rather than losing them.
	parent := q.parent
	switch {
	case q.spooled:
		parent = &spooledParent{pending: 2}
	case parent != nil:
		parent.pending++ // one part became two
	}
	return []queued{
		{batch: first, created: q.created, parent: parent, bisection: q.bisection},
		{batch: second, created: q.created, parent: parent, bisection: q.bisection},
	}
}

// done finishes the batch in hand (work[0]): a spooled one leaves the
// spool now, and so does one whose last part this was.
func (p *Push) done(work []queued) []queued {
	q := work[0]
	last := q.spooled
	if q.parent != nil {
		q.parent.pending--
		last = q.parent.pending == 0
	}
	if last {
		p.mu.Lock()
		if err := p.spool.Ack(); err != nil {
			p.spoolFailed.Log("sink", p.Name(), "err", err)
		}
		p.stats.SpoolBytes.Store(p.spool.Bytes())
		p.mu.Unlock()
	}
	return work[1:]
}

// take hands out the oldest batch: the spool's first, then the memory
// queue's, which it removes. closed reports that both are empty and no more
// batches will come.
// takeMore hands out up to n more batches of the memory queue's front
// that belong to flush, for one wave with a batch of it in hand.
func (p *Push) takeMore(flush uint64, n int) []queued {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []queued
	for len(out) < n && len(p.queue) > 0 && p.queue[0].flush == flush {
		q := p.queue[0]
		p.queue[0] = queued{}
		p.queue = p.queue[1:]
		p.qbytes -= cap(q.batch.Data)
		out = append(out, q)
	}
	if len(out) > 0 {
		p.stats.QueueBytes.Store(int64(p.qbytes))
		p.signal(p.room)
	}
	return out
}

func (p *Push) take() (q queued, ok, closed bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.spool != nil && !p.spool.Empty() {
		b, created, ok, err := p.spool.Peek()
		p.stats.Damaged.Store(p.spool.Damaged)
		if err != nil {
			p.spoolFailed.Log("sink", p.Name(), "err", err)
		}
		if ok {
			return queued{batch: b, created: created, spooled: true}, true, false
		}
	}
	if len(p.queue) == 0 {
		return queued{}, false, p.closed
	}
	q = p.queue[0]
	p.queue[0] = queued{}
	p.queue = p.queue[1:]
	p.qbytes -= cap(q.batch.Data)
	p.stats.QueueBytes.Store(int64(p.qbytes))
	p.signal(p.room)
	return q, true, false
}
