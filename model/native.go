package model

import (
	"math"
	"slices"
)

// NativeOptions shape a histogram's native buckets (Prometheus' native
// histograms: exponential buckets with no bounds to choose, which PromQL
// sums across series exactly). They mean what client_golang's
// HistogramOpts NativeHistogramBucketFactor and
// NativeHistogramMaxBucketNumber mean, and what a statsd_exporter mapping
// file's native_histogram_bucket_factor and native_histogram_max_buckets
// pass on to them.
type NativeOptions struct {
	// BucketFactor bounds the growth from one bucket to the next. Above 1
	// the histogram keeps native buckets beside its classic ones, at the
	// finest resolution whose factor 2^(2^-schema) is at most BucketFactor
	// (1.1 gives schema 3: 8 buckets per power of two).
	BucketFactor float64
	// MaxBuckets caps a series' populated buckets: past it, neighbouring
	// buckets are merged in pairs (the schema goes down by one), as
	// client_golang does with no reset duration and no zero threshold to
	// widen. 0 is DefaultNativeMaxBuckets; more than MaxNativeBuckets is
	// MaxNativeBuckets.
	MaxBuckets uint32
}

// DefaultNativeMaxBuckets is statsd_exporter's default.
const DefaultNativeMaxBuckets = 256

// MaxNativeBuckets bounds MaxBuckets, so that no setting makes one series'
// memory unbounded (client_golang's 0 means no cap at all). At 12 bytes a
// bucket it is 192 KiB: schema 8 across 64 powers of two.
const MaxNativeBuckets = 16384

// On reports whether the options keep native buckets.
func (o NativeOptions) On() bool { return o.BucketFactor > 1 && !math.IsInf(o.BucketFactor, 1) }

// The schemas a native histogram can have, and the zero bucket's
// threshold: client_golang's DefNativeHistogramZeroThreshold, 2^-128, a
// bucket bound at every schema.
const (
	nativeSchemaMax     = 8
	nativeSchemaMin     = -4
	nativeZeroThreshold = 2.938735877055719e-39
)

// NativeSchema is the schema client_golang picks for a bucket factor
// (pickSchema): the largest n in [-4, 8] with 2^(2^-n) <= factor, and 8
// for a factor below 2^(2^-8). It is only meaningful for a factor above 1.
func NativeSchema(factor float64) int32 {
	floor := math.Floor(math.Log2(math.Log2(factor)))
	switch {
	case floor <= -nativeSchemaMax:
		return nativeSchemaMax
	case floor >= -nativeSchemaMin:
		return nativeSchemaMin
	}
	return -int32(floor)
}

// nativeBounds are, for each positive schema, the bucket bounds within one
// power of two as fractions of it (in [0.5, 1)), made as client_golang's
// generator (histogram.go) makes its table: each schema's even bounds are
// the coarser schema's, so a value's bucket at one schema is always the
// merge of its buckets at the finer one. TestNativeBucketBounds holds every
// bound to client_golang's placement of values around it.
var nativeBounds = makeNativeBounds()

func makeNativeBounds() [nativeSchemaMax + 1][]float64 {
	var all [nativeSchemaMax + 1][]float64
	n := 1
	for schema := range all {
		bounds := []float64{0.5}
		factor := math.Exp2(math.Exp2(float64(-schema)))
		for j := 0; j < n-1; j++ {
			if (j+1)%2 == 0 {
				bounds = append(bounds, all[schema-1][j/2+1])
			} else {
				bounds = append(bounds, bounds[j]*factor)
			}
		}
		all[schema] = bounds
		n *= 2
	}
	return all
}

