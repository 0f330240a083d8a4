package model

import (
	"math"
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
	kind    Kind
	labels  Labels
	key     string // the StatsD name it came from, for Graphite
	tags    Labels // the labels that came from tags on the line, for Graphite
	created time.Time
	ttl     time.Duration // 0: the model's series_ttl

	// own is set for series whose value is kept elsewhere (self-metrics).
	own *ownSource

	// removed is set when the series expires: writers holding it must look
	// the name up again.
	removed atomic.Bool

	mu       sync.Mutex
	lastSeen int64 // unix nanoseconds of the last sample
	touched  bool  // a sample arrived since the last flush
	value    float64
	delta    float64      // counter: the change since the last flush
	hist     *histogram   // histograms, Prosody's histograms and summaries
	timer    *timerValues // observers: the interval's values, for TimerStats
	summary  *summary
	set      *set
}

// Family returns the series' family.
func (s *Series) Family() *Family { return s.family }

// Kind returns how the series keeps its state.
func (s *Series) Kind() Kind { return s.kind }

// Labels returns the series' labels. They must not be modified.
func (s *Series) Labels() Labels { return s.labels }

// Key returns the StatsD name the series came from (without its tags).
func (s *Series) Key() string { return s.key }

// Tags returns the labels that the StatsD line carried as tags.
func (s *Series) Tags() Labels { return s.tags }

// Created returns when the series was first seen.
func (s *Series) Created() time.Time { return s.created }

// Registered reports whether the series is one of statsbridge's own, added
// with Register rather than received as StatsD.
func (s *Series) Registered() bool { return s.own != nil }

// newSeries makes a series. guesses are a KindPrebucketed histogram's
// likely layouts; nil guesses the family's.
func newSeries(f *Family, k Kind, labels Labels, key string, tags Labels, ttl time.Duration, now int64, guesses *Guesses) *Series {
	s := &Series{family: f, kind: k, labels: labels, key: key, tags: tags, ttl: ttl,
		created: time.Unix(0, now), lastSeen: now}
	switch k {
	case KindPrebucketed:
		if guesses == nil {
			guesses = NewGuesses(f.Buckets)
		}
		s.hist = newPartsHistogram(guesses)
	case KindHistogram:
		s.hist = newHistogram(len(f.Buckets))
		s.hist.native = newNativeHistogram(f.Native)
	case KindPresummed:
		s.hist = newHistogram(0)
	case KindSummary:
		s.summary = newSummary(f.Summary, now)
	case KindSet:
		s.set = &set{}
	}
	if k.Observes() {
		s.timer = &timerValues{}
	}
	return s
}

// bucketIndex returns the index of a bucket line's bound in a
// KindPrebucketed series' layout, learning the bound when it is new. It
// reports false when the series knows too many bounds.
func (s *Series) bucketIndex(b Bucket) (int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hist.bucketIndex(b)
}

// ownSource reads a self-metric: a value, or a summary.
type ownSource struct {
	value   func() float64
	summary func(*SummaryPoint)
}

// binding is what the model's name cache holds for a raw StatsD key bound
// to a series: the series and how the line's values apply to it.
type binding struct {
	series *Series
	hi     uint64 // the key's second hash (see cacheShard)
	scale  float64
	// generation is the mapper set the binding was made with: a reload
	// makes every older binding a miss.
	generation uint32
	part       Part
	// toSeconds divides a timer's values by 1000 for the histogram; the
	// interval statistics keep the client's milliseconds.
	toSeconds bool
}

// refusal is what the name cache holds for a refused raw StatsD key, so that
// a name refused again and again (past a cap, in conflict, dropped by a
// mapping) neither maps anew nor takes the registry lock for every line:
// reason says why, or conflict that the name's type conflicts with its
// family's. It is remembered until until.
type refusal struct {
	until      int64
	generation uint32
	reason     DropReason
	conflict   bool
}

