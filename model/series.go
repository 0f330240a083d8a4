package model

import (
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/statsbridge/statsbridge/ingest"
)

// Series is one labelled series of a family and its state. Its identity
// (family, labels, StatsD key) never changes; its state is guarded by mu, so
// that readers applying samples, a flush taking a snapshot and a scrape
// reading values each see it whole.
//
// A million of them must fit in a few hundred megabytes, so a counter or a
// gauge keeps its state here and nothing else: whatever other kinds keep
// (buckets, a timer's values, a set's members), and what few series have
// (tags that differ from their labels, a self-metric's reader), lives
// behind a pointer that is nil for them.
type Series struct {
	family *familyEntry
	labels Labels
	key    string // the StatsD name it came from, for Graphite
	extra  *seriesExtra
	// expiry is the series' place among those of its TTL, oldest first;
	// nil for a series that never expires.
	expiry *expiryNode
	// bindKey is the name cache key the series was registered under, so
	// that its expiry can drop that binding without searching the cache.
	bindKey uint64
	created int64 // unix nanoseconds

	// removed is set when the series expires: writers holding it must look
	// the name up again.
	removed atomic.Bool
	pos     uint32 // its index in its family's series; the registry's lock guards it
	kind    Kind
	// tagsAreLabels says the tags on the line became the labels as they
	// are, as without a mapping: Tags returns the labels.
	tagsAreLabels bool

	mu sync.Mutex
	// listed says the series waits in a list of series to look at when
	// the interval ends (see Model.markChanged).
	listed   bool
	touched  bool  // a sample arrived since the last flush
	lastSeen int64 // unix nanoseconds of the last sample
	value    float64
	delta    float64 // counter: the change since the last flush
}

// seriesExtra is the state of the kinds beyond counter and gauge, and what
// only some series have. A kind with state of its own adds it here.
type seriesExtra struct {
	tags    Labels       // the labels that came from tags on the line, for Graphite
	own     *ownSource   // for series whose value is kept elsewhere (self-metrics)
	hist    *histogram   // histograms, Prosody's histograms and summaries
	timer   *timerValues // observers: the interval's values, for TimerStats
	summary *summary
	set     *set
}

// ownSource reads a self-metric: a value, or a summary.
type ownSource struct {
	value   func() float64
	summary func(*SummaryPoint)
}

// Family returns the series' family. Families never change once
// registered; the Family is a copy, put together from what families share.
func (s *Series) Family() Family { return s.family.Family() }

// Kind returns how the series keeps its state.
func (s *Series) Kind() Kind { return s.kind }

// Labels returns the series' labels. They must not be modified.
func (s *Series) Labels() Labels { return s.labels }

// Key returns the StatsD name the series came from (without its tags).
func (s *Series) Key() string { return s.key }

// Tags returns the labels that the StatsD line carried as tags.
func (s *Series) Tags() Labels {
	switch {
	case s.tagsAreLabels:
		return s.labels
	case s.extra != nil:
		return s.extra.tags
	}
	return nil
}

// Created returns when the series was first seen.
func (s *Series) Created() time.Time { return time.Unix(0, s.created) }

// Registered reports whether the series is one of statsbridge's own, added
// with Register rather than received as StatsD.
func (s *Series) Registered() bool { return s.extra != nil && s.extra.own != nil }

