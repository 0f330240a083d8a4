package model

import (
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/statsbridge/statsbridge/cork"
)

// Flush is one flush interval's snapshot: a point for every live series.
// The points, and what they point to, are valid until the Flush is
// collected into again.
type Flush struct {
	cork.Interval
	Points []Point
	// Own is where statsbridge's own series begin: Points[Own:] are
	// self-metrics, Points[:Own] what clients sent.
	Own   int
	arena snapshotter
}

// WithoutOwn is the flush without statsbridge's own series: it shares f's
// points.
func (f *Flush) WithoutOwn() *Flush {
	g := *f
	g.Points = f.Points[:f.Own:f.Own]
	return &g
}

// Collect ends the interval: it fills f with a point for every live series,
// family by family in name order (statsbridge's own after the others), and
// starts the next interval. Series idle for longer than their TTL are
// removed afterwards. It is for push sinks, which send every series at
// every flush; without one, EndInterval does.
func (m *Model) Collect(f *Flush) {
	m.ending.Lock()
	defer m.ending.Unlock()
	end := f.End.UnixNano()
	// Taken before the snapshot: a series that changes after it lists
	// itself for the next interval, and its snapshot ends this one.
	changed := m.takeChanged()
	// Sized to what it will hold, with room for series that come during
	// the flush: grown by appending, a million points would double.
	n := int(m.nseries.Load() + m.nself.Load())
	f.Points = slices.Grow(f.Points[:0], n+n/16+64)
	f.arena.reset()
	f.arena.percentiles = m.settings.Load().opts.Percentiles
	f.arena.now = end
	m.eachSeries(m.ordered(), func(batch []*Series) {
		for _, s := range batch {
			if s.Registered() {
				continue // taken below, after the others
			}
			f.Points = append(f.Points, Point{})
			f.arena.take(s, &f.Points[len(f.Points)-1], true)
		}
	})
	f.Own = len(f.Points)
	m.mu.RLock()
	own := append(m.scratch[:0], m.own...)
	m.mu.RUnlock()
	for _, s := range own {
		f.Points = append(f.Points, Point{})
		f.arena.take(s, &f.Points[len(f.Points)-1], true)
	}
	clear(own)
	m.scratch = own[:0]
	for _, list := range changed {
		for _, s := range list {
			if !s.removed.Load() {
				m.settled(s, s.unlist())
			}
		}
	}
	m.giveBack(changed)
	m.expire(end)
	m.lastEnd = end
}

// EndInterval ends the interval without a snapshot, for a model no push
// sink reads: the series that changed start their next interval (a set's
// distinct count, a timer's values), and series idle for longer than their
// TTL are removed. A series that did not change costs nothing.
func (m *Model) EndInterval(end time.Time) {
	m.ending.Lock()
	defer m.ending.Unlock()
	// New families take their place in the order now, while they are few,
	// rather than all at the next scrape.
	m.ordered()
	changed := m.takeChanged()
	for _, list := range changed {
		m.work.intervalsEnded.Add(int64(len(list)))
		for _, s := range list {
			if s.removed.Load() {
				continue
			}
			again, lastSeen := s.endInterval()
			if again {
				m.markChanged(s)
			}
			m.settled(s, lastSeen)
		}
	}
	m.giveBack(changed)
	m.expire(end.UnixNano())
	m.lastEnd = end.UnixNano()
}

// Gather calls fn for every family, in name order, with the current points
// of its series. It does not end the interval: it is for scrapes. f and
// points are valid during the call.
func (m *Model) Gather(fn func(f *Family, points []Point)) {
	var (
		points []Point
		series []*Series
		family Family
	)
	sn := snapshotter{now: m.now().UnixNano()}
	for fe := range m.ordered().all() {
		series = m.listSeries(series[:0], fe)
		if len(series) == 0 {
			continue
		}
		points = points[:0]
		sn.reset()
		for _, s := range series {
			points = append(points, Point{})
			sn.take(s, &points[len(points)-1], false)
		}
		family = fe.Family()
		fn(&family, points)
	}
}

