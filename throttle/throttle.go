// Package throttle limits statsbridge's per-event log lines. A hostile or
// broken client can cause an event (a refused connection, a bad line, a
// refused sample) thousands of times a second; each kind of event is written
// at most once a period, and the ones held back are counted and reported,
// with the next line of their kind or at the next Flush.
package throttle

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Log hands out Events that share one logger and one period.
type Log struct {
	logger *slog.Logger
	period time.Duration
	now    func() time.Time

	mu     sync.Mutex
	events []*Event
}

// New returns a Log that writes each kind of event at most once a period.
// logger nil discards.
func New(logger *slog.Logger, period time.Duration) *Log {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Log{logger: logger, period: period, now: time.Now}
}

// Event is one kind of per-event log line, written at most burst times a
// period (once, for most). It is safe for concurrent use, and costs a few
// atomic operations when it is held back.
type Event struct {
	log        *Log
	level      slog.Level
	msg        string
	burst      int64
	next       atomic.Int64 // unix nanoseconds when the period in progress ends
	written    atomic.Int64 // lines written in the period in progress
	suppressed atomic.Uint64
}

// Event returns a new kind of event, written at level with msg.
func (l *Log) Event(level slog.Level, msg string) *Event { return l.EventBurst(level, msg, 1) }

// EventBurst returns a new kind of event written up to burst times a period:
// for a debug line that is worth more than one a second (each new name).
func (l *Log) EventBurst(level slog.Level, msg string, burst int) *Event {
	e := &Event{log: l, level: level, msg: msg, burst: int64(max(burst, 1))}
	l.mu.Lock()
	l.events = append(l.events, e)
	l.mu.Unlock()
	return e
}

// Due reports whether the next Log would be written: callers whose
// arguments are costly to build ask first, and call Log either way.
func (e *Event) Due() bool {
	return e.log.now().UnixNano() >= e.next.Load() || e.written.Load() < e.burst
}

// take reports whether a line may be written now, and counts it.
func (e *Event) take() bool {
	now := e.log.now().UnixNano()
	next := e.next.Load()
	if now >= next {
		if !e.next.CompareAndSwap(next, now+int64(e.log.period)) {
			return false // another line began the period this moment
		}
		e.written.Store(1)
		return true
	}
	return e.burst > 1 && e.written.Add(1) <= e.burst
}

// Log writes the event with args when it is due (see EventBurst), adding how
// many were held back in between; otherwise it only counts.
func (e *Event) Log(args ...any) {
	if !e.take() {
		e.suppressed.Add(1)
		return
	}
	if n := e.suppressed.Swap(0); n > 0 {
		args = append(args, "suppressed", n)
	}
	e.log.logger.Log(context.Background(), e.level, e.msg, args...)
}

// Flush reports every event held back since its last line, so that a burst
// that stops is still told in full.
func (l *Log) Flush() {
	l.mu.Lock()
	events := append([]*Event(nil), l.events...)
	l.mu.Unlock()
	for _, e := range events {
		if n := e.suppressed.Swap(0); n > 0 {
			l.logger.Log(context.Background(), e.level, e.msg+" (held back; counted)", "suppressed", n)
		}
	}
}
