package model

import (
	"math"
	"strconv"
)

// Bucket is one histogram bucket: its upper bound and the way the bound is
// spelled in the le label. Prosody spells bounds as Lua's %.14g does
// (le="1", le="0.001"); in Prometheus 2.x le="1" and le="1.0" are two
// different series, so the spelling is kept, not recomputed.
type Bucket struct {
	Bound float64
	LE    string
	float string // FloatLabel(Bound), when NewBucket made it
}

// NewBucket returns the bucket with bound b spelled le, ready to be
// spelled either way without a new string each time.
func NewBucket(b float64, le string) Bucket {
	return Bucket{Bound: b, LE: le, float: FloatLabel(b)}
}

// LEFormat is how le label values (and a summary's quantile) are spelled
// for Prometheus. A text scrape of Prosody keeps them as Prosody wrote them
// in Prometheus 2.x, while Prometheus 3 (and 2.x scraping protobuf)
// rewrites every one in its float form: the same histogram is two different
// sets of series, and dashboards follow the one their Prometheus stored.
type LEFormat uint8

// The le spellings.
const (
	// LEAsSent spells a bound as the client did: le="1", le="0.001".
	LEAsSent LEFormat = iota
	// LEFloat spells it as Prometheus 3 stores it: le="1.0", le="0.001",
	// le="4.194304e+06", quantile="0.5".
	LEFloat
)

// LE is the le label value of a bucket.
func (f LEFormat) LE(b Bucket) string {
	switch {
	case f != LEFloat:
		return b.LE
	case b.float != "":
		return b.float
	}
	return FloatLabel(b.Bound)
}

// Quantile is the quantile label value of a summary's quantile.
func (f LEFormat) Quantile(q float64) string {
	if f == LEFloat {
		return FloatLabel(q)
	}
	return FormatLE(q)
}

// FloatLabel spells v as Prometheus 3 rewrites a scraped le or quantile
// (model/labels.FormatOpenMetricsFloat): the shortest form that reads back
// exactly, with ".0" added when it has neither "." nor an exponent, and
// +Inf, -Inf, NaN.
func FloatLabel(v float64) string {
	return string(AppendFloatLabel(nil, v))
}

// AppendFloatLabel appends FloatLabel(v) to b.
func AppendFloatLabel(b []byte, v float64) []byte {
	switch {
	case math.IsInf(v, 1):
		return append(b, "+Inf"...)
	case math.IsInf(v, -1):
		return append(b, "-Inf"...)
	case math.IsNaN(v):
		return append(b, "NaN"...)
	}
	start := len(b)
	b = strconv.AppendFloat(b, v, 'g', -1, 64)
	for _, c := range b[start:] {
		if c == '.' || c == 'e' {
			return b
		}
	}
	return append(b, ".0"...)
}

// DefaultBuckets is the layout of a StatsD timer, histogram or distribution
// when nothing else is configured: Prometheus' client default, in seconds.
var DefaultBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// BucketsFor makes a bucket layout from upper bounds, adding +Inf.
func BucketsFor(bounds []float64) []Bucket {
	bs := make([]Bucket, 0, len(bounds)+1)
	for _, b := range bounds {
		if !math.IsInf(b, 1) {
			bs = append(bs, NewBucket(b, FormatLE(b)))
		}
	}
	return append(bs, NewBucket(math.Inf(1), "+Inf"))
}

// FormatLE spells a bucket bound the shortest way that reads back exactly.
func FormatLE(b float64) string {
	if math.IsInf(b, 1) {
		return "+Inf"
	}
	return strconv.FormatFloat(b, 'g', -1, 64)
}

// histogram is the state of a histogram series. Bucket counts are kept
// cumulative (each counts the observations at or below its bound), as they
// are exposed and as Prosody sends them.
type histogram struct {
	buckets []float64 // one per family bucket, +Inf last
	count   float64
	sum     float64

	// the interval's changes
	dBuckets []float64
	dCount   float64
	dSum     float64

	// lastSum is the last running total Prosody sent as .sum; sumSeen
	// says one arrived.
	lastSum float64
	sumSeen bool

	// layout is set for a histogram that arrives in parts: the buckets
	// are its bounds', in its order.
	layout *wireLayout
	// native is set for a histogram that also keeps native buckets.
	native *nativeHistogram
}

func newHistogram(n int) *histogram {
	counts := make([]float64, 2*n)
	return &histogram{buckets: counts[:n:n], dBuckets: counts[n:]}
}

// newPartsHistogram is the state of a histogram that arrives in parts,
// with the layouts its sender may have.
func newPartsHistogram(g *Guesses) *histogram {
	l := newWireLayout(g)
	h := newHistogram(len(l.bounds))
	h.layout = l
	return h
}

// bucketIndex returns the index of a bucket line's bound, learning the
// bound when it is new. It reports false when the series knows too many.
func (h *histogram) bucketIndex(b Bucket) (int, bool) {
	i, ok := h.layout.index(b)
	if n := len(h.layout.bounds); ok && n > len(h.buckets) {
		counts := make([]float64, 2*n)
		copy(counts, h.buckets)
		copy(counts[n:], h.dBuckets)
		h.buckets, h.dBuckets = counts[:n:n], counts[n:]
	}
	return i, ok
}