func (r refusal) String() string {
	if r.conflict {
		return "conflict"
	}
	return r.reason.String()
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
// it.
func (s *Series) apply(b *binding, smp *ingest.Sample, now int64, lim *limits) applyResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.removed.Load() {
		return expired
	}
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
		s.set.add(smp.Member, lim.exactSetMembers)
	case KindHistogram, KindSummary:
		w := smp.Weight()
		if !s.canObserve(b, smp.Values, w) {
			return nonFinite
		}
		for _, raw := range smp.Values {
			v := b.observed(raw)
			if s.hist != nil {
				s.hist.observe(s.family.Buckets, v, w)
			} else {
				s.summary.observe(v, w, now)
			}
			s.timer.add(raw, w, lim.exactTimerValues)
		}
	case KindPrebucketed, KindPresummed:
		if !s.applyPart(b.part, smp) {
			return nonFinite
		}
	}
	s.touched = true
	s.lastSeen = now
	return applied
}

// observed is a raw value as its series observes it.
func (b *binding) observed(raw float64) float64 {
	v := scaled(raw, b.scale)
	if b.toSeconds {
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
func (s *Series) canObserve(b *binding, values []float64, w float64) bool {
	var count, sum, deltaSum float64
	if s.hist != nil {
		count, sum, deltaSum = s.hist.count, s.hist.sum, s.hist.dSum
	} else {
		count, sum = s.summary.count, s.summary.sum
	}
	t := s.timer
	timerCount, timerSum, timerSumSq := t.count, t.sum, t.sumSq
	for _, raw := range values {
		v := b.observed(raw)
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
	switch {
	case p == PartCount:
		return s.hist.addCount(v)
	case p == PartSum && s.kind == KindPrebucketed:
		return s.hist.setRunningSum(smp.Values[0])
	case p == PartSum:
		return s.hist.addSum(v)
	case p >= 0 && int(p) < len(s.hist.buckets):
		return s.hist.addBucket(int(p), v)
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
	// A self-metric's value is read before the lock: reading it may take
	// other locks (the model's), and the order is always model, then series.
	if s.own != nil && s.own.summary != nil {
		sn.takeOwnSummary(s, p, endInterval)
		return
	}
	var read float64
	if s.own != nil {
		read = s.own.value()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.own != nil {
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
			p.Value = s.set.endInterval()
		} else {
			p.Value = s.set.last
		}
	case KindHistogram, KindPrebucketed:
		sn.histograms = append(sn.histograms, HistogramPoint{})
		p.Histogram = &sn.histograms[len(sn.histograms)-1]
		s.hist.snapshot(p.Histogram, s.family.Buckets, sn, endInterval)
	case KindPresummed:
		var h HistogramPoint
		s.hist.snapshot(&h, nil, sn, endInterval)
		sn.summaries = append(sn.summaries, SummaryPoint{Count: h.Count, Sum: h.Sum, DeltaCount: h.DeltaCount, DeltaSum: h.DeltaSum})
		p.Summary = &sn.summaries[len(sn.summaries)-1]
	case KindSummary:
		sn.summaries = append(sn.summaries, SummaryPoint{})
		p.Summary = &sn.summaries[len(sn.summaries)-1]
		s.summary.snapshot(p.Summary, s.family.Summary.Quantiles, &sn.floats, sn.now)
	}
	if endInterval {
		if s.timer != nil {
			sn.stats = append(sn.stats, TimerStats{})
			p.Stats = &sn.stats[len(sn.stats)-1]
			s.timer.stats(p.Stats, sn.percentiles)
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
	s.own.summary(&sp)
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

// expireIfIdle removes the series when no sample arrived after t (unix
// nanoseconds). The check and the mark happen under the series' lock, so a
// sample is either applied before (and the series stays) or finds it
// removed (and its writer binds the name again).
func (s *Series) expireIfIdle(t int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.own != nil || s.lastSeen >= t {
		return false
	}
	s.removed.Store(true)
	return true
}