// nativeKey is the index of the bucket that holds |v| at schema: bucket i
// holds (2^((i-1)/2^schema), 2^(i/2^schema)]; index 0 ends at 1.
func nativeKey(v float64, schema int32) int32 {
	inf := math.IsInf(v, 0)
	if inf {
		// client_golang counts ±Inf one bucket past the largest float's.
		v = math.MaxFloat64
	}
	frac, exp := math.Frexp(math.Abs(v))
	var key int
	if schema > 0 {
		bounds := nativeBounds[schema]
		i, _ := slices.BinarySearch(bounds, frac) // sort.SearchFloat64s's index, without its closure
		key = i + (exp-1)*len(bounds)
	} else {
		key = exp
		if frac == 0.5 {
			key--
		}
		offset := (1 << -schema) - 1
		key = (key + offset) >> -schema
	}
	if inf {
		key++
	}
	return int32(key)
}

// nativeHistogram is the native buckets of a histogram series. Counts are
// cumulative since the series was made, and weighted: a value sent with
// @0.25 counts 4, one sent with @0.3 counts 3.33.
type nativeHistogram struct {
	schema     int32
	maxBuckets int
	zero       float64 // observations within ±nativeZeroThreshold
	positive   nativeBuckets
	negative   nativeBuckets
	// fractional is set once a weight was not a whole number: the counts
	// are sent as floats from then on.
	fractional bool
	// collected is set once a flush took the histogram: the first one
	// starts from zero, which remote-write 1.0 can only say with a reset
	// hint.
	collected bool
}

// nativeBuckets are the populated buckets of one sign, by index.
type nativeBuckets struct {
	keys   []int32
	counts []float64
}

func newNativeHistogram(o NativeOptions) *nativeHistogram {
	if !o.On() {
		return nil
	}
	maxBuckets := int(o.MaxBuckets)
	switch {
	case maxBuckets == 0:
		maxBuckets = DefaultNativeMaxBuckets
	case maxBuckets > MaxNativeBuckets:
		maxBuckets = MaxNativeBuckets
	}
	return &nativeHistogram{schema: NativeSchema(o.BucketFactor), maxBuckets: maxBuckets}
}

// observe counts v with weight w. Past the bucket cap the resolution
// halves, as client_golang's limitBuckets does after each observation: a
// weight of n stands for n observations, so for up to n halvings (at
// least one) while the cap is passed. It returns the halvings.
func (n *nativeHistogram) observe(v, w float64) int {
	if w != math.Trunc(w) {
		n.fractional = true
	}
	switch {
	case v > nativeZeroThreshold:
		n.positive.add(nativeKey(v, n.schema), w)
	case v < -nativeZeroThreshold:
		n.negative.add(nativeKey(v, n.schema), w)
	case !math.IsNaN(v):
		n.zero += w
	}
	halvings := 0
	for checks := max(1, math.Floor(w)); checks > 0 && n.overCap() && n.schema > nativeSchemaMin; checks-- {
		n.schema--
		n.positive.halve()
		n.negative.halve()
		halvings++
	}
	return halvings
}

// maxExactInteger is the largest count a float64 holds exactly with every
// integer below it, and so the largest sent as an integer.
const maxExactInteger = 1 << 53

// count is the observations' total weight.
func (n *nativeHistogram) count() float64 {
	c := n.zero
	for _, b := range [2]*nativeBuckets{&n.positive, &n.negative} {
		for _, v := range b.counts {
			c += v
		}
	}
	return c
}

func (n *nativeHistogram) overCap() bool {
	return len(n.positive.keys)+len(n.negative.keys) > n.maxBuckets
}

// add adds w to the bucket of key, making it when new.
func (b *nativeBuckets) add(key int32, w float64) {
	i, found := slices.BinarySearch(b.keys, key)
	if found {
		b.counts[i] += w
		return
	}
	b.keys = slices.Insert(b.keys, i, key)
	b.counts = slices.Insert(b.counts, i, w)
}

