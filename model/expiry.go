package model

import (
	"cmp"
	"iter"
	"runtime/debug"
	"slices"
	"time"
)

// expiryList holds the series of one TTL in the order they last changed,
// as the interval ends found them: those that may have expired are at its
// head. Its nodes are the ending lock's. The series that have no TTL of
// their mapping's are in Model.byDefault, whose TTL is series_ttl as the
// last interval's end found it: a reload may change it.
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
	l.pushBack(n)
}

// pushBack links n at the list's tail, as the latest to change.
func (l *expiryList) pushBack(n *expiryNode) {
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
	defaultTTL := m.settings.Load().opts.SeriesTTL
	m.mu.Lock()
	m.byDefault.ttl = int64(defaultTTL)
	if defaultTTL > 0 && m.untimed > 0 {
		m.timeUntimed()
	}
	before := int(m.nseries.Load())
	var gone []*Series
	for l := range m.expiryLists() {
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

// expiryLists yields the lists whose series may expire. m.mu is held.
func (m *Model) expiryLists() iter.Seq[*expiryList] {
	return func(yield func(*expiryList) bool) {
		if m.byDefault.ttl > 0 && !yield(&m.byDefault) {
			return
		}
		for _, l := range m.expiries {
			if !yield(l) {
				return
			}
		}
	}
}

// timeUntimed gives the series registered while series_ttl was 0 their
// place in byDefault, now that a reload set it: once, by their last
// sample, so that they expire as if series_ttl had always been set. m.mu
// and the ending lock are held.
func (m *Model) timeUntimed() {
	var nodes []*expiryNode
	add := func(fe *familyEntry) {
		if fe.removed {
			return
		}
		for _, s := range fe.series {
			if s.expiry != nil || s.Registered() {
				continue
			}
			s.mu.Lock()
			since := s.lastSeen
			s.mu.Unlock()
			s.expiry = &expiryNode{list: &m.byDefault, series: s, since: since}
			nodes = append(nodes, s.expiry)
		}
	}
	for fe := range m.order.view.all() {
		add(fe)
	}
	for _, fe := range m.order.fresh {
		add(fe)
	}
	m.untimed = 0
	slices.SortFunc(nodes, func(a, b *expiryNode) int { return cmp.Compare(a.since, b.since) })
	// Merged with the list's own, both oldest first.
	l := &m.byDefault
	n := l.head
	l.head, l.tail = nil, nil
	for n != nil || len(nodes) > 0 {
		var next *expiryNode
		if n != nil && (len(nodes) == 0 || n.since <= nodes[0].since) {
			next, n = n, n.newer
		} else {
			next, nodes = nodes[0], nodes[1:]
		}
		l.pushBack(next)
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