// listSeries appends the series of a family that is still registered,
// under the registry's read lock; statsbridge's own come after the others,
// in the order they were registered, as a flush gives them.
func (m *Model) listSeries(dst []*Series, fe *familyEntry) []*Series {
	m.mu.RLock()
	defer m.mu.RUnlock()
	switch {
	case fe.removed:
	case fe.nown == 0:
		dst = append(dst, fe.series...)
	default:
		for _, s := range fe.series {
			if !s.Registered() {
				dst = append(dst, s)
			}
		}
		name := fe.name()
		at := sort.Search(len(m.own), func(i int) bool { return m.own[i].family.name() >= name })
		for ; at < len(m.own) && m.own[at].family.name() == name; at++ {
			if m.own[at].family == fe {
				dst = append(dst, m.own[at])
			}
		}
	}
	return dst
}

// seriesBatch is how many series an interval's end lists at a time under
// the registry's read lock.
const seriesBatch = 1024

// eachSeries calls fn with the series of the families in view, in order,
// a batch at a time, each batch listed under the registry's read lock. The
// ending lock is held, so no series is removed meanwhile: a family's
// series keep their places, and new ones come after them.
func (m *Model) eachSeries(view orderView, fn func(batch []*Series)) {
	batch := m.scratch[:0]
	for families := range chunks(view.all(), 256) {
		i, from := 0, 0
		for i < len(families) {
			m.mu.RLock()
			for i < len(families) && len(batch) < seriesBatch {
				fe := families[i]
				n := 0
				if !fe.removed {
					n = min(len(fe.series)-from, seriesBatch-len(batch))
					batch = append(batch, fe.series[from:from+n]...)
				}
				if from += n; fe.removed || from == len(fe.series) {
					i, from = i+1, 0
				}
			}
			m.mu.RUnlock()
			if len(batch) == seriesBatch {
				fn(batch)
				clear(batch)
				batch = batch[:0]
			}
		}
	}
	if len(batch) > 0 {
		fn(batch)
		clear(batch)
	}
	m.scratch = batch[:0]
}

// chunks yields the sequence's values in slices of up to n, each valid
// until the next.
func chunks[T any](seq func(func(T) bool), n int) func(func([]T) bool) {
	return func(yield func([]T) bool) {
		chunk := make([]T, 0, n)
		for v := range seq {
			if chunk = append(chunk, v); len(chunk) == n {
				if !yield(chunk) {
					return
				}
				chunk = chunk[:0]
			}
		}
		if len(chunk) > 0 {
			yield(chunk)
		}
	}
}

// changedShards spreads the lists of changed series, so that readers
// listing series at once rarely wait for each other.
const changedShards = 16

// changedList holds the series that changed since the interval began: a
// series lists itself with its first sample of an interval (and when it is
// registered), so that the interval's end looks at those alone.
type changedList struct {
	mu     sync.Mutex
	series []*Series
	spare  []*Series // the list the last interval's end gave back
	_      [64]byte  // a cache line of its own
}

// markChanged lists a series that changed. The series' listed flag, set
// under its lock by whoever calls this, keeps it from being listed twice.
func (m *Model) markChanged(s *Series) {
	l := &m.changed[s.bindKey%changedShards]
	l.mu.Lock()
	l.series = append(l.series, s)
	l.mu.Unlock()
}

// takeChanged takes the lists of changed series; series that change from
// now on list themselves anew.
func (m *Model) takeChanged() [changedShards][]*Series {
	var taken [changedShards][]*Series
	for i := range m.changed {
		l := &m.changed[i]
		l.mu.Lock()
		taken[i], l.series, l.spare = l.series, l.spare, nil
		l.mu.Unlock()
	}
	return taken
}

// giveBack returns the taken lists, emptied, for the next interval; a list
// far larger than what it held (a burst of new series, long gone) is let
// go.
func (m *Model) giveBack(taken [changedShards][]*Series) {
	for i := range m.changed {
		spare := taken[i]
		clear(spare)
		if cap(spare) > 4*len(spare)+256 {
			spare = nil
		}
		l := &m.changed[i]
		l.mu.Lock()
		l.spare = spare[:0]
		l.mu.Unlock()
	}
}

// dropSpares lets the spare lists go: after a mass expiry.
func (m *Model) dropSpares() {
	for i := range m.changed {
		l := &m.changed[i]
		l.mu.Lock()
		l.spare = nil
		l.mu.Unlock()
	}
	m.scratch = nil
}

// flushWork counts what ending intervals cost, so that tests can hold a
// flush to the work that what changed calls for.
type flushWork struct {
	namesSorted    atomic.Int64 // family names put through a sort
	expiryChecks   atomic.Int64 // series expiry looked at
	intervalsEnded atomic.Int64 // series EndInterval looked at
}
