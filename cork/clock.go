package cork

import (
	"context"
	"time"
)

// Interval is one flush interval.
type Interval struct {
	// Start is the interval's aligned start: the timestamp of its
	// per-interval (delta) points.
	Start time.Time
	// End is the flush time: the timestamp of its cumulative points.
	End time.Time
	// Length is the time the interval really covers, for per-second rates.
	// It differs from End-Start for the first interval after a start.
	Length time.Duration
	// Final marks the partial interval flushed at shutdown.
	Final bool
}

// Stamp is the timestamp a sink writes for the interval's points: End for
// cumulative values, Start for per-interval ones. Clock aligns both so that
// neither repeats across intervals or restarts.
func (iv Interval) Stamp(cumulative bool) time.Time {
	if cumulative {
		return iv.End
	}
	return iv.Start
}

// Clock uncorks on every multiple of the flush interval. Ticks are aligned
// to the wall clock (a 10s interval flushes at :00, :10, :20 ...) so that
// every relay's points land in the same backend slots.
//
// Timestamps never collide. A delta point carries its interval's aligned
// start, and a shutdown flush covers the partial last interval [Start, now),
// so it carries the start of a slot no earlier point used. A restart within
// that same interval must not write that slot again: so after a start at t,
// the first interval runs to the second boundary after t and carries the
// first boundary after t as its start.
type Clock struct {
	every time.Duration
	now   func() time.Time
	since time.Time // when the interval in progress really began
	cur   Interval  // the interval in progress; End is when it is due
}

// NewClock starts the clock now. now nil means time.Now.
func NewClock(every time.Duration, now func() time.Time) *Clock {
	if now == nil {
		now = time.Now
	}
	t := now()
	start := t.Truncate(every)
	if !start.Equal(t) {
		start = start.Add(every)
	}
	c := &Clock{every: every, now: now, since: t}
	c.cur = Interval{Start: start, End: start.Add(every)}
	return c
}

// Run calls flush at the end of every interval until ctx is done. It then
// returns without flushing: the caller stops its inputs first and then
// makes the last flush with Final.
func (c *Clock) Run(ctx context.Context, flush func(Interval)) {
	timer := time.NewTimer(c.cur.End.Sub(c.now()))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		flush(c.advance())
		timer.Reset(c.cur.End.Sub(c.now()))
	}
}

// Due is when the interval in progress ends: when to call Advance, for a
// caller that runs its own loop.
func (c *Clock) Due() time.Time { return c.cur.End }

// Advance closes the interval in progress and starts the next, as Run does
// at each tick.
func (c *Clock) Advance() Interval { return c.advance() }

// SetInterval changes the flush interval (a reload): the interval in
// progress ends when it was due, and the next ends at the first boundary of
// the new interval after it. Starts never repeat, so timestamps do not
// collide across the change either.
func (c *Clock) SetInterval(every time.Duration) { c.every = every }

// advance closes the interval in progress and starts the next. A flush that
// ran late (a stalled machine) does not make the clock drift or flush twice:
// the next interval ends at the next boundary still ahead.
func (c *Clock) advance() Interval {
	done := c.cur
	done.Length = done.End.Sub(c.since)
	c.since = done.End
	next := c.now().Truncate(c.every).Add(c.every)
	if !next.After(done.End) {
		next = done.End.Add(c.every)
	}
	c.cur = Interval{Start: done.End, End: next}
	return done
}

// Final closes the interval in progress early, at now, for the shutdown
// flush. A shutdown before the first interval's aligned start carries the
// boundary before it: it has no other slot to use.
func (c *Clock) Final() Interval {
	end := c.now()
	iv := Interval{Start: c.cur.Start, End: end, Length: end.Sub(c.since), Final: true}
	if iv.Start.After(end) {
		iv.Start = iv.Start.Add(-c.every)
	}
	return iv
}
