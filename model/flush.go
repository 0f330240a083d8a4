package model

import (
	"runtime/debug"
	"slices"
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
	arena  snapshotter
}

// Collect ends the interval: it fills f with a point for every live series,
// family by family in name order, and starts the next interval. Series idle
// for longer than their TTL are removed afterwards. It is for push sinks,
// which send every series at every flush; without one, EndInterval does.
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
	f.arena.percentiles = m.opts.Percentiles
	f.arena.now = end
	m.eachSeries(m.ordered(), func(batch []*Series) {
		for _, s := range batch {
			f.Points = append(f.Points, Point{})
			f.arena.take(s, &f.Points[len(f.Points)-1], true)
		}
	})
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
// under the registry's read lock.
func (m *Model) listSeries(dst []*Series, fe *familyEntry) []*Series {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if !fe.removed {
		dst = append(dst, fe.series...)
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

// expiryList holds the series of one TTL in the order they last changed,
// as the interval ends found them: those that may have expired are at its
// head. Its nodes are the ending lock's.
type expiryList struct {
	ttl        int64
	head, tail *expiryNode
}

// expiryNode is a series' place in its expiry list.
type expiryNode struct {
	list         *expiryList
	older, newer *expiryNode
	series       *Series
	// since is the end of the interval before the one the series last
	// changed in: its last sample came after it.
	since  int64
	linked bool
}

// expiryList returns the list of a TTL. m.mu is held.
func (m *Model) expiryList(ttl time.Duration) *expiryList {
	l := m.expiries[ttl]
	if l == nil {
		l = &expiryList{ttl: int64(ttl)}
		m.expiries[ttl] = l
	}
	return l
}

// settled moves a series that changed (its last sample at lastSeen) to
// the end of its expiry list. A series that was listed without changing
// (a set counting its empty interval) stays where it is.
func (m *Model) settled(s *Series, lastSeen int64) {
	n := s.expiry
	if n == nil || n.linked && lastSeen < m.lastEnd {
		return
	}
	l := n.list
	if n.linked {
		l.unlink(n)
	}
	n.since = m.lastEnd
	n.older, n.newer, n.linked = l.tail, nil, true
	if l.tail != nil {
		l.tail.newer = n
	} else {
		l.head = n
	}
	l.tail = n
}

func (l *expiryList) unlink(n *expiryNode) {
	if n.older != nil {
		n.older.newer = n.newer
	} else {
		l.head = n.newer
	}
	if n.newer != nil {
		n.newer.older = n.older
	} else {
		l.tail = n.older
	}
	n.older, n.newer, n.linked = nil, nil, false
}

// expire removes series whose TTL passed without a sample. Only the heads
// of the expiry lists are looked at: series whose last change came before
// their TTL ago. A counter that comes back starts again with a new created
// time, so Prometheus sees a proper reset.
func (m *Model) expire(now int64) {
	m.mu.Lock()
	before := int(m.nseries.Load())
	var gone []*Series
	for _, l := range m.expiries {
		cutoff := now - l.ttl
		for n := l.head; n != nil && n.since < cutoff; {
			next := n.newer
			m.work.expiryChecks.Add(1)
			if n.series.expireIfIdle(cutoff) {
				l.unlink(n)
				m.removeSeries(n.series)
				gone = append(gone, n.series)
			}
			n = next
		}
	}
	// Go's maps never shrink: after a mass expiry they would hold the
	// memory of every series that went. Built anew, they are sized to what
	// is left.
	mass := len(gone) >= massExpiry && len(gone) >= before/4
	if mass {
		m.order.rebuild()
		for fe := range m.order.view.all() {
			m.shrink(fe)
		}
		for _, fe := range m.order.fresh {
			m.shrink(fe)
		}
	}
	m.mu.Unlock()
	if mass {
		m.sweep()
		m.dropSpares()
		// Hand the freed pages back to the system now: a mass expiry is
		// rare, and an operator watching RSS expects it to fall.
		debug.FreeOSMemory()
		return
	}
	for _, s := range gone {
		m.forget(s)
	}
}

// shrink sizes a family's series and index to what it holds. m.mu is held.
func (m *Model) shrink(fe *familyEntry) {
	fe.series = slices.Clone(fe.series)
	if fe.index != nil {
		m.buildIndex(fe)
	}
}

// massExpiry is how many series must expire at once (and at least a
// quarter of them) for the model to rebuild its maps.
const massExpiry = 4096

// flushWork counts what ending intervals cost, so that tests can hold a
// flush to the work that what changed calls for.
type flushWork struct {
	namesSorted    atomic.Int64 // family names put through a sort
	expiryChecks   atomic.Int64 // series expiry looked at
	intervalsEnded atomic.Int64 // series EndInterval looked at
}
