// Package sinks delivers flushes to backends. Each sub-package renders one
// backend's wire format; this package holds what the push sinks share: the
// cork buffer a flush is packed into, the bounded outage queue, and the
// delivery goroutine with its timeouts, retries and backoff.
package sinks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/statsbridge/statsbridge/cork"
	"github.com/statsbridge/statsbridge/model"
)

// Encoder renders a flush into a push sink's records.
type Encoder interface {
	// Encode appends one record per point of f (points it cannot or need
	// not send are left out) to buf.
	Encode(f *model.Flush, buf *cork.Buffer)
}

// Unconfirmed is what a Transport may also offer: batches it took but
// cannot tell were stored (carbon acknowledges nothing), for shutdown to
// keep rather than lose.
type Unconfirmed interface {
	Unconfirmed() []cork.Batch
}

// Transport sends one batch to the backend. Its error says what to do next:
// nil (delivered), a *Rejected (the backend refused the content: split the
// batch to find the bad records), a *Permanent (never retry), or any other
// error (retry later).
type Transport interface {
	Send(ctx context.Context, b cork.Batch) error
}

// Rejected is a refusal of the batch's content, such as an HTTP 400. Delivered
// says the backend stored the good records anyway (an InfluxDB partial write),
// so the batch must not be sent again.
type Rejected struct {
	Err       error
	Delivered bool
}

func (e *Rejected) Error() string { return e.Err.Error() }
func (e *Rejected) Unwrap() error { return e.Err }

// Permanent is a failure that retrying cannot mend.
type Permanent struct{ Err error }

func (e *Permanent) Error() string { return e.Err.Error() }
func (e *Permanent) Unwrap() error { return e.Err }

// RetryAfter is a retryable failure with the delay the backend asked for.
type RetryAfter struct {
	Err   error
	After time.Duration
}

func (e *RetryAfter) Error() string { return e.Err.Error() }
func (e *RetryAfter) Unwrap() error { return e.Err }

// Options configure a push sink's delivery.
type Options struct {
	Name        string // for logs and self-metrics: "graphite[0]"
	Batch       cork.Limits
	QueueBytes  int
	MaxRetryAge time.Duration // 0: retry until the queue overflows
	// Spool, when set, takes what overflows the memory queue and what
	// shutdown could not deliver. The Push owns it from then on.
	Spool  *Spool
	Logger *slog.Logger
}

// Stats are a push sink's counters.
type Stats struct {
	Batches    atomic.Uint64 // batches delivered
	Records    atomic.Uint64 // records (points) delivered
	Bytes      atomic.Uint64
	Retries    atomic.Uint64
	Failures   [numFailureReasons]atomic.Uint64 // failed attempts
	Dropped    [numDropReasons]atomic.Uint64
	QueueBytes atomic.Int64
	SpoolBytes atomic.Int64
	Damaged    atomic.Uint64 // spool segments cut short by damage
	LatencyNs  atomic.Int64  // of the last delivered batch
	// DeliveryNs adds up the time delivered batches took, for the mean
	// (with Batches).
	DeliveryNs atomic.Int64
}

// FailureReason says why an attempt to deliver failed.
type FailureReason uint8

// The reasons an attempt fails.
const (
	FailNetwork     FailureReason = iota // connecting, writing or reading failed
	FailTimeout                          // the backend did not answer in time
	FailThrottled                        // HTTP 429
	FailServerError                      // HTTP 5xx
	FailClientError                      // other HTTP 4xx: usually configuration
	FailRejected                         // the backend refused the content
	FailPermanent                        // retrying cannot mend it
	numFailureReasons
)

var failureNames = [numFailureReasons]string{"network", "timeout", "throttled", "server_error", "client_error", "rejected", "permanent"}

func (r FailureReason) String() string { return failureNames[r] }

// FailureReasons lists them all.
func FailureReasons() []FailureReason {
	out := make([]FailureReason, numFailureReasons)
	for i := range out {
		out[i] = FailureReason(i)
	}
	return out
}

// failureReason classifies a Transport's error.
func failureReason(err error) FailureReason {
	var rej *Rejected
	var perm *Permanent
	var st *StatusError
	var ne net.Error
	switch {
	case errors.As(err, &rej):
		return FailRejected
	case errors.As(err, &perm):
		return FailPermanent
	case errors.As(err, &st):
		switch {
		case st.Status == http.StatusTooManyRequests:
			return FailThrottled
		case st.Status >= 500:
			return FailServerError
		}
		return FailClientError
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return FailTimeout
	}
	return FailNetwork
}

// DropReason says why records were given up.
type DropReason uint8

