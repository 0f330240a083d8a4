package model

import (
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/DataDog/sketches-go/ddsketch"
)

// TimerStats are one interval's statistics of a timer, histogram or
// distribution series, in the unit the client sent, named and defined as
// Etsy statsd's process_metrics does. Count is weighted by the sample rate
// (a value sent with @0.1 counts 10); the other statistics are over the
// values as received, as in Etsy statsd.
type TimerStats struct {
	Count      float64
	N          int // values received
	Sum        float64
	SumSquares float64
	Mean       float64
	Median     float64
	Lower      float64
	Upper      float64
	Std        float64
	// Percentiles holds one entry per configured threshold that applies
	// (Etsy leaves out a threshold that covers no value).
	Percentiles []PercentileStats
	// Exact is false when the interval had more values than kept: then
	// Median and the percentile bounds, sums and means come from a
	// DDSketch with 1% relative error. Count, N, Sum, SumSquares, Mean,
	// Lower, Upper and Std are always exact.
	Exact bool
}

// PercentileStats are Etsy's _N statistics: the values below the Nth
// percentile (or, for a negative threshold, above it).
type PercentileStats struct {
	// Name is the suffix Etsy writes: "90", "99_9", "top10".
	Name       string
	Top        bool // a negative threshold: Bound is a lower bound
	Count      float64
	Mean       float64
	Bound      float64 // upper_N, or lower_topN
	Sum        float64
	SumSquares float64
}

// EachEtsy calls emit with each statistic under the name Etsy statsd gives
// it, in Etsy's order; seconds is the interval length, for count_ps. A nil
// or empty TimerStats gives count and count_ps 0 only, as Etsy writes a
// timer that got no value. The Graphite and InfluxDB sinks both spell
// timers this way, so the names live here once.
func (s *TimerStats) EachEtsy(seconds float64, emit func(name string, v float64)) {
	if s == nil {
		s = &TimerStats{}
	}
	perSecond := 0.0
	if seconds > 0 {
		perSecond = s.Count / seconds
	}
	emit("count", s.Count)
	emit("count_ps", perSecond)
	if s.N == 0 {
		return
	}
	emit("lower", s.Lower)
	emit("upper", s.Upper)
	emit("mean", s.Mean)
	emit("median", s.Median)
	emit("std", s.Std)
	emit("sum", s.Sum)
	emit("sum_squares", s.SumSquares)
	for _, ps := range s.Percentiles {
		bound := "upper_"
		if ps.Top {
			bound = "lower_"
		}
		emit("count_"+ps.Name, ps.Count)
		emit("mean_"+ps.Name, ps.Mean)
		emit(bound+ps.Name, ps.Bound)
		emit("sum_"+ps.Name, ps.Sum)
		emit("sum_squares_"+ps.Name, ps.SumSquares)
	}
}

// PercentileName is the suffix Etsy writes for a threshold.
func PercentileName(pct float64) string {
	s := strconv.FormatFloat(pct, 'f', -1, 64)
	return strings.Replace(strings.Replace(s, ".", "_", 1), "-", "top", 1)
}

// sketchAccuracy is the DDSketch relative accuracy once exact values stop.
const sketchAccuracy = 0.01

// timerValues gathers one interval's values of a series.
type timerValues struct {
	values []float64 // the values, while there are at most exactLimit
	sketch *ddsketch.DDSketch
	n      int
	count  float64
	sum    float64
	sumSq  float64
	min    float64
	max    float64
}

func (t *timerValues) add(v, w float64, exactLimit int) {
	if t.n == 0 || v < t.min {
		t.min = v
	}
	if t.n == 0 || v > t.max {
		t.max = v
	}
	t.n++
	t.count += w
	t.sum += v
	t.sumSq += v * v
	if t.sketch == nil && len(t.values) < exactLimit {
		t.values = append(t.values, v)
		return
	}
	if t.sketch == nil {
		// Bounded memory: 2048 bins hold 1%-accurate values over a range
		// far wider than any timer's.
		t.sketch, _ = ddsketch.LogCollapsingLowestDenseDDSketch(sketchAccuracy, 2048)
	}
	if len(t.values) > 0 {
		for _, x := range t.values {
			t.sketch.Add(x)
		}
		t.values = t.values[:0]
	}
	t.sketch.Add(v)
}

