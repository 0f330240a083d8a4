package model

import (
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/statsbridge/statsbridge/ingest"
)

func TestTimersBecomeHistogramsInSeconds(t *testing.T) {
	m := newTestModel()
	feed(t, m, "api.time:250|ms", "api.time:1500|ms|@0.5", "size:3|h", "size:7|d")
	got := pointsByFamily(m)
	p := got["api_time_seconds"][0]
	f := p.Series.Family()
	if f.Type != Histogram || f.Unit != "seconds" || bucketLEs(f.Buckets) != "0.005,0.01,0.025,0.05,0.1,0.25,0.5,1,2.5,5,10,+Inf" {
		t.Fatalf("family %+v", f)
	}
	// 0.25s once; 1.5s with weight 2 (sample rate 0.5).
	want := []float64{0, 0, 0, 0, 0, 1, 1, 1, 3, 3, 3, 3}
	if fmt.Sprint(p.Histogram.Buckets) != fmt.Sprint(want) || p.Histogram.Count != 3 || p.Histogram.Sum != 3.25 {
		t.Errorf("buckets %v count %v sum %v; want %v, 3, 3.25", p.Histogram.Buckets, p.Histogram.Count, p.Histogram.Sum, want)
	}
	// h and d are not converted and have no unit.
	s := got["size"][0]
	if s.Series.Family().Unit != "" || s.Histogram.Sum != 10 || s.Histogram.Count != 2 {
		t.Errorf("size: %+v %+v", s.Series.Family(), s.Histogram)
	}
}

func TestTimerStatsAreEtsys(t *testing.T) {
	tests := []struct {
		name   string
		lines  []string
		want   TimerStats
		pcts   map[string]PercentileStats
		absent []string // thresholds Etsy leaves out
	}{
		{
			name:  "one to ten",
			lines: []string{"t:1:2:3:4:5|ms", "t:6:7:8:9:10|ms"},
			want: TimerStats{Count: 10, N: 10, Sum: 55, SumSquares: 385, Mean: 5.5, Median: 5.5, Lower: 1, Upper: 10,
				Std: math.Sqrt(8.25), Exact: true},
			pcts: map[string]PercentileStats{
				"90":    {Count: 9, Mean: 5, Bound: 9, Sum: 45, SumSquares: 285},
				"top10": {Top: true, Count: 1, Mean: 10, Bound: 10, Sum: 10, SumSquares: 100},
				"50":    {Count: 5, Mean: 3, Bound: 5, Sum: 15, SumSquares: 55},
				"99_9":  {Count: 10, Mean: 5.5, Bound: 10, Sum: 55, SumSquares: 385},
			},
			absent: []string{"1"},
		},
		{
			name:  "one value sent at a rate of 0.5",
			lines: []string{"t:7|ms|@0.5"},
			want:  TimerStats{Count: 2, N: 1, Sum: 7, SumSquares: 49, Mean: 7, Median: 7, Lower: 7, Upper: 7, Exact: true},
			pcts: map[string]PercentileStats{
				"90": {Count: 1, Mean: 7, Bound: 7, Sum: 7, SumSquares: 49},
				"1":  {Count: 1, Mean: 7, Bound: 7, Sum: 7, SumSquares: 49},
			},
		},
		{
			name:  "even count: the median is the mean of the middle two",
			lines: []string{"t:4:1:3:2|ms"},
			want:  TimerStats{Count: 4, N: 4, Sum: 10, SumSquares: 30, Mean: 2.5, Median: 2.5, Lower: 1, Upper: 4, Std: math.Sqrt(1.25), Exact: true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := New(Options{MaxSeries: 10, MaxSeriesPerFamily: 10, Percentiles: []float64{90, -10, 50, 99.9, 1}})
			feed(t, m, tt.lines...)
			st := *pointsByFamily(m)["t_seconds"][0].Stats
			got := st
			got.Percentiles = nil
			got.Telegraf = TelegrafStats{} // TestTimerStatsAreTelegrafs
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("stats\n%+v\nwant\n%+v", got, tt.want)
			}
			byName := map[string]PercentileStats{}
			for _, ps := range st.Percentiles {
				byName[ps.Name] = ps
			}
			for name, want := range tt.pcts {
				want.Name = name
				if byName[name] != want {
					t.Errorf("percentile %s: %+v, want %+v", name, byName[name], want)
				}
			}
			for _, name := range tt.absent {
				if _, ok := byName[name]; ok {
					t.Errorf("percentile %s should be left out", name)
				}
			}
		})
	}
}

