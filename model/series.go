package model

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/statsbridge/statsbridge/ingest"
)

// Series is one labelled series of a family and its state. Its identity
// (family, labels, StatsD key) never changes; its state is guarded by mu, so
// that readers applying samples, a flush taking a snapshot and a scrape
// reading values each see it whole.
type Series struct {
	family  *Family
	labels  Labels
	key     string // the StatsD name it came from, for Graphite
	tags    Labels // the labels that came from tags on the line, for Graphite
	created time.Time

	// read is set for series whose value is kept elsewhere (self-metrics).
	read func() float64

	// removed is set when the series expires: writers holding it must look
	// the name up again.
	removed atomic.Bool

	mu       sync.Mutex
	lastSeen int64 // unix nanoseconds of the last sample
	touched  bool  // a sample arrived since the last flush
	value    float64
	delta    float64 // counter: the change since the last flush
}

// Family returns the series' family.
func (s *Series) Family() *Family { return s.family }

// Labels returns the series' labels. They must not be modified.
func (s *Series) Labels() Labels { return s.labels }

// Key returns the StatsD name the series came from (without its tags).
func (s *Series) Key() string { return s.key }

// Tags returns the labels that the StatsD line carried as tags.
func (s *Series) Tags() Labels { return s.tags }

// Created returns when the series was first seen.
func (s *Series) Created() time.Time { return s.created }

// apply applies one sample. It reports false when the series has expired, so
// the caller must bind the name again.
func (s *Series) apply(smp *ingest.Sample, now int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.removed.Load() {
		return false
	}
	v := smp.Values[0]
	switch s.family.Type {
	case Counter:
		v /= smp.Rate
		s.value += v
		s.delta += v
	case Gauge:
		if smp.Relative {
			s.value += v
		} else {
			s.value = v
		}
	}
	s.touched = true
	s.lastSeen = now
	return true
}

// Point is a series' state at one moment: the end of a flush interval, or a
// scrape.
type Point struct {
	Series *Series
	// Touched says a sample arrived during the interval.
	Touched bool
	// Value is a counter's total since Created, or a gauge's value.
	Value float64
	// Delta is a counter's change during the interval.
	Delta float64
}

// snapshot fills p. With endInterval, the interval's state starts over, so a
// concurrent update lands either in this snapshot or in the next, never in
// both or neither.
func (s *Series) snapshot(p *Point, endInterval bool) {
	s.mu.Lock()
	if s.read != nil {
		v := s.read()
		if s.family.Type == Counter {
			s.delta += v - s.value
		}
		s.touched = s.touched || v != s.value
		s.value = v
	}
	*p = Point{Series: s, Touched: s.touched, Value: s.value, Delta: s.delta}
	if endInterval {
		s.touched = false
		s.delta = 0
	}
	s.mu.Unlock()
}

// idleSince reports whether no sample arrived after t (unix nanoseconds).
func (s *Series) idleSince(t int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.read == nil && s.lastSeen < t
}