// The reasons a push sink gives records up.
const (
	DropQueueFull  DropReason = iota // the outage queue overflowed: the oldest go
	DropRetryAge                     // retried for longer than max_retry_age
	DropRejected                     // the backend refused the record itself
	DropPermanent                    // a failure that retrying cannot mend
	DropShutdown                     // undelivered when shutdown_timeout ran out, with no spool
	DropSpoolFull                    // the spool reached its size: its oldest go
	DropSpoolError                   // the spool could not be written
	numDropReasons
)

var dropNames = [numDropReasons]string{"queue_full", "retry_age", "rejected", "permanent", "shutdown", "spool_full", "spool_error"}

func (r DropReason) String() string { return dropNames[r] }

// DropReasons lists them all.
func DropReasons() []DropReason {
	out := make([]DropReason, numDropReasons)
	for i := range out {
		out[i] = DropReason(i)
	}
	return out
}

// Push is one push sink: flushes are encoded into its cork buffer, full
// batches wait in its bounded queue, and its own goroutine delivers them in
// order. A slow or dead backend fills only its own queue.
type Push struct {
	opts      Options
	enc       Encoder
	transport Transport
	buf       *cork.Buffer
	stats     Stats

	mu      sync.Mutex
	queue   []queued
	qbytes  int
	spool   *Spool
	closed  bool
	wake    chan struct{}
	lastLog time.Time // rejections are logged at most once an interval
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
}

type spooledParent struct{ pending int }

// NewPush returns a push sink. Run must be called to deliver.
func NewPush(opts Options, enc Encoder, t Transport) *Push {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Push{opts: opts, enc: enc, transport: t, wake: make(chan struct{}, 1), spool: opts.Spool}
	p.buf = cork.NewBuffer(opts.Batch, p.enqueue)
	if p.spool != nil {
		p.stats.SpoolBytes.Store(p.spool.Bytes())
	}
	return p
}

// Name is the sink's name.
func (p *Push) Name() string { return p.opts.Name }

// Stats returns the sink's counters.
func (p *Push) Stats() *Stats { return &p.stats }

// Flush packs one flush into batches: corked while it is encoded, so that
// batches are as full as the limits allow; uncorked at its end.
func (p *Push) Flush(f *model.Flush) {
	p.buf.Cork()
	p.enc.Encode(f, p.buf)
	p.buf.Uncork()
}

func (p *Push) enqueue(b cork.Batch) {
	p.mu.Lock()
	p.queue = append(p.queue, queued{batch: b, created: time.Now()})
	p.qbytes += cap(b.Data) // what it holds in memory, not only what it uses
	for p.qbytes > p.opts.QueueBytes && len(p.queue) > 1 {
		// The newest batch always gets in; the oldest waiting ones make
		// room, on disk when there is a spool. So the spool always holds
		// older batches than memory, and delivery takes it first.
		oldest := p.queue[0]
		p.queue = p.queue[1:]
		p.qbytes -= cap(oldest.batch.Data)
		p.overflow(oldest, DropQueueFull)
	}
	p.stats.QueueBytes.Store(int64(p.qbytes))
	p.mu.Unlock()
	p.signal()
}

// overflow puts a batch in the spool, or drops it for reason when there is
// none. p.mu is held.
func (p *Push) overflow(q queued, reason DropReason) {
	if p.spool == nil {
		p.stats.Dropped[reason].Add(uint64(q.batch.Len()))
		return
	}
	dropped, err := p.spool.Append(q.batch, q.created)
	p.stats.Dropped[DropSpoolFull].Add(uint64(dropped))
	if err != nil {
		p.stats.Dropped[DropSpoolError].Add(uint64(q.batch.Len()))
		p.opts.Logger.Error("could not write to the spool; the batch is dropped", "sink", p.opts.Name, "err", err)
	}
	p.stats.SpoolBytes.Store(p.spool.Bytes())
}

func (p *Push) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Close says no more flushes come: Run returns once the queue is empty.
func (p *Push) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.signal()
}

