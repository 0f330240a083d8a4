package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	clientgolang "github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// protobufAccept is what a Prometheus with native histograms asks a scrape
// target for.
const protobufAccept = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.6," +
	"application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3"

// timerLine is one StatsD timer value in ms, with its sample rate.
type timerLine struct {
	ms   string
	rate string // "" is 1
}

func (l timerLine) String(name string) string {
	if l.rate == "" {
		return fmt.Sprintf("%s:%s|ms", name, l.ms)
	}
	return fmt.Sprintf("%s:%s|ms|@%s", name, l.ms, l.rate)
}

// seconds is the value as the histogram observes it, and weight what it
// counts (1/rate), as statsbridge reads them.
func (l timerLine) seconds() float64 {
	v, _ := strconv.ParseFloat(l.ms, 64)
	return v / 1000
}

func (l timerLine) weight() float64 {
	if l.rate == "" {
		return 1
	}
	r, _ := strconv.ParseFloat(l.rate, 64)
	return 1 / r
}

// latencyStream is n timer values around median ms, log-normal with sigma,
// each sent with the next of rates in turn.
func latencyStream(rng *rand.Rand, n int, median, sigma float64, rates ...string) []timerLine {
	out := make([]timerLine, n)
	for i := range out {
		v := median * math.Exp(sigma*rng.NormFloat64())
		out[i] = timerLine{ms: strconv.FormatFloat(math.Round(v*1000)/1000, 'g', -1, 64), rate: rates[i%len(rates)]}
	}
	return out
}

func totalWeight(lines []timerLine) float64 {
	w := 0.0
	for _, l := range lines {
		w += l.weight()
	}
	return w
}

// exactQuantile is the q-quantile of the weighted stream, in seconds: the
// smallest value at or below which lies at least q of the weight, the rank
// histogram_quantile aims for.
func exactQuantile(lines []timerLine, q float64) float64 {
	sorted := append([]timerLine(nil), lines...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].seconds() < sorted[j].seconds() })
	rank, cum := q*totalWeight(lines), 0.0
	for _, l := range sorted {
		cum += l.weight()
		if cum >= rank {
			return l.seconds()
		}
	}
	return sorted[len(sorted)-1].seconds()
}

// etsyUpper is Etsy statsd's upper_<pct> of one relay's values in one
// flush interval (process_metrics.js): the values sorted, sample rates
// ignored, the one at round(pct/100 × n) - 1, in ms.
func etsyUpper(lines []timerLine, pct float64) float64 {
	values := make([]float64, len(lines))
	for i, l := range lines {
		values[i], _ = strconv.ParseFloat(l.ms, 64)
	}
	sort.Float64s(values)
	return values[int(math.Round(pct/100*float64(len(values))))-1]
}

// nativeRelay starts a statsbridge that reads StatsD over TCP (lossless,
// whatever the pace), flushes every second, keeps native histograms at a
// bucket factor of 1.1 and remote-writes them to prom as relay label.
func nativeRelay(t *testing.T, promURL, label string) *relay {
	return startRelay(t, nativeRelayConfig(promURL)+fmt.Sprintf("self_metrics = false\nexternal_labels = { relay = %q }\n", label))
}

// nativeRelayConfig reads StatsD over TCP, flushes every second, keeps
// native histograms at a bucket factor of 1.1 and sends them to promURL;
// keys of that [[remote_write]] may follow.
func nativeRelayConfig(promURL string) string {
	return fmt.Sprintf(`
[statsd]
udp = []
tcp = ["127.0.0.1:0"]
flush_interval = "1s"
[http]
listen = "127.0.0.1:0"
[mapping]
native_histogram_bucket_factor = 1.1
[[remote_write]]
url = "%s/api/v1/write"
native_histograms = true
`, promURL)
}

// promResult is one element of a Prometheus query's result.
type promResult struct {
	Metric     map[string]string    `json:"metric"`
	Value      [2]any               `json:"value"`
	Histograms [][2]json.RawMessage `json:"histograms"`
}

