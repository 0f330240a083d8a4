package model

import (
	"fmt"
	"math"
	"reflect"
	"testing"
)

// telegrafReference computes what Telegraf's statsd input (v1.37,
// plugins/inputs/statsd/running_stats.go) writes for one interval's values,
// the way it does: a value sent with @r is added int(1/r) times, the mean
// and variance are running sums shifted by the first value, and the Nth
// percentile is the sorted copies' value at index int(count×N/100).
func telegrafReference(values, rates, percentiles []float64) TelegrafStats {
	var copies []float64
	var k, ex, ex2, sum float64
	for i, v := range values {
		n := 1
		if rates[i] != 1 {
			n = int(1.0 / rates[i])
		}
		for range n {
			if len(copies) == 0 {
				k = v
			}
			copies = append(copies, v)
			ex += v - k
			ex2 += (v - k) * (v - k)
			sum += v
		}
	}
	sorted := append([]float64(nil), copies...)
	for i := range sorted { // insertion sort: the reference shares no code
		for j := i; j > 0 && sorted[j] < sorted[j-1]; j-- {
			sorted[j], sorted[j-1] = sorted[j-1], sorted[j]
		}
	}
	n := len(sorted)
	st := TelegrafStats{Count: int64(n), Sum: sum, Mean: k + ex/float64(n),
		Stddev: math.Sqrt((ex2 - ex*ex/float64(n)) / float64(n)), Lower: sorted[0], Upper: sorted[n-1]}
	if n%2 == 0 {
		st.Median = (sorted[n/2-1] + sorted[n/2]) / 2
	} else {
		st.Median = sorted[n/2]
	}
	for _, p := range percentiles {
		i := float64(n) * min(p, 100) / float64(100)
		st.Percentiles = append(st.Percentiles, sorted[max(0, min(int(i), n-1))])
	}
	return st
}

func TestTimerStatsAreTelegrafs(t *testing.T) {
	pcts := []float64{90, 50, 99.9, 1, 100, -10}
	tests := []struct {
		name  string
		lines []string
		want  TelegrafStats
	}{
		{
			name:  "one to ten: the 90th percentile is the value at index 9, not Etsy's 9",
			lines: []string{"t:3:1:2:4:5|ms", "t:6:7:8:10:9|ms"},
			want: TelegrafStats{Count: 10, Sum: 55, Mean: 5.5, Median: 5.5, Stddev: math.Sqrt(8.25), Lower: 1, Upper: 10,
				Percentiles: []float64{10, 6, 10, 1, 10, 1}},
		},
		{
			name:  "a value sent at @0.5 counts twice in every statistic",
			lines: []string{"t:7|ms|@0.5", "t:1|ms"},
			want: TelegrafStats{Count: 3, Sum: 15, Mean: 5, Median: 7, Stddev: math.Sqrt(8), Lower: 1, Upper: 7,
				Percentiles: []float64{7, 7, 7, 1, 7, 1}},
		},
		{
			name:  "@0.3 counts int(1/0.3) = 3 times",
			lines: []string{"t:2|ms|@0.3", "t:10|ms"},
			want: TelegrafStats{Count: 4, Sum: 16, Mean: 4, Median: 2, Stddev: math.Sqrt(12), Lower: 2, Upper: 10,
				Percentiles: []float64{10, 2, 10, 2, 10, 2}},
		},
		{
			name:  "histograms and distributions too",
			lines: []string{"t:0.5:1.5|h|@0.25"},
			want: TelegrafStats{Count: 8, Sum: 8, Mean: 1, Median: 1, Stddev: 0.5, Lower: 0.5, Upper: 1.5,
				Percentiles: []float64{1.5, 1.5, 1.5, 0.5, 1.5, 0.5}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := New(Options{MaxSeries: 10, MaxSeriesPerFamily: 10, Percentiles: pcts})
			feed(t, m, tt.lines...)
			for _, p := range collect(m) {
				if got := p.Stats.Telegraf; !reflect.DeepEqual(got, tt.want) {
					t.Errorf("got  %+v\nwant %+v", got, tt.want)
				}
			}
		})
	}
}

// TestTelegrafStatsMatchTelegrafsArithmetic holds the statistics to the
// reference bit for bit, over values whose sums round.
func TestTelegrafStatsMatchTelegrafsArithmetic(t *testing.T) {
	pcts := []float64{90, 50, 99, 99.9}
	var lines []string
	var values, rates []float64
	for i := range 200 {
		v := 0.1 + float64(i*i%97)*1.37
		rate := 1.0
		if i%7 == 0 {
			rate = 0.1
		}
		values, rates = append(values, v), append(rates, rate)
		lines = append(lines, fmt.Sprintf("t:%v|ms|@%v", v, rate))
	}
	m := New(Options{MaxSeries: 10, MaxSeriesPerFamily: 10, Percentiles: pcts})
	feed(t, m, lines...)
	got := collect(m)["t_seconds"].Stats.Telegraf
	want := telegrafReference(values, rates, pcts)
	// The copies of a sampled value are added as one product, not one by
	// one: the sums may differ in their last bits.
	close := func(a, b float64) bool { return math.Abs(a-b) <= 1e-12*math.Abs(b) }
	if got.Count != want.Count || !close(got.Sum, want.Sum) || !close(got.Mean, want.Mean) ||
		!close(got.Stddev, want.Stddev) || got.Median != want.Median || got.Lower != want.Lower ||
		got.Upper != want.Upper || !reflect.DeepEqual(got.Percentiles, want.Percentiles) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}

	// Without sample rates the arithmetic is Telegraf's own, bit for bit.
	for i := range rates {
		rates[i] = 1
		lines[i] = fmt.Sprintf("t:%v|ms", values[i])
	}
	feed(t, m, lines...)
	got = collect(m)["t_seconds"].Stats.Telegraf
	if want := telegrafReference(values, rates, pcts); !reflect.DeepEqual(got, want) {
		t.Errorf("unsampled: got  %+v\nwant %+v", got, want)
	}
}

func TestTelegrafStatsPastTheExactLimit(t *testing.T) {
	m := New(Options{MaxSeries: 10, MaxSeriesPerFamily: 10, Percentiles: []float64{90}, ExactTimerValues: 100})
	var lines []string
	for i := 1; i <= 1000; i++ {
		lines = append(lines, fmt.Sprintf("t:%d|ms", i))
	}
	feed(t, m, lines...)
	st := collect(m)["t_seconds"].Stats.Telegraf
	if st.Count != 1000 || st.Sum != 500500 || st.Mean != 500.5 || st.Lower != 1 || st.Upper != 1000 {
		t.Errorf("exact parts: %+v", st)
	}
	for name, got := range map[string]float64{"median": st.Median, "90_percentile": st.Percentiles[0]} {
		want := map[string]float64{"median": 500.5, "90_percentile": 901}[name]
		if math.Abs(got-want) > 0.01*want {
			t.Errorf("%s = %v, want %v within 1%%", name, got, want)
		}
	}
}