// observe records one value with a weight (1/sample rate). It returns
// how many times the native buckets halved their resolution.
func (h *histogram) observe(bounds []Bucket, v, w float64) int {
	for i := len(bounds) - 1; i >= 0 && v <= bounds[i].Bound; i-- {
		h.buckets[i] += w
		h.dBuckets[i] += w
	}
	h.count += w
	h.dCount += w
	h.sum += v * w
	h.dSum += v * w
	if h.native != nil {
		return h.native.observe(v, w)
	}
	return 0
}

// addBucket adds a Prosody bucket delta: Prosody's buckets are already
// cumulative, so it is added to that bucket alone. Like the other parts, it
// changes nothing and reports false when the result would not be finite.
func (h *histogram) addBucket(i int, d float64) bool {
	total, delta := h.buckets[i]+d, h.dBuckets[i]+d
	if !finite(total) || !finite(delta) {
		return false
	}
	h.buckets[i], h.dBuckets[i] = total, delta
	if h.layout != nil {
		h.layout.saw(i)
	}
	return true
}

func (h *histogram) addCount(d float64) bool {
	total, delta := h.count+d, h.dCount+d
	if !finite(total) || !finite(delta) {
		return false
	}
	h.count, h.dCount = total, delta
	if h.layout != nil {
		h.layout.counted()
	}
	return true
}

// setRunningSum takes Prosody's .sum, the running total since Prosody
// started. The series' sum is that total, as Prosody's own exposition shows
// it; the interval's sum is its change since the last total, and a total
// that falls (Prosody restarted) counts from zero, as does the first total
// statsbridge sees. That first one is right when Prosody started after
// statsbridge, as it does at every Prosody restart; when statsbridge is the
// one that restarted, the interval that holds the restart counts Prosody's
// whole total, and the intervals after it are right again.
func (h *histogram) setRunningSum(total float64) bool {
	delta := h.dSum + total
	if h.sumSeen && total >= h.lastSum {
		delta = h.dSum + (total - h.lastSum)
	}
	if !finite(total) || !finite(delta) {
		return false
	}
	h.dSum = delta
	h.sum, h.lastSum, h.sumSeen = total, total, true
	return true
}

// addSum adds a Prosody summary's .sum delta.
func (h *histogram) addSum(d float64) bool {
	total, delta := h.sum+d, h.dSum+d
	if !finite(total) || !finite(delta) {
		return false
	}
	h.sum, h.dSum = total, delta
	return true
}

// HistogramPoint is a histogram series at the end of an interval or at a
// scrape.
type HistogramPoint struct {
	// Layout is the series' bucket layout, +Inf last: its family's, or
	// for a histogram that arrives in parts, its sender's as far as the
	// wire shows it.
	Layout []Bucket
	// Buckets are cumulative counts, one per bucket of Layout.
	Buckets []float64
	Count   float64
	Sum     float64
	// DeltaBuckets, DeltaCount and DeltaSum are the interval's changes.
	DeltaBuckets []float64
	DeltaCount   float64
	DeltaSum     float64
	// Native is the series' native histogram, when its family keeps one.
	Native *NativePoint
}

// snapshot copies the state into p, with slices from the arenas. family
// is the family's layout.
func (h *histogram) snapshot(p *HistogramPoint, family []Bucket, sn *snapshotter, endInterval bool) {
	if h.layout == nil {
		n := len(h.buckets)
		start := len(sn.floats)
		sn.floats = append(sn.floats, h.buckets...)
		sn.floats = append(sn.floats, h.dBuckets...)
		all := sn.floats[start:]
		*p = HistogramPoint{Layout: family, Buckets: all[:n:n], Count: h.count, Sum: h.sum,
			DeltaBuckets: all[n:], DeltaCount: h.dCount, DeltaSum: h.dSum}
	} else {
		sn.shown = h.layout.shown(sn.shown[:0])
		n := len(sn.shown)
		startB, startF := len(sn.bounds), len(sn.floats)
		for _, i := range sn.shown {
			sn.bounds = append(sn.bounds, h.layout.bounds[i])
			sn.floats = append(sn.floats, h.buckets[i])
		}
		for _, i := range sn.shown {
			sn.floats = append(sn.floats, h.dBuckets[i])
		}
		all := sn.floats[startF:]
		*p = HistogramPoint{Layout: sn.bounds[startB:len(sn.bounds):len(sn.bounds)], Buckets: all[:n:n], Count: h.count, Sum: h.sum,
			DeltaBuckets: all[n:], DeltaCount: h.dCount, DeltaSum: h.dSum}
	}
	if h.native != nil {
		p.Native = sn.native.take(h.native, endInterval)
	}
	if endInterval {
		h.endInterval()
	}
}

// endInterval starts the interval's changes over.
func (h *histogram) endInterval() {
	clear(h.dBuckets)
	h.dCount, h.dSum = 0, 0
}