// newSeries makes a series of fe. tags are the line's tags as labels;
// guesses are a KindPrebucketed histogram's likely layouts (nil guesses
// the family's).
func newSeries(fe *familyEntry, k Kind, labels Labels, key string, tags Labels, now int64, guesses *Guesses) *Series {
	s := &Series{family: fe, kind: k, labels: labels, key: key, created: now, lastSeen: now}
	var x seriesExtra
	switch k {
	case KindPrebucketed:
		if guesses == nil {
			guesses = NewGuesses(fe.shape.buckets)
		}
		x.hist = newPartsHistogram(guesses)
	case KindHistogram:
		x.hist = newHistogram(len(fe.shape.buckets))
		x.hist.native = newNativeHistogram(fe.shape.native)
	case KindPresummed:
		x.hist = newHistogram(0)
	case KindSummary:
		x.summary = newSummary(fe.shape.summary, now)
	case KindSet:
		x.set = &set{}
	}
	if k.Observes() {
		x.timer = &timerValues{}
	}
	if slices.Equal(tags, labels) {
		s.tagsAreLabels = true
	} else {
		x.tags = tags
	}
	if x.tags != nil || x.hist != nil || x.timer != nil || x.summary != nil || x.set != nil {
		s.extra = &x
	}
	return s
}

// bucketIndex returns the index of a bucket line's bound in a
// KindPrebucketed series' layout, learning the bound when it is new. It
// reports false when the series knows too many bounds.
func (s *Series) bucketIndex(b Bucket) (int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.extra.hist.bucketIndex(b)
}

// applyResult is what became of a sample applied to a series.
type applyResult uint8

const (
	applied applyResult = iota
	// expired: the series has expired; the name must be bound again.
	expired
	// nonFinite: the sample would have made the state infinite or NaN,
	// so it was not applied.
	nonFinite
)

// apply applies one sample, unless it would make the state non-finite: a
// counter's total or delta, a relative gauge, a histogram's or summary's
// count and sum, a timer's statistics. A gauge set to ±Inf or NaN keeps it:
// that is what the client measured, and the sinks that cannot store it skip
// it. It reports whether the series must now be listed among those the
// interval's end looks at (see Model.markChanged).
func (s *Series) apply(b *binding, smp *ingest.Sample, now int64, lim *limits) (applyResult, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.removed.Load() {
		return expired, false
	}
	if r := s.applyValues(b, smp, now, lim); r != applied {
		return r, false
	}
	s.touched = true
	s.lastSeen = now
	list := !s.listed
	s.listed = true
	return applied, list
}

func (s *Series) applyValues(b *binding, smp *ingest.Sample, now int64, lim *limits) applyResult {
	x := s.extra
	switch s.kind {
	case KindCounter:
		// Etsy statsd adds value * (1/rate), which is not always value/rate
		// to the last bit; Graphite users compare the two.
		v := scaled(smp.Values[0], b.scale) * (1 / smp.Rate)
		value, delta := s.value+v, s.delta+v
		if !finite(value) || !finite(delta) {
			return nonFinite
		}
		s.value, s.delta = value, delta
	case KindGauge:
		v := scaled(smp.Values[0], b.scale)
		if smp.Relative {
			v += s.value
			if !finite(v) {
				return nonFinite
			}
		}
		s.value = v
	case KindSet:
		x.set.add(smp.Member, lim.exactSetMembers)
	case KindHistogram, KindSummary:
		w := smp.Weight()
		if !s.canObserve(b, smp, w) {
			return nonFinite
		}
		for _, raw := range smp.Values {
			v := b.observed(raw, smp)
			if x.hist != nil {
				if halvings := x.hist.observe(s.family.shape.buckets, v, w); halvings > 0 {
					lim.nativeReductions.Add(uint64(halvings))
				}
			} else {
				x.summary.observe(v, w, now)
			}
			x.timer.add(raw, w, lim.exactTimerValues)
		}
	case KindPrebucketed, KindPresummed:
		if !s.applyPart(b.part, smp) {
			return nonFinite
		}
	}
	return applied
}

// observed is a raw value of a sample as its series observes it: a timer's
// milliseconds become seconds for the histogram or summary (the interval
// statistics keep the client's milliseconds).
func (b *binding) observed(raw float64, smp *ingest.Sample) float64 {
	v := scaled(raw, b.scale)
	if smp.Type == ingest.Timer {
		v /= 1000
	}
	return v
}

