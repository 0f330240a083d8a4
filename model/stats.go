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
	// Telegraf are the same interval's statistics as Telegraf's statsd
	// input computes them, for the InfluxDB sink's telegraf shape.
	Telegraf TelegrafStats
}

// TelegrafStats are one interval's statistics as Telegraf's statsd input
// (plugins/inputs/statsd, running_stats.go) computes them: a value sent
// with @r stands for int(1/r) copies of itself in every statistic; the mean
// and variance are running sums shifted by the interval's first value; the
// Nth percentile is the sorted copies' value at index int(Count×N/100).
// Past exact_timer_values, Median and Percentiles come from the sketch
// (each value counted once), as Telegraf's come from a random sample past
// its percentile_limit; the rest stays exact. Values near the float range
// can make Sum, Mean or Stddev infinite or NaN where Telegraf's are too:
// its serializer leaves such fields out, and so does the InfluxDB sink.
type TelegrafStats struct {
	Count  int64
	Sum    float64
	Mean   float64
	Median float64
	Stddev float64 // NaN when rounding makes the variance negative, as in Telegraf
	Lower  float64
	Upper  float64
	// Percentiles holds one value per configured threshold, in order.
	Percentiles []float64
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
	// copies holds, beside values, each value's int(1/rate) for
	// TelegrafStats; nil while every value counts once.
	copies []int64
	pairs  []valueCopies // scratch for sorting values with their copies
	sketch *ddsketch.DDSketch
	n      int
	count  float64
	sum    float64
	sumSq  float64
	min    float64
	max    float64
	// Telegraf's running sums (see TelegrafStats).
	tCount     int64
	tFirst     float64
	tSum       float64
	tShifted   float64 // Σ copies·(v - tFirst)
	tShiftedSq float64 // Σ copies·(v - tFirst)²
}

type valueCopies struct {
	v float64
	n int64
}

func (t *timerValues) add(v, w float64, exactLimit int) {
	if t.n == 0 || v < t.min {
		t.min = v
	}
	if t.n == 0 || v > t.max {
		t.max = v
	}
	if t.n == 0 {
		t.tFirst = v
	}
	t.n++
	t.count += w
	t.sum += v
	t.sumSq += v * v
	copies := int64(w) // Telegraf adds a value int(1.0/rate) times
	d := v - t.tFirst
	if copies == 1 {
		// Telegraf's own arithmetic, so that the sums agree bit for bit.
		t.tSum += v
		t.tShifted += d
		t.tShiftedSq += d * d
	} else {
		c := float64(copies)
		t.tSum += c * v
		t.tShifted += c * d
		t.tShiftedSq += c * d * d
	}
	t.tCount += copies
	if t.sketch == nil && len(t.values) < exactLimit {
		if copies != 1 && t.copies == nil {
			t.copies = make([]int64, len(t.values), cap(t.values))
			for i := range t.copies {
				t.copies[i] = 1
			}
		}
		t.values = append(t.values, v)
		if t.copies != nil {
			t.copies = append(t.copies, copies)
		}
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
		t.copies = nil
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

	tg := &st.Telegraf
	*tg = TelegrafStats{Count: t.tCount, Sum: t.tSum, Lower: t.min, Upper: t.max, Percentiles: tg.Percentiles[:0]}
	tn := float64(t.tCount)
	tg.Mean = t.tFirst + t.tShifted/tn
	tg.Stddev = math.Sqrt((t.tShiftedSq - t.tShifted*t.tShifted/tn) / tn)

	var sorted []valueCount
	if t.sketch == nil {
		t.sortValues()
		tg.Median = t.telegrafMedian()
		for _, pct := range percentiles {
			tg.Percentiles = append(tg.Percentiles, t.telegrafAt(telegrafRank(t.tCount, pct)))
		}
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
		tg.Median = st.Median
		for _, pct := range percentiles {
			rank := telegrafRank(int64(t.n), pct)
			tg.Percentiles = append(tg.Percentiles, valueAtRank(sorted, float64(rank+1)))
		}
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

// sortValues sorts the values, and their copies with them.
func (t *timerValues) sortValues() {
	if t.copies == nil {
		slices.Sort(t.values)
		return
	}
	t.pairs = t.pairs[:0]
	for i, v := range t.values {
		t.pairs = append(t.pairs, valueCopies{v, t.copies[i]})
	}
	slices.SortFunc(t.pairs, func(a, b valueCopies) int {
		switch {
		case a.v < b.v:
			return -1
		case a.v > b.v:
			return 1
		}
		return 0
	})
	for i, p := range t.pairs {
		t.values[i], t.copies[i] = p.v, p.n
	}
}

// telegrafRank is the index in the sorted copies of Telegraf's pct-th
// percentile: int(count×pct/100), within the copies.
func telegrafRank(count int64, pct float64) int64 {
	i := float64(count) * min(pct, 100) / float64(100)
	return max(0, min(int64(i), count-1))
}

// telegrafAt is the value at index i of the sorted values' copies.
func (t *timerValues) telegrafAt(i int64) float64 {
	if t.copies == nil {
		return t.values[i]
	}
	for j, n := range t.copies {
		if i < n {
			return t.values[j]
		}
		i -= n
	}
	return t.values[len(t.values)-1]
}

// telegrafMedian is the median of the sorted values' copies.
func (t *timerValues) telegrafMedian() float64 {
	if t.tCount%2 == 1 {
		return t.telegrafAt(t.tCount / 2)
	}
	return (t.telegrafAt(t.tCount/2-1) + t.telegrafAt(t.tCount/2)) / 2
}

func (t *timerValues) reset() {
	t.values = t.values[:0]
	t.copies = nil
	if t.sketch != nil {
		t.sketch.Clear()
	}
	t.sketch = nil
	t.n, t.count, t.sum, t.sumSq, t.min, t.max = 0, 0, 0, 0, 0, 0
	t.tCount, t.tFirst, t.tSum, t.tShifted, t.tShiftedSq = 0, 0, 0, 0, 0
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