// Run delivers batches until Close was called and the queues are empty, or
// until ctx is done: what is left then goes to the spool, or is counted as
// dropped without one. The batch being delivered is taken out of the queue,
// so that an overflow only ever moves batches that wait.
func (p *Push) Run(ctx context.Context) {
	var work []queued // the batch in hand, or the parts it was split into
	defer func() {
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
	backoff := newBackoff()
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
		q := work[0]
		start := time.Now()
		err := p.transport.Send(ctx, q.batch)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			took := int64(time.Since(start))
			p.stats.Batches.Add(1)
			p.stats.Records.Add(uint64(q.batch.Len()))
			p.stats.Bytes.Add(uint64(len(q.batch.Data)))
			p.stats.LatencyNs.Store(took)
			p.stats.DeliveryNs.Add(took)
			work = p.done(work)
			backoff.reset()
			continue
		}
		reason := failureReason(err)
		p.stats.Failures[reason].Add(1)
		var rej *Rejected
		var perm *Permanent
		switch {
		case errors.As(err, &rej):
			parts := p.rejected(q, rej)
			if len(parts) == 0 {
				work = p.done(work)
			} else {
				work = append(parts, work[1:]...)
			}
			backoff.reset()
		case errors.As(err, &perm):
			p.logOnce("backend refused a batch for good; dropped", err, q.batch.Len())
			p.stats.Dropped[DropPermanent].Add(uint64(q.batch.Len()))
			work = p.done(work)
		// A configuration error (a missing database, credentials) keeps its
		// data, bounded only by the queue and spool, until an operator
		// mends it: the age limit is for backends that fail.
		// With a spool, nothing is given up for age: spool_size bounds
		// what waits.
		case p.spool == nil && p.opts.MaxRetryAge > 0 && time.Since(q.created) > p.opts.MaxRetryAge && reason != FailClientError:
			p.logOnce("giving up a batch older than max_retry_age", err, q.batch.Len())
			p.stats.Dropped[DropRetryAge].Add(uint64(q.batch.Len()))
			work = p.done(work)
		default:
			p.stats.Retries.Add(1)
			delay := backoff.next()
			var ra *RetryAfter
			if errors.As(err, &ra) && ra.After > delay {
				delay = ra.After
			}
			if reason == FailClientError {
				p.opts.Logger.Error("the backend refuses this sink's configuration (URL, database or credentials); the data waits until it is mended",
					"sink", p.opts.Name, "answer", err.Error(), "retry_in", delay.Round(time.Millisecond))
			} else {
				p.opts.Logger.Warn("delivery failed; will retry", "sink", p.opts.Name, "err", err, "in", delay.Round(time.Millisecond))
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(delay):
			}
		}
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
	if u, ok := p.transport.(Unconfirmed); ok {
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
	} else if err := p.spool.Prepend(front, time.Now()); err != nil {
		for _, b := range front {
			p.stats.Dropped[DropSpoolError].Add(uint64(b.Len()))
		}
		p.opts.Logger.Error("could not write to the spool at shutdown", "sink", p.opts.Name, "err", err)
	}
	for _, q := range p.queue {
		p.overflow(q, DropShutdown)
	}
}

// rejected handles a refusal of a batch's content and returns what is left
// to send. A batch of several records is split in two, so that the refused
// records are isolated and the good ones still go; a single refused record
// is dropped.
func (p *Push) rejected(q queued, rej *Rejected) []queued {
	switch {
	case rej.Delivered:
		p.logOnce("backend stored a batch in part and refused some of its records", rej, q.batch.Len())
		return nil
	case q.batch.Len() > 1:
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
		return []queued{{batch: first, created: q.created, parent: parent}, {batch: second, created: q.created, parent: parent}}
	default:
		p.logOnce("backend refused a record; dropped", rej, 1)
		p.stats.Dropped[DropRejected].Add(1)
		return nil
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
			p.opts.Logger.Error("could not remove a delivered batch from the spool", "sink", p.opts.Name, "err", err)
		}
		p.stats.SpoolBytes.Store(p.spool.Bytes())
		p.mu.Unlock()
	}
	return work[1:]
}

// take hands out the oldest batch: the spool's first, then the memory
// queue's, which it removes. closed reports that both are empty and no more
// batches will come.
func (p *Push) take() (q queued, ok, closed bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.spool != nil && !p.spool.Empty() {
		b, created, ok, err := p.spool.Peek()
		p.stats.Damaged.Store(p.spool.Damaged)
		if err != nil {
			p.opts.Logger.Error("could not read the spool", "sink", p.opts.Name, "err", err)
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
	return q, true, false
}

func (p *Push) logOnce(msg string, err error, records int) {
	p.mu.Lock()
	now := time.Now()
	due := now.Sub(p.lastLog) >= 10*time.Second
	if due {
		p.lastLog = now
	}
	p.mu.Unlock()
	if due {
		p.opts.Logger.Error(msg, "sink", p.opts.Name, "records", records, "answer", fmt.Sprint(err))
	}
}

// backoff doubles from 50ms to 10s, with jitter so that relays restarted
// together do not retry in step.
type backoff struct{ cur time.Duration }

const (
	minBackoff = 50 * time.Millisecond
	maxBackoff = 10 * time.Second
)

func newBackoff() *backoff { return &backoff{} }

func (b *backoff) reset() { b.cur = 0 }

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = minBackoff
	} else {
		b.cur = min(2*b.cur, maxBackoff)
	}
	return b.cur/2 + rand.N(b.cur/2+1)
}