// maxTimerSum bounds a timer's sum and sum of squares: Etsy's standard
// deviation and the sketches' percentile sums (1% error) are computed from
// the same values with larger intermediate terms, and need the room.
const maxTimerSum = math.MaxFloat64 / 4

// canObserve reports whether observing values with weight w keeps the
// state finite. It runs the sums as observing does, in the same order, so
// its answer is exact. A bucket counts a part of what the count counts,
// so a finite count keeps the buckets finite.
func (s *Series) canObserve(b *binding, smp *ingest.Sample, w float64) bool {
	x := s.extra
	var count, sum, deltaSum float64
	if x.hist != nil {
		count, sum, deltaSum = x.hist.count, x.hist.sum, x.hist.dSum
	} else {
		count, sum = x.summary.count, x.summary.sum
	}
	t := x.timer
	timerCount, timerSum, timerSumSq := t.count, t.sum, t.sumSq
	for _, raw := range smp.Values {
		v := b.observed(raw, smp)
		count += w
		sum += v * w
		deltaSum += v * w
		timerCount += w
		timerSum += raw
		timerSumSq += raw * raw
	}
	return finite(count) && finite(sum) && finite(deltaSum) && finite(timerCount) &&
		math.Abs(timerSum) <= maxTimerSum && timerSumSq <= maxTimerSum
}

func finite(v float64) bool { return !math.IsInf(v, 0) && !math.IsNaN(v) }

// applyPart applies one of Prosody's histogram or summary lines. Bucket and
// count lines are counter deltas; a histogram's sum is a gauge holding the
// running total, a summary's sum a counter delta. It reports false, and
// changes nothing, when the line would make the state non-finite.
func (s *Series) applyPart(p Part, smp *ingest.Sample) bool {
	v := smp.Values[0] / smp.Rate
	h := s.extra.hist
	switch {
	case p == PartCount:
		return h.addCount(v)
	case p == PartSum && s.kind == KindPrebucketed:
		return h.setRunningSum(smp.Values[0])
	case p == PartSum:
		return h.addSum(v)
	case p >= 0 && int(p) < len(h.buckets):
		return h.addBucket(int(p), v)
	}
	return true
}

// Point is a series' state at one moment: the end of a flush interval, or a
// scrape.
type Point struct {
	Series *Series
	// Touched says a sample arrived during the interval.
	Touched bool
	// Value is a counter's total since Created, a gauge's value, or a set's
	// distinct members in the last completed interval.
	Value float64
	// Delta is a counter's change during the interval.
	Delta float64
	// Histogram is set for histograms (KindHistogram, KindPrebucketed).
	Histogram *HistogramPoint
	// Summary is set for summaries (KindSummary, KindPresummed; the
	// latter have no quantiles).
	Summary *SummaryPoint
	// Stats is set, at the end of an interval, for series that take
	// observations: the interval's StatsD statistics.
	Stats *TimerStats
}

// snapshotter turns series into points, keeping what the points point to in
// arenas that live as long as the points.
type snapshotter struct {
	floats      []float64
	bounds      []Bucket // the layouts of histograms that arrive in parts
	shown       []int    // scratch: the bounds a layout shows
	histograms  []HistogramPoint
	summaries   []SummaryPoint
	stats       []TimerStats
	percentiles []float64
	native      nativeArena
	now         int64
}

func (sn *snapshotter) reset() {
	sn.floats, sn.histograms, sn.summaries, sn.stats = sn.floats[:0], sn.histograms[:0], sn.summaries[:0], sn.stats[:0]
	sn.bounds = sn.bounds[:0]
	sn.native.reset()
}