// promQueryAt runs query at t (milliseconds), which must succeed.
func promQueryAt(t *testing.T, promURL, query string, at int64) []promResult {
	t.Helper()
	u := promURL + "/api/v1/query?" + url.Values{"query": {query}, "time": {fmt.Sprintf("%d.%03d", at/1000, at%1000)}}.Encode()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var out struct {
		Status string `json:"status"`
		Data   struct {
			Result []promResult `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &out); err != nil || out.Status != "success" {
		t.Fatalf("prometheus query %q: %s", query, body)
	}
	return out.Data.Result
}

// promValue is the single value of an instant query, or NaN.
func promValue(t *testing.T, promURL, query string, at int64) float64 {
	t.Helper()
	res := promQueryAt(t, promURL, query, at)
	if len(res) != 1 {
		return math.NaN()
	}
	v, err := strconv.ParseFloat(res[0].Value[1].(string), 64)
	if err != nil {
		t.Fatalf("%s: %v", query, res[0].Value)
	}
	return v
}

// histogramCounts are each relay's native histogram samples in the last
// window: timestamp (ms) → count.
func histogramCounts(t *testing.T, promURL, selector string) map[string]map[int64]float64 {
	t.Helper()
	out := map[string]map[int64]float64{}
	for _, r := range promQueryAt(t, promURL, selector+"[20s]", time.Now().UnixMilli()) {
		samples := map[int64]float64{}
		for _, h := range r.Histograms {
			var ts float64
			var hist struct {
				Count string `json:"count"`
			}
			if json.Unmarshal(h[0], &ts) != nil || json.Unmarshal(h[1], &hist) != nil {
				t.Fatalf("a histogram sample: %s %s", h[0], h[1])
			}
			c, _ := strconv.ParseFloat(hist.Count, 64)
			samples[int64(math.Round(ts*1000))] = c
		}
		out[r.Metric["relay"]] = samples
	}
	return out
}

// commonTimestamp is the latest timestamp at which every relay has a
// sample whose count is want[relay] (any count for a relay not in want),
// or 0.
func commonTimestamp(counts map[string]map[int64]float64, relays []string, want map[string]float64) int64 {
	var best int64
	first := counts[relays[0]]
candidates:
	for ts := range first {
		for _, r := range relays {
			c, ok := counts[r][ts]
			if w, check := want[r]; !ok || check && c != w {
				continue candidates
			}
		}
		best = max(best, ts)
	}
	return best
}

// TestNativeHistogramsAcrossTwoRelays: two relays each get half of one
// timer stream (sample rates included), one the fast requests and one the
// slow, and remote-write native histograms at a bucket factor of 1.1 to a
// Prometheus with native histograms on. histogram_quantile over the sum of
// both relays' increase over the stream agrees with the exact quantiles of
// the whole stream within the schema's relative error, which Etsy's
// per-relay upper_90 cannot do. What each relay serves for a protobuf
// scrape is what client_golang's native histogram has for the same
// observations.
func TestNativeHistogramsAcrossTwoRelays(t *testing.T) {
	prom := startPrometheus(t, "--enable-feature=native-histograms")
	relays := []string{"a", "b"}
	started := map[string]*relay{}
	for _, r := range relays {
		started[r] = nativeRelay(t, prom.URL, r)
	}
	name := uniqueName("native_lat")
	series := name + "_seconds"

	// Each relay's series is made by one first value. increase() over a
	// window counts from its first sample, which holds that value, so the
	// stream starts once both relays' first samples are in Prometheus.
	primer := timerLine{ms: "1"}
	for _, r := range relays {
		started[r].sendTCP(t, primer.String(name)+"\n")
	}
	var start int64
	eventually(t, 15*time.Second, "both relays' first native histograms in Prometheus", func() (bool, string) {
		counts := histogramCounts(t, prom.URL, series)
		start = commonTimestamp(counts, relays, map[string]float64{"a": 1, "b": 1})
		return start != 0, fmt.Sprint(counts)
	})

	rng := rand.New(rand.NewPCG(13, 2026))
	halves := map[string][]timerLine{
		"a": latencyStream(rng, 2400, 12, 0.5, "", "", "0.5", "0.25"), // fast requests
		"b": latencyStream(rng, 800, 180, 0.8, "", "0.5", "0.1"),      // slow ones
	}
	var stream []timerLine
	for _, r := range relays {
		var b strings.Builder
		for _, l := range halves[r] {
			b.WriteString(l.String(name))
			b.WriteByte('\n')
		}
		started[r].sendTCP(t, b.String())
		stream = append(stream, halves[r]...)
	}
	want := map[string]float64{"a": 1 + totalWeight(halves["a"]), "b": 1 + totalWeight(halves["b"])}
	var end int64
	eventually(t, 20*time.Second, "both halves in Prometheus", func() (bool, string) {
		counts := histogramCounts(t, prom.URL, series)
		end = commonTimestamp(counts, relays, want)
		return end != 0, fmt.Sprintf("want counts %v; have %v", want, counts)
	})

	// The window from the stream's start to its end, both samples in it:
	// no extrapolation, so increase() is exactly the stream's.
	window := fmt.Sprintf("%s[%dms]", series, end-start)
	if got, w := promValue(t, prom.URL, fmt.Sprintf("histogram_count(sum(increase(%s)))", window), end), totalWeight(stream); got != w {
		t.Fatalf("the stream's count in Prometheus is %v, want %v", got, w)
	}
	bound := math.Exp2(math.Exp2(-3)) - 1 // schema 3: a bucket's upper bound is 2^(1/8) times its lower
	var figures []string
	for _, q := range []float64{0.5, 0.9, 0.99} {
		got := promValue(t, prom.URL, fmt.Sprintf("histogram_quantile(%g, sum(increase(%s)))", q, window), end)
		exact := exactQuantile(stream, q)
		relErr := math.Abs(got-exact) / exact
		if relErr > bound || math.IsNaN(got) {
			t.Errorf("p%g: PromQL says %.6g s, the stream's is %.6g s: %.2f%% off, past schema 3's %.2f%%", q*100, got, exact, 100*relErr, 100*bound)
		}
		figures = append(figures, fmt.Sprintf("p%g %.2f ms vs exact %.2f ms (%.2f%%)", q*100, 1000*got, 1000*exact, 100*relErr))
	}

	// What Graphite and InfluxDB users get instead: each relay's upper_90
	// of the interval, which nothing combines into the whole's.
	exact90 := 1000 * exactQuantile(stream, 0.9)
	upperA, upperB := etsyUpper(halves["a"], 90), etsyUpper(halves["b"], 90)
	nA, nB := float64(len(halves["a"])), float64(len(halves["b"]))
	miss := func(v float64) float64 { return 100 * (v - exact90) / exact90 }
	mean, weighted, worst := (upperA+upperB)/2, (upperA*nA+upperB*nB)/(nA+nB), math.Max(upperA, upperB)
	if math.Abs(miss(mean)) <= 100*bound && math.Abs(miss(weighted)) <= 100*bound && math.Abs(miss(worst)) <= 100*bound {
		t.Errorf("Etsy's per-relay upper_90 (%v, %v ms) combine to the stream's p90 (%v ms): the halves are not different enough to show anything", upperA, upperB, exact90)
	}
	t.Logf("figures: two relays, %d lines (weight %v, sample rates 1, 0.5, 0.25, 0.1), native histograms at factor 1.1 (schema 3, error bound %.2f%%): %s",
		len(stream), totalWeight(stream), 100*bound, strings.Join(figures, ", "))
	t.Logf("figures: Etsy upper_90 per relay: a %.2f ms, b %.2f ms; the stream's p90 %.2f ms; their mean misses it by %+.1f%%, their count-weighted mean by %+.1f%%, their max by %+.1f%%",
		upperA, upperB, exact90, miss(mean), miss(weighted), miss(worst))

	// Each relay's protobuf exposition against client_golang's native
	// histogram fed the same observations (a value sent with @0.25 four
	// times, as statsd_exporter observes it).
	for _, r := range relays {
		ch := clientgolang.NewHistogram(clientgolang.HistogramOpts{Name: series, Help: "x",
			NativeHistogramBucketFactor: 1.1, NativeHistogramMaxBucketNumber: 256})
		for _, l := range append([]timerLine{primer}, halves[r]...) {
			for range int(l.weight()) {
				ch.Observe(l.seconds())
			}
		}
		var want dto.Metric
		if err := ch.Write(&want); err != nil {
			t.Fatal(err)
		}
		got := scrapeProtobuf(t, started[r].HTTP)[series]
		if got == nil || len(got.Metric) != 1 {
			t.Fatalf("relay %s: no %s in the protobuf scrape", r, series)
		}
		if diff := nativeDifference(got.Metric[0].GetHistogram(), want.GetHistogram()); diff != "" {
			t.Errorf("relay %s against client_golang: %s", r, diff)
		}
	}
}

// scrapeProtobuf scrapes /metrics as a Prometheus with native histograms
// does, and requires the protobuf exposition.
func scrapeProtobuf(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	body, contentType := getMetrics(t, addr, protobufAccept)
	if !strings.HasPrefix(contentType, "application/vnd.google.protobuf") {
		t.Fatalf("%s answered %q, not protobuf", addr, contentType)
	}
	dec := expfmt.NewDecoder(bytes.NewReader(body), expfmt.NewFormat(expfmt.TypeProtoDelim))
	out := map[string]*dto.MetricFamily{}
	for {
		var mf dto.MetricFamily
		if err := dec.Decode(&mf); errors.Is(err, io.EOF) {
			return out
		} else if err != nil {
			t.Fatalf("%s's protobuf: %v", addr, err)
		}
		out[mf.GetName()] = &mf
	}
}

// nativeDifference compares two histograms' native parts, count and sum:
// "" when they are the same.
func nativeDifference(got, want *dto.Histogram) string {
	var diffs []string
	check := func(what string, g, w any) {
		if fmt.Sprint(g) != fmt.Sprint(w) {
			diffs = append(diffs, fmt.Sprintf("%s %v, want %v", what, g, w))
		}
	}
	spans := func(ss []*dto.BucketSpan) string {
		var b strings.Builder
		for _, s := range ss {
			fmt.Fprintf(&b, "[%d+%d]", s.GetOffset(), s.GetLength())
		}
		return b.String()
	}
	check("schema", got.GetSchema(), want.GetSchema())
	check("zero threshold", got.GetZeroThreshold(), want.GetZeroThreshold())
	check("zero count", got.GetZeroCount(), want.GetZeroCount())
	check("count", got.GetSampleCount(), want.GetSampleCount())
	check("positive spans", spans(got.GetPositiveSpan()), spans(want.GetPositiveSpan()))
	check("positive deltas", got.GetPositiveDelta(), want.GetPositiveDelta())
	check("negative spans", spans(got.GetNegativeSpan()), spans(want.GetNegativeSpan()))
	check("negative deltas", got.GetNegativeDelta(), want.GetNegativeDelta())
	check("float counts", got.GetPositiveCount(), want.GetPositiveCount())
	if g, w := got.GetSampleSum(), want.GetSampleSum(); math.Abs(g-w) > 1e-9*math.Abs(w) {
		// Weighted sums and repeated observations add in another order.
		diffs = append(diffs, fmt.Sprintf("sum %v, want %v", g, w))
	}
	if got.GetSchema() == 0 && len(got.GetPositiveSpan()) == 0 {
		diffs = append(diffs, "no native histogram")
	}
	return strings.Join(diffs, "; ")
}

// TestNativeHistogramsToAPrometheusWithout: a Prometheus 2.42 without the
// feature refuses every request that holds a native histogram, and stores
// nothing of it. The sink logs it as an error, drops the native histograms,
// sends the rest at once and keeps sending the next flushes; it is neither
// retried nor held, and the refusal is counted.
func TestNativeHistogramsToAPrometheusWithout(t *testing.T) {
	prom := startPrometheus(t)
	r := startRelay(t, nativeRelayConfig(prom.URL))
	name := uniqueName("native_off")
	r.sendTCP(t, fmt.Sprintf("%s:12|ms\n%s:40|ms|@0.5\n%s_hits:3|c\n", name, name, name))
	eventually(t, 15*time.Second, "the classic series and the counter in Prometheus", func() (bool, string) {
		count := promValue(t, prom.URL, name+"_seconds_count", time.Now().UnixMilli())
		hits := promValue(t, prom.URL, name+"_hits_total", time.Now().UnixMilli())
		return count == 3 && hits == 3, fmt.Sprintf("count %v, hits %v", count, hits)
	})
	// Later flushes keep going.
	r.sendTCP(t, fmt.Sprintf("%s:7|ms\n", name))
	eventually(t, 15*time.Second, "the next flushes", func() (bool, string) {
		count := promValue(t, prom.URL, name+"_seconds_count", time.Now().UnixMilli())
		return count == 4, fmt.Sprint("count ", count)
	})
	if res := promQueryAt(t, prom.URL, name+"_seconds[1m]", time.Now().UnixMilli()); len(res) != 0 {
		t.Errorf("Prometheus without the feature holds native histograms: %+v", res)
	}
	body := r.scrape(t)
	metric := func(s string) float64 {
		v, _ := sample(body, s)
		f, _ := strconv.ParseFloat(v, 64)
		return f
	}
	dropped := metric(`statsbridge_sink_dropped_points_total{reason="unsupported",sink="remote_write[0]"}`)
	failures := metric(`statsbridge_sink_failures_total{reason="unsupported",sink="remote_write[0]"}`)
	skipped := metric(`statsbridge_sink_skipped_values_total{sink="remote_write[0]"}`)
	retries := metric(`statsbridge_sink_retries_total{sink="remote_write[0]"}`)
	up := metric(`statsbridge_sink_up{sink="remote_write[0]"}`)
	if dropped < 1 || failures != 1 || skipped < 1 || retries != 0 || up != 1 {
		t.Errorf("dropped %v, unsupported answers %v, skipped %v, retries %v, up %v; want ≥1, 1 (the flushes after it leave them out), ≥1, 0, 1",
			dropped, failures, skipped, retries, up)
	}
	if log := r.log.String(); !strings.Contains(log, "level=ERROR") || !strings.Contains(log, "native histograms are disabled") {
		t.Errorf("no error logged with Prometheus' answer:\n%s", log)
	}
}

// nativeMapping is a statsd_exporter mapping file with native histogram
// options: a factor of its own, a cap small enough to halve the
// resolution, and a mapping that sets none (statsd_exporter keeps native
// histograms for it anyway, at 1.1; statsbridge only when its own
// [mapping] native_histogram_bucket_factor says).
const nativeMapping = `defaults:
  observer_type: histogram
mappings:
- match: "api.*.request_time"
  name: "api_request_seconds"
  histogram_options:
    native_histogram_bucket_factor: 1.1
  labels:
    endpoint: "$1"
- match: "db.*.query_time"
  name: "db_query_seconds"
  histogram_options:
    buckets: [0.001, 0.01, 0.1, 1]
    native_histogram_bucket_factor: 1.02
    native_histogram_max_buckets: 40
  labels:
    table: "$1"
- match: "queue.*.wait"
  name: "queue_wait_seconds"
  labels:
    queue: "$1"
`

// TestNativeHistogramsBesideStatsdExporter: statsd_exporter v0.31.0 and
// statsbridge with one mapping file that sets native histogram options get
// the same timers (sample rates of 1/n, negative and zero values, a cap
// that halves the resolution), and their protobuf scrapes hold the same
// native histograms. A mapping that sets none is the one difference,
// checked both ways: statsbridge keeps none unless
// native_histogram_bucket_factor says, and with 1.1 it is
// statsd_exporter's again.
func TestNativeHistogramsBesideStatsdExporter(t *testing.T) {
	bin := needStatsdExporter(t)
	mappingPath := filepath.Join(t.TempDir(), "mapping.yml")
	if err := os.WriteFile(mappingPath, []byte(nativeMapping), 0o644); err != nil {
		t.Fatal(err)
	}
	exporter := startStatsdExporter(t, bin, mappingPath)
	// One reader: the order of observations decides when a histogram
	// passes its cap, and statsd_exporter reads one datagram after another.
	relayConfig := "[statsd]\nudp = [\"127.0.0.1:0\"]\ntcp = []\nreaders = 1\nflush_interval = \"1s\"\n" +
		"[http]\nlisten = \"127.0.0.1:0\"\n[mapping]\nfile = %q\n%s"
	plain := startRelay(t, fmt.Sprintf(relayConfig, mappingPath, ""))
	withDefault := startRelay(t, fmt.Sprintf(relayConfig, mappingPath, "native_histogram_bucket_factor = 1.1\n"))

	rng := rand.New(rand.NewPCG(31, 13))
	var payloads []string
	add := func(name string, lines []timerLine) {
		for start := 0; start < len(lines); start += 40 {
			var b strings.Builder
			for i, l := range lines[start:min(start+40, len(lines))] {
				if i > 0 {
					b.WriteByte('\n')
				}
				b.WriteString(l.String(name))
			}
			payloads = append(payloads, b.String())
		}
	}
	add("api.login.request_time", latencyStream(rng, 400, 35, 0.7, "", "0.5", "", "0.25"))
	add("api.logout.request_time", append(latencyStream(rng, 50, 5, 1, ""), timerLine{ms: "0"}, timerLine{ms: "0", rate: "0.5"}))
	add("db.users.query_time", latencyStream(rng, 300, 3, 2.5, "", "0.1"))
	add("queue.mail.wait", latencyStream(rng, 200, 900, 0.4, ""))
	payloads = append(payloads, "sized:-3|h\nsized:0|h\nsized:5|h|@0.5", "native_sentinel:1|c")
	for _, p := range payloads {
		sendUDPTo(t, exporter.udp, p)
		plain.sendUDP(t, p)
		withDefault.sendUDP(t, p)
	}

	var want, got, gotDefault map[string]*dto.MetricFamily
	eventually(t, 10*time.Second, "the sentinel reached all three", func() (bool, string) {
		want = scrapeProtobuf(t, exporter.http)
		got = scrapeProtobuf(t, plain.HTTP)
		gotDefault = scrapeProtobuf(t, withDefault.HTTP)
		_, a := want["native_sentinel"]
		_, b := got["native_sentinel_total"]
		_, c := gotDefault["native_sentinel_total"]
		return a && b && c, fmt.Sprintf("statsd_exporter %v, statsbridge %v and %v", a, b, c)
	})

	compared, halved := 0, false
	for _, family := range []string{"api_request_seconds", "db_query_seconds", "queue_wait_seconds", "sized"} {
		w := histogramsByLabels(want[family])
		if len(w) == 0 {
			t.Fatalf("statsd_exporter has no %s", family)
		}
		for labels, wh := range w {
			if wh.GetSchema() == 0 && len(wh.GetPositiveSpan()) == 0 {
				t.Fatalf("statsd_exporter's %s%s is no native histogram (the oracle changed)", family, labels)
			}
			if family == "db_query_seconds" && wh.GetSchema() < 5 {
				halved = true
			}
			for _, relay := range []struct {
				name     string
				families map[string]*dto.MetricFamily
				factor   bool // [mapping] native_histogram_bucket_factor = 1.1
			}{{"statsbridge", got, false}, {"statsbridge with native_histogram_bucket_factor = 1.1", gotDefault, true}} {
				gh := histogramsByLabels(relay.families[family])[labels]
				if gh == nil {
					t.Errorf("%s has no %s%s", relay.name, family, labels)
					continue
				}
				setsNone := family == "queue_wait_seconds" || family == "sized"
				if setsNone && !relay.factor {
					if gh.GetSchema() != 0 || len(gh.GetPositiveSpan()) != 0 || gh.GetZeroThreshold() != 0 {
						t.Errorf("%s: %s%s has a native histogram, though neither the mapping nor [mapping] asks for one", relay.name, family, labels)
					}
					if gh.GetSampleCountFloat() != float64(wh.GetSampleCount()) {
						t.Errorf("%s: %s%s counts %v, statsd_exporter %v", relay.name, family, labels, gh.GetSampleCountFloat(), wh.GetSampleCount())
					}
					continue
				}
				if diff := nativeDifference(gh, wh); diff != "" {
					t.Errorf("%s: %s%s against statsd_exporter: %s", relay.name, family, labels, diff)
				}
				compared++
			}
		}
	}
	if !halved {
		t.Error("db_query_seconds never passed its cap of 40 buckets: the case shows nothing")
	}
	if compared < 8 {
		t.Errorf("only %d native histograms compared", compared)
	}
	t.Logf("figures: statsd_exporter side by side, protobuf scrapes: %d native histograms identical (schema, zero bucket, spans, counts)", compared)
}

// histogramsByLabels are a family's histograms by their label text.
func histogramsByLabels(mf *dto.MetricFamily) map[string]*dto.Histogram {
	out := map[string]*dto.Histogram{}
	for _, m := range mf.GetMetric() {
		out[braces(labelText(m.GetLabel()), "")] = m.GetHistogram()
	}
	return out
}