func TestTimerStatsPastTheExactLimitUseASketch(t *testing.T) {
	m := New(Options{MaxSeries: 10, MaxSeriesPerFamily: 10, Percentiles: []float64{90}, ExactTimerValues: 100})
	var lines []string
	for i := 1; i <= 10000; i++ {
		lines = append(lines, fmt.Sprintf("t:%d|ms", i))
	}
	feed(t, m, lines...)
	st := pointsByFamily(m)["t_seconds"][0].Stats
	if st.Exact || st.Count != 10000 || st.Sum != 50005000 || st.Mean != 5000.5 || st.Lower != 1 || st.Upper != 10000 {
		t.Errorf("exact parts: %+v", st)
	}
	within := func(name string, got, want, rel float64) {
		if math.Abs(got-want) > rel*want {
			t.Errorf("%s = %v, want %v within %v%%", name, got, want, rel*100)
		}
	}
	within("std", st.Std, math.Sqrt((10000*10000-1)/12.0), 1e-9)
	within("median", st.Median, 5000.5, 0.01)
	p := st.Percentiles[0]
	if p.Count != 9000 {
		t.Errorf("count_90 %v", p.Count)
	}
	within("upper_90", p.Bound, 9000, 0.01)
	within("sum_90", p.Sum, 9000*9001/2, 0.01)
	within("mean_90", p.Mean, 4500.5, 0.01)
	// The next interval is exact again.
	feed(t, m, "t:1:2|ms")
	if st := pointsByFamily(m)["t_seconds"][0].Stats; !st.Exact || st.N != 2 {
		t.Errorf("next interval: %+v", st)
	}
}

func TestSetsCountDistinctMembersPerInterval(t *testing.T) {
	m := New(Options{MaxSeries: 10, MaxSeriesPerFamily: 10, ExactSetMembers: 100})
	feed(t, m, "users:alice|s", "users:bob|s", "users:alice|s", "users:carol|s")
	if p := pointsByFamily(m)["users"][0]; p.Value != 3 || p.Series.Family().Type != Gauge {
		t.Errorf("distinct members: %v (%v)", p.Value, p.Series.Family().Type)
	}
	var scraped float64
	m.Gather(func(f *Family, ps []Point) {
		if f.Name == "users" {
			scraped = ps[0].Value
		}
	})
	if scraped != 3 {
		t.Errorf("a scrape shows the last completed interval: %v", scraped)
	}
	if p := pointsByFamily(m)["users"][0]; p.Value != 0 {
		t.Errorf("an interval without members: %v", p.Value)
	}
	var lines []string
	for i := 0; i < 20000; i++ {
		lines = append(lines, fmt.Sprintf("users:u%d|s", i%10000))
	}
	feed(t, m, lines...)
	if v := pointsByFamily(m)["users"][0].Value; math.Abs(v-10000) > 300 {
		t.Errorf("past the exact limit: %v, want 10000 within 3%%", v)
	}
}

func TestSummaryQuantiles(t *testing.T) {
	fm, err := ParseMapping("defaults:\n  observer_type: summary\nmappings: []\n")
	if err != nil {
		t.Fatal(err)
	}
	m := New(Options{MaxSeries: 10, MaxSeriesPerFamily: 10, Mappers: []Mapper{fm}, Observers: fm.Observers()})
	var lines []string
	for i := 1; i <= 1000; i++ {
		lines = append(lines, fmt.Sprintf("lat:%d|ms", i))
	}
	feed(t, m, lines...)
	p := pointsByFamily(m)["lat"][0]
	if p.Summary == nil || p.Summary.Count != 1000 || math.Abs(p.Summary.Sum-500.5) > 1e-9 {
		t.Fatalf("summary %+v", p.Summary)
	}
	for i, q := range p.Series.Family().Summary.Quantiles {
		if got := p.Summary.Quantiles[i]; math.Abs(got-q) > 0.011*q {
			t.Errorf("quantile %v = %v, want %v within 1%%", q, got, q)
		}
	}
}

// prosodyLikeMapper maps "h.bucket.<i>", "h.count" and "h.sum" to one
// pre-bucketed histogram with bounds 1, 2 and +Inf.
type prosodyLikeMapper struct{}