// halve merges the buckets in pairs, for the next coarser schema: bucket
// i becomes ceil(i/2), as client_golang's doubleBucketWidth does. That
// keeps the keys in order, so equal ones are neighbours.
func (b *nativeBuckets) halve() {
	out := 0
	for i, key := range b.keys {
		if key > 0 {
			key++
		}
		key /= 2
		if out > 0 && b.keys[out-1] == key {
			b.counts[out-1] += b.counts[i]
			continue
		}
		b.keys[out], b.counts[out] = key, b.counts[i]
		out++
	}
	b.keys, b.counts = b.keys[:out], b.counts[:out]
}

// NativePoint is a series' native histogram at the end of an interval or
// at a scrape. Its count and sum are the HistogramPoint's.
type NativePoint struct {
	Schema        int32
	ZeroThreshold float64
	ZeroCount     float64
	// The spans and counts of each sign are laid out as client_golang
	// lays them out: a gap of one or two empty buckets stays inside a
	// span (as zero counts), a wider one starts a new span. Counts are
	// absolute, one per bucket the spans cover.
	PositiveSpans, NegativeSpans   []NativeSpan
	PositiveCounts, NegativeCounts []float64
	// Integer says every observation's weight was a whole number and the
	// count is at most 2^53, so that every count is an integer a float64
	// holds exactly.
	Integer bool
	// First says this is the first flush of the series since it was made
	// (statsbridge started, or the series came back after it expired):
	// its counts start from zero.
	First bool
}

// NativeSpan is a run of consecutive buckets: Offset is the index of its
// first bucket, from the end of the span before (the first span's from 0).
type NativeSpan struct {
	Offset int32
	Length uint32
}

// nativeArena holds what a flush's NativePoints point to.
type nativeArena struct {
	points []NativePoint
	spans  []NativeSpan
	counts []float64
}

func (a *nativeArena) reset() {
	a.points, a.spans, a.counts = a.points[:0], a.spans[:0], a.counts[:0]
}

// take copies n into a point of the arena. At the end of an interval, the
// series counts as collected.
func (a *nativeArena) take(n *nativeHistogram, endInterval bool) *NativePoint {
	a.points = append(a.points, NativePoint{Schema: n.schema, ZeroThreshold: nativeZeroThreshold, ZeroCount: n.zero,
		Integer: !n.fractional && n.count() <= maxExactInteger, First: !n.collected})
	p := &a.points[len(a.points)-1]
	p.PositiveSpans, p.PositiveCounts = a.layOut(&n.positive)
	p.NegativeSpans, p.NegativeCounts = a.layOut(&n.negative)
	if endInterval {
		n.collected = true
	}
	return p
}

// layOut makes the spans and counts of one sign's buckets, as
// client_golang's makeBuckets does.
func (a *nativeArena) layOut(b *nativeBuckets) ([]NativeSpan, []float64) {
	if len(b.keys) == 0 {
		return nil, nil
	}
	startS, startC := len(a.spans), len(a.counts)
	var next int32
	for i, key := range b.keys {
		gap := key - next
		if i == 0 || gap > 2 {
			a.spans = append(a.spans, NativeSpan{Offset: gap})
		} else {
			for range gap {
				a.counts = append(a.counts, 0)
			}
			a.spans[len(a.spans)-1].Length += uint32(gap)
		}
		a.counts = append(a.counts, b.counts[i])
		a.spans[len(a.spans)-1].Length++
		next = key + 1
	}
	return a.spans[startS:len(a.spans):len(a.spans)], a.counts[startC:len(a.counts):len(a.counts)]
}

// NativeHistograms reports whether any family keeps native histograms: a
// scrape that prefers the protobuf exposition gets it then.
func (m *Model) NativeHistograms() bool {
	view := m.ordered()
	m.mu.RLock()
	defer m.mu.RUnlock()
	for fe := range view.all() {
		if !fe.removed && fe.kind == KindHistogram && fe.shape.native.On() {
			return true
		}
	}
	return false
}

// NativeSchemaReductions returns how many times a series' native
// histogram passed its bucket cap and halved its resolution.
func (m *Model) NativeSchemaReductions() uint64 { return m.nativeReductions.Load() }