// stats computes the interval's statistics into st (reusing its slice) and
// starts the next interval.
func (t *timerValues) stats(st *TimerStats, percentiles []float64) {
	*st = TimerStats{Count: t.count, N: t.n, Percentiles: st.Percentiles[:0], Exact: t.sketch == nil}
	if t.n == 0 {
		return
	}
	n := float64(t.n)
	st.Sum, st.SumSquares, st.Lower, st.Upper = t.sum, t.sumSq, t.min, t.max
	st.Mean = t.sum / n
	st.Std = math.Sqrt(max(t.sumSq/n-st.Mean*st.Mean, 0))

	var sorted []valueCount
	if t.sketch == nil {
		slices.Sort(t.values)
		// Etsy computes std from the differences, which is exact where
		// the sum-of-squares form loses digits.
		var diffs float64
		for _, v := range t.values {
			diffs += (v - st.Mean) * (v - st.Mean)
		}
		st.Std = math.Sqrt(diffs / n)
		mid := t.n / 2
		if t.n%2 == 1 {
			st.Median = t.values[mid]
		} else {
			st.Median = (t.values[mid-1] + t.values[mid]) / 2
		}
	} else {
		sorted = sketchValues(t.sketch)
		st.Median = valueAtRank(sorted, float64(t.n)/2)
	}
	for _, pct := range percentiles {
		ps := PercentileStats{Name: PercentileName(pct), Top: pct < 0, Count: n, Mean: t.min, Bound: t.max,
			Sum: t.min, SumSquares: t.min * t.min}
		if t.n > 1 {
			in := math.Round(math.Abs(pct) / 100 * n)
			if in == 0 {
				continue
			}
			ps.Count = in
			if t.sketch == nil {
				ps.Bound, ps.Sum, ps.SumSquares = exactRange(t.values, int(in), pct < 0)
			} else {
				ps.Bound, ps.Sum, ps.SumSquares = sketchRange(sorted, in, pct < 0)
			}
			ps.Mean = ps.Sum / in
		}
		st.Percentiles = append(st.Percentiles, ps)
	}
	t.reset()
}

func (t *timerValues) reset() {
	t.values = t.values[:0]
	if t.sketch != nil {
		t.sketch.Clear()
	}
	t.sketch = nil
	t.n, t.count, t.sum, t.sumSq, t.min, t.max = 0, 0, 0, 0, 0, 0
}

// exactRange gives the bound, sum and sum of squares of the lowest in
// values, or for top the highest in.
func exactRange(sorted []float64, in int, top bool) (bound, sum, sumSq float64) {
	part := sorted[:in]
	bound = part[len(part)-1]
	if top {
		part = sorted[len(sorted)-in:]
		bound = part[0]
	}
	for _, v := range part {
		sum += v
		sumSq += v * v
	}
	return bound, sum, sumSq
}

type valueCount struct{ v, c float64 }

func sketchValues(s *ddsketch.DDSketch) []valueCount {
	var out []valueCount
	s.ForEach(func(v, c float64) bool {
		out = append(out, valueCount{v, c})
		return false
	})
	slices.SortFunc(out, func(a, b valueCount) int {
		switch {
		case a.v < b.v:
			return -1
		case a.v > b.v:
			return 1
		}
		return 0
	})
	return out
}

// valueAtRank is the value below which rank of the values lie.
func valueAtRank(sorted []valueCount, rank float64) float64 {
	seen := 0.0
	for _, b := range sorted {
		seen += b.c
		if seen >= rank {
			return b.v
		}
	}
	return sorted[len(sorted)-1].v
}

// sketchRange is exactRange over a sketch's bins: each bin stands for its
// count of values at its representative value.
func sketchRange(sorted []valueCount, in float64, top bool) (bound, sum, sumSq float64) {
	if top {
		sorted = slices.Clone(sorted)
		slices.Reverse(sorted)
	}
	left := in
	for _, b := range sorted {
		take := min(b.c, left)
		sum += take * b.v
		sumSq += take * b.v * b.v
		bound = b.v
		if left -= take; left <= 0 {
			break
		}
	}
	return bound, sum, sumSq
}