func (prosodyLikeMapper) Map(name string, _ ingest.Type, _ Labels) (Mapping, bool) {
	rest, ok := strings.CutPrefix(name, "h.")
	if !ok {
		return Mapping{}, false
	}
	m := Mapping{Family: Family{Name: "h", Type: Histogram, Buckets: BucketsFor([]float64{1, 2})}, Kind: KindPrebucketed}
	switch rest {
	case "count":
		m.Part = PartCount
	case "sum":
		m.Part = PartSum
	default:
		var i int
		fmt.Sscanf(rest, "bucket.%d", &i)
		m.Part, m.Bucket = PartBucket, m.Family.Buckets[i]
	}
	return m, true
}

func TestPrebucketedHistogramParts(t *testing.T) {
	m := New(Options{MaxSeries: 10, MaxSeriesPerFamily: 10, Mappers: []Mapper{prosodyLikeMapper{}}})
	// Prosody sends 1.5 as +1 on every bucket at or above it, +1 on the
	// count and its running total as the sum; then 0.5 likewise.
	feed(t, m, "h.bucket.1:1|c", "h.bucket.2:1|c", "h.count:1|c", "h.sum:1.5|g",
		"h.bucket.0:1|c", "h.bucket.1:1|c", "h.bucket.2:1|c", "h.count:1|c", "h.sum:2|g")
	h := pointsByFamily(m)["h"][0].Histogram
	if fmt.Sprint(h.Buckets) != "[1 2 2]" || h.Count != 2 || h.Sum != 2 {
		t.Errorf("cumulative state %+v", h)
	}
	// The first running total counts from zero, then its changes.
	if h.DeltaCount != 2 || h.DeltaSum != 2 {
		t.Errorf("interval: count %v sum %v, want 2 and 2", h.DeltaCount, h.DeltaSum)
	}
	feed(t, m, "h.bucket.2:1|c", "h.count:1|c", "h.sum:5|g")
	if h := pointsByFamily(m)["h"][0].Histogram; h.DeltaSum != 3 || h.Sum != 5 || h.Count != 3 {
		t.Errorf("second interval %+v", h)
	}
	// Prosody restarted: its total starts again from zero.
	feed(t, m, "h.bucket.0:1|c", "h.bucket.1:1|c", "h.bucket.2:1|c", "h.count:1|c", "h.sum:0.25|g")
	if h := pointsByFamily(m)["h"][0].Histogram; h.DeltaSum != 0.25 || h.Sum != 0.25 || h.Count != 4 {
		t.Errorf("after a Prosody restart %+v", h)
	}
}

func TestEachEtsyNamesTheStatisticsAsEtsyDoes(t *testing.T) {
	full := &TimerStats{Count: 20, N: 10, Sum: 55, SumSquares: 385, Mean: 5.5, Median: 5.5, Lower: 1, Upper: 10, Std: 2.5,
		Percentiles: []PercentileStats{
			{Name: "90", Count: 9, Mean: 5, Bound: 9, Sum: 45, SumSquares: 285},
			{Name: "top10", Top: true, Count: 1, Mean: 10, Bound: 10, Sum: 10, SumSquares: 100},
		}}
	tests := []struct {
		name    string
		stats   *TimerStats
		seconds float64
		want    string
	}{
		{"nil is an idle timer", nil, 10, "count=0 count_ps=0"},
		{"no values", &TimerStats{Count: 0}, 10, "count=0 count_ps=0"},
		{"zero interval has no rate", &TimerStats{Count: 4}, 0, "count=4 count_ps=0"},
		{"full", full, 10, "count=20 count_ps=2 lower=1 upper=10 mean=5.5 median=5.5 std=2.5 sum=55 sum_squares=385 " +
			"count_90=9 mean_90=5 upper_90=9 sum_90=45 sum_squares_90=285 " +
			"count_top10=1 mean_top10=10 lower_top10=10 sum_top10=10 sum_squares_top10=100"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			tt.stats.EachEtsy(tt.seconds, func(name string, v float64) {
				got = append(got, fmt.Sprintf("%s=%g", name, v))
			})
			if s := strings.Join(got, " "); s != tt.want {
				t.Errorf("got  %s\nwant %s", s, tt.want)
			}
		})
	}
}