// take fills p. With endInterval, the interval's state starts over, so a
// concurrent update lands either in this snapshot or in the next, never in
// both or neither.
func (sn *snapshotter) take(s *Series, p *Point, endInterval bool) {
	x := s.extra
	// A self-metric's value is read before the lock: reading it may take
	// other locks (the model's), and the order is always model, then series.
	own := x != nil && x.own != nil
	if own && x.own.summary != nil {
		sn.takeOwnSummary(s, p, endInterval)
		return
	}
	var read float64
	if own {
		read = x.own.value()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if own {
		if s.kind == KindCounter {
			s.delta += read - s.value
		}
		s.touched = s.touched || read != s.value
		s.value = read
	}
	*p = Point{Series: s, Touched: s.touched, Value: s.value, Delta: s.delta}
	switch s.kind {
	case KindSet:
		if endInterval {
			p.Value = x.set.endInterval()
		} else {
			p.Value = x.set.last
		}
	case KindHistogram, KindPrebucketed:
		sn.histograms = append(sn.histograms, HistogramPoint{})
		p.Histogram = &sn.histograms[len(sn.histograms)-1]
		x.hist.snapshot(p.Histogram, s.family.shape.buckets, sn, endInterval)
	case KindPresummed:
		var h HistogramPoint
		x.hist.snapshot(&h, nil, sn, endInterval)
		sn.summaries = append(sn.summaries, SummaryPoint{Count: h.Count, Sum: h.Sum, DeltaCount: h.DeltaCount, DeltaSum: h.DeltaSum})
		p.Summary = &sn.summaries[len(sn.summaries)-1]
	case KindSummary:
		sn.summaries = append(sn.summaries, SummaryPoint{})
		p.Summary = &sn.summaries[len(sn.summaries)-1]
		x.summary.snapshot(p.Summary, s.family.shape.summary.Quantiles, &sn.floats, sn.now)
	}
	if endInterval {
		if x != nil && x.timer != nil {
			sn.stats = append(sn.stats, TimerStats{})
			p.Stats = &sn.stats[len(sn.stats)-1]
			x.timer.stats(p.Stats, sn.percentiles)
		}
		s.touched = false
		s.delta = 0
	}
}

// takeOwnSummary fills p from a self-metric summary. Its count and sum
// since the last flush are the change from the last flush's, which the
// series keeps as its value (count) and delta (sum).
func (sn *snapshotter) takeOwnSummary(s *Series, p *Point, endInterval bool) {
	var sp SummaryPoint
	s.extra.own.summary(&sp)
	start := len(sn.floats)
	sn.floats = append(sn.floats, sp.Quantiles...)
	sp.Quantiles = sn.floats[start:len(sn.floats):len(sn.floats)]
	s.mu.Lock()
	defer s.mu.Unlock()
	sp.DeltaCount, sp.DeltaSum = sp.Count-s.value, sp.Sum-s.delta
	sn.summaries = append(sn.summaries, sp)
	*p = Point{Series: s, Touched: sp.DeltaCount != 0, Summary: &sn.summaries[len(sn.summaries)-1]}
	if endInterval {
		s.value, s.delta = sp.Count, sp.Sum
	}
}

// endInterval starts the series' next interval without a snapshot: what a
// flush with no push sink does to the series that changed. It reports
// whether the series must be looked at again when the next interval ends
// (a set that counted members must then count none), and when its last
// sample came.
func (s *Series) endInterval() (again bool, lastSeen int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if x := s.extra; x != nil {
		switch {
		case x.set != nil:
			again = x.set.endInterval() != 0
		case x.hist != nil:
			x.hist.endInterval()
		}
		if x.timer != nil {
			x.timer.reset()
		}
	}
	s.touched = false
	s.delta = 0
	s.listed = again
	return again, s.lastSeen
}

// unlist marks the series as out of the lists of changed series, and
// returns when its last sample came.
func (s *Series) unlist() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.listed = false
	return s.lastSeen
}

// expireIfIdle removes the series when no sample arrived after t (unix
// nanoseconds). The check and the mark happen under the series' lock, so a
// sample is either applied before (and the series stays) or finds it
// removed (and its writer binds the name again).
func (s *Series) expireIfIdle(t int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lastSeen >= t {
		return false
	}
	s.removed.Store(true)
	return true
}
