package e2e

import (
	"bytes"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// statsdExporterVersion is the statsd_exporter test.sh builds with go install
// (STATSD_EXPORTER_VERSION there): the oracle of /metrics for a user who
// brings a statsd_exporter mapping file.
const statsdExporterVersion = "v0.31.0"

// exporterMapping is one statsd_exporter mapping file with every feature a
// migrating user's file is likely to hold: globs and a regex with captures,
// labels, help, a drop, match_metric_type, histogram and summary observers,
// and defaults.
const exporterMapping = `defaults:
  observer_type: histogram
  histogram_options:
    buckets: [0.01, 0.1, 1, 10]
mappings:
- match: "api.*.request_time"
  name: "api_request_seconds"
  labels:
    endpoint: "$1"
- match: "api.*.hits"
  name: "api_hits_total"
  labels:
    endpoint: "$1"
- match: "queue.*.size"
  name: "queue_size"
  help: "Items waiting in a queue."
  labels:
    queue: "$1"
- match: "(.*)\\.latency\\.(.*)"
  match_type: regex
  name: "${1}_latency"
  observer_type: summary
  summary_options:
    quantiles:
      - quantile: 0.5
        error: 0.01
      - quantile: 0.9
        error: 0.01
      - quantile: 0.99
        error: 0.001
  labels:
    region: "$2"
- match: "noise.*"
  action: drop
  name: "dropped"
- match: "sized.*"
  name: "payload_bytes"
  match_metric_type: observer
  observer_type: histogram
  histogram_options:
    buckets: [100, 1000, 10000]
  labels:
    kind: "$1"
- match: "sized.*"
  name: "payload_events_total"
  match_metric_type: counter
  labels:
    kind: "$1"
`

// exporterCorpus goes to both, and both must expose the same series with the
// same values for it, apart from the rules in exporterSameSeries.
var exporterCorpus = []string{
	// Mapped: observers, counters, gauges, a regex, match_metric_type.
	"api.login.request_time:12|ms\napi.login.request_time:340|ms\napi.login.request_time:5|ms|@0.5",
	"api.logout.request_time:1200|ms\napi.login.hits:1|c\napi.login.hits:3|c|@0.1\napi.logout.hits:2|c",
	"queue.mail.size:17|g\nqueue.mail.size:+3|g\nqueue.jobs.size:4|g\nqueue.jobs.size:-1|g",
	"web.latency.us:35|ms",
	"noise.x:1|c\nnoise.y:5|g",
	"sized.upload:500|h\nsized.upload:5000|d\nsized.upload:1|c",
	// Unmapped: the defaults decide.
	"plain_counter:5|c\nplain_counter:2|c|#env:prod,host:a\nplain_gauge:1.5|g\nplain_gauge:-2.5|g",
	"plain_timer:250|ms\nplain_timer:25|ms|@0.25\nplain_hist:3|h\nplain_dist:7|d",
	"multival:1|ms:2|ms\nfloat_counter:0.5|c\ngauge_sci:1e3|g",
	// Tags, DogStatsD and Influx style, and names made valid.
	"tagged.influx,env=prod,host=b:4|c\ndog_tags:1|c|#a.b:1,c-d:2\ndog_nested:1|c|#k:v:w",
	"weird-name.x:1|c\n1leading:2|g",
}

// exporterLatencyStream is one summary's stream, long enough that the
// quantiles say something: 1..1000 ms in an order that is not sorted.
func exporterLatencyStream() []float64 {
	values := make([]float64, 1000)
	for i := range values {
		values[i] = float64((i*389)%1000 + 1)
	}
	return values
}

// exporterDifferences are the lines statsbridge reads differently on purpose,
// each as the README's "From statsd_exporter" lists it: what statsd_exporter
// exposes for it and what statsbridge does instead. Each is checked both
// ways, so a difference that goes away, or changes, fails the test too.
var exporterDifferences = []struct {
	why         string
	lines       string
	exporter    []string // series text as statsd_exporter exposes it; nil: nothing
	statsbridge []string
}{
	{
		why:         "a counter's name ends in _total, as OpenMetrics has it",
		lines:       "named_counter:3|c",
		exporter:    []string{"named_counter 3"},
		statsbridge: []string{"named_counter_total 3"},
	},
	{
		why:         "a negative counter increment counts (Etsy's and Prosody's meaning), where statsd_exporter drops it",
		lines:       "neg_counter:4|c\nneg_counter:-1|c",
		exporter:    []string{"neg_counter 4"},
		statsbridge: []string{"neg_counter_total 3"},
	},
	{
		why:         "a set is a gauge of distinct members per flush interval; statsd_exporter ignores sets",
		lines:       "users:alice|s\nusers:bob|s",
		exporter:    nil,
		statsbridge: []string{"users 2"}, // for the flush interval after the one they came in
	},
	{
		why:         "a bare DogStatsD tag is the label <tag>=\"true\"; statsd_exporter drops it",
		lines:       "bare_tag:1|c|#canary",
		exporter:    []string{"bare_tag 1"},
		statsbridge: []string{`bare_tag_total{canary="true"} 1`},
	},
	{
		why:         "Graphite-style ;k=v tags are labels; statsd_exporter folds them into the name",
		lines:       "graphite_tags;env=dev:9|g",
		exporter:    []string{"graphite_tags_env_dev 9"},
		statsbridge: []string{`graphite_tags{env="dev"} 9`},
	},
}

// TestStatsdExporterSideBySide sends one corpus to statsd_exporter and to
// statsbridge, both with the same mapping file, and compares the two
// /metrics pages series by series: names, types, labels and values, the
// summaries' quantiles within what each one's estimator promises.
func TestStatsdExporterSideBySide(t *testing.T) {
	bin := needStatsdExporter(t)
	dir := t.TempDir()
	mappingPath := filepath.Join(dir, "mapping.yml")
	if err := os.WriteFile(mappingPath, []byte(exporterMapping), 0o644); err != nil {
		t.Fatal(err)
	}
	exporter := startStatsdExporter(t, bin, mappingPath)
	// A flush every second, so that the set's count shows soon; nothing
	// else on /metrics depends on the flush.
	r := startRelay(t, fmt.Sprintf("[statsd]\nflush_interval = \"1s\"\n[mapping]\nfile = %q\n", mappingPath))

	latency := exporterLatencyStream()
	payloads := append([]string(nil), exporterCorpus...)
	for start := 0; start < len(latency); start += 50 {
		var b strings.Builder
		for i, v := range latency[start:min(start+50, len(latency))] {
			if i > 0 {
				b.WriteByte('\n')
			}
			fmt.Fprintf(&b, "web.latency.eu:%g|ms", v)
		}
		payloads = append(payloads, b.String())
	}
	for _, d := range exporterDifferences {
		payloads = append(payloads, d.lines)
	}
	payloads = append(payloads, "sentinel:1|c")
	for _, p := range payloads {
		sendUDPTo(t, exporter.udp, p)
		r.sendUDP(t, p)
	}

	var want, got map[string]*dto.MetricFamily
	eventually(t, 10*time.Second, "the sentinel reached both", func() (bool, string) {
		want = scrapeTextFamilies(t, exporter.http)
		got = scrapeTextFamilies(t, r.HTTP)
		_, a := want["sentinel"]
		_, b := got["sentinel_total"]
		return a && b, fmt.Sprintf("statsd_exporter %v, statsbridge %v", a, b)
	})

	wantSeries, gotSeries := exporterSeries(want), exporterSeries(got)
	for _, d := range exporterDifferences {
		t.Run(d.why, func(t *testing.T) {
			for _, s := range d.exporter {
				if !hasSeries(wantSeries, s) {
					t.Errorf("statsd_exporter no longer exposes %s (the difference changed: update the README)", s)
				}
			}
			for _, s := range d.statsbridge {
				eventually(t, 5*time.Second, "statsbridge exposes "+s, func() (bool, string) {
					return hasSeries(exporterSeries(scrapeTextFamilies(t, r.HTTP)), s), ""
				})
			}
			for _, s := range d.exporter {
				delete(wantSeries, strings.Fields(s)[0])
			}
			for _, s := range d.statsbridge {
				delete(gotSeries, strings.Fields(s)[0])
			}
		})
	}

	// The rest is the same series with the same value, apart from counters'
	// _total (the first difference above) and summary quantiles, which are
	// estimates: statsd_exporter's within its targeted rank error, statsbridge's
	// from a DDSketch within 1% of the value.
	streams := map[string][]float64{
		`web_latency{region="eu"}`: latency,
		`web_latency{region="us"}`: {35},
	}
	compared, quantiles := 0, 0
	for key, w := range wantSeries {
		gotKey := key
		if w.family.GetType() == dto.MetricType_COUNTER && !strings.HasSuffix(w.family.GetName(), "_total") {
			gotKey = w.family.GetName() + "_total" + strings.TrimPrefix(key, w.family.GetName())
		}
		g, ok := gotSeries[gotKey]
		if !ok {
			t.Errorf("statsd_exporter exposes %s = %v; statsbridge has no %s", key, w.value, gotKey)
			continue
		}
		delete(gotSeries, gotKey)
		compared++
		if w.family.GetType() != g.family.GetType() {
			t.Errorf("%s: statsd_exporter's type is %v, statsbridge's %v", key, w.family.GetType(), g.family.GetType())
		}
		if w.family.Help != nil && strings.Contains(exporterMapping, w.family.GetHelp()) && w.family.GetHelp() != g.family.GetHelp() {
			t.Errorf("%s: the mapping's help is %q at statsd_exporter, %q at statsbridge", key, w.family.GetHelp(), g.family.GetHelp())
		}
		if w.quantile >= 0 {
			stream, ok := streams[w.series]
			if !ok {
				t.Errorf("%s: a summary quantile with no known stream", key)
				continue
			}
			lo, hi := quantileRange(stream, w.quantile, exporterQuantileError(w.quantile))
			if w.value < lo || w.value > hi {
				t.Errorf("%s: statsd_exporter says %g, outside its promise [%g, %g] (the oracle misbehaves)", key, w.value, lo, hi)
			}
			if g.value < lo*0.99 || g.value > hi*1.01 {
				t.Errorf("%s: statsbridge says %g, outside [%g, %g] ± 1%% (statsd_exporter says %g)", key, g.value, lo, hi, w.value)
			}
			quantiles++
			continue
		}
		if !sameFloat(w.value, g.value) {
			t.Errorf("%s: statsd_exporter says %v, statsbridge %v", key, w.value, g.value)
		}
	}
	for key, g := range gotSeries {
		t.Errorf("statsbridge exposes %s = %v, which statsd_exporter does not", key, g.value)
	}
	if compared < 60 || quantiles < 6 {
		t.Errorf("only %d series and %d quantiles compared: the corpus did not reach one of them", compared, quantiles)
	}
	t.Logf("figures: statsd_exporter side by side: %d series identical (%d of them summary quantiles, within each one's error), %d differences on purpose", compared, quantiles, len(exporterDifferences))
}

// exporterQuantileError is the rank error exporterMapping gives each
// quantile of its summaries.
func exporterQuantileError(q float64) float64 {
	if q == 0.99 {
		return 0.001
	}
	return 0.01
}

// quantileRange is the range of values whose rank in stream lies within
// q ± rankError.
func quantileRange(stream []float64, q, rankError float64) (lo, hi float64) {
	sorted := append([]float64(nil), stream...)
	sort.Float64s(sorted)
	n := float64(len(sorted))
	at := func(rank float64) float64 {
		i := int(math.Round(rank*n)) - 1
		return sorted[max(0, min(len(sorted)-1, i))]
	}
	return at(q-rankError) / 1000, at(q+rankError) / 1000 // the stream is in ms, the summary in seconds
}

func sameFloat(a, b float64) bool {
	if a == b {
		return true
	}
	return math.Abs(a-b) <= 1e-9*math.Max(math.Abs(a), math.Abs(b))
}

// exposedSeries is one sample of a scrape: its family, the series text
// without the sample suffix's labels (for summaries), and its value.
type exposedSeries struct {
	family   *dto.MetricFamily
	series   string  // name{labels} of the series, without quantile or le
	quantile float64 // -1 unless a summary quantile
	value    float64
}

// exporterSeries flattens a scrape into samples keyed by their text form
// (`name_bucket{a="b",le="1"}`), leaving out each process's own families.
func exporterSeries(families map[string]*dto.MetricFamily) map[string]exposedSeries {
	out := map[string]exposedSeries{}
	for name, f := range families {
		if name == "sentinel" || name == "sentinel_total" || strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_") ||
			strings.HasPrefix(name, "statsd_") || strings.HasPrefix(name, "statsbridge_") || strings.HasPrefix(name, "promhttp_") {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := labelText(m.GetLabel())
			add := func(suffix string, extra string, q, v float64) {
				key := name + suffix + braces(labels, extra)
				out[key] = exposedSeries{family: f, series: name + braces(labels, ""), quantile: q, value: v}
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				add("", "", -1, m.GetCounter().GetValue())
			case dto.MetricType_GAUGE:
				add("", "", -1, m.GetGauge().GetValue())
			case dto.MetricType_HISTOGRAM:
				h := m.GetHistogram()
				for _, b := range h.GetBucket() {
					add("_bucket", `le="`+model.FloatString(b.GetUpperBound()).String()+`"`, -1, float64(b.GetCumulativeCount()))
				}
				add("_bucket", `le="+Inf"`, -1, float64(h.GetSampleCount()))
				add("_sum", "", -1, h.GetSampleSum())
				add("_count", "", -1, float64(h.GetSampleCount()))
			case dto.MetricType_SUMMARY:
				s := m.GetSummary()
				for _, q := range s.GetQuantile() {
					add("", `quantile="`+strconv.FormatFloat(q.GetQuantile(), 'g', -1, 64)+`"`, q.GetQuantile(), q.GetValue())
				}
				add("_sum", "", -1, s.GetSampleSum())
				add("_count", "", -1, float64(s.GetSampleCount()))
			default:
				add("", "", -1, m.GetUntyped().GetValue())
			}
		}
	}
	return out
}

// hasSeries reports whether series holds text (`name{labels} value`).
func hasSeries(series map[string]exposedSeries, text string) bool {
	fields := strings.Fields(text)
	s, ok := series[fields[0]]
	if !ok {
		return false
	}
	want, err := strconv.ParseFloat(fields[1], 64)
	return err == nil && sameFloat(s.value, want)
}

func labelText(pairs []*dto.LabelPair) string {
	parts := make([]string, 0, len(pairs))
	for _, p := range pairs {
		parts = append(parts, p.GetName()+"="+strconv.Quote(p.GetValue()))
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

func braces(labels, extra string) string {
	switch {
	case labels == "" && extra == "":
		return ""
	case labels == "":
		return "{" + extra + "}"
	case extra == "":
		return "{" + labels + "}"
	}
	return "{" + labels + "," + extra + "}"
}

// scrapeTextFamilies fetches /metrics in the Prometheus text format, the one
// format statsd_exporter serves, and parses it with Prometheus' own parser.
func scrapeTextFamilies(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	body, _ := getMetrics(t, addr, "text/plain;version=0.0.4")
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("%s/metrics does not parse: %v\n%s", addr, err, body)
	}
	return families
}

// statsdExporter is a running statsd_exporter.
type statsdExporter struct {
	udp, http string
}

// startStatsdExporter runs statsd_exporter on loopback with a mapping file.
func startStatsdExporter(t *testing.T, bin, mappingPath string) statsdExporter {
	t.Helper()
	e := statsdExporter{
		udp:  net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t))),
		http: net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t))),
	}
	startServer(t, "statsd_exporter", func() *exec.Cmd {
		return exec.Command(bin, "--statsd.mapping-config="+mappingPath, "--statsd.listen-udp="+e.udp,
			"--statsd.listen-tcp=", "--web.listen-address="+e.http)
	}, httpReady("http://"+e.http+"/metrics", http.StatusOK))
	return e
}

// needStatsdExporter finds statsd_exporter where test.sh installs it.
func needStatsdExporter(t *testing.T) string {
	t.Helper()
	cache, err := os.UserCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(cache, "statsbridge-test", "statsd_exporter-"+statsdExporterVersion, "statsd_exporter")
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("statsd_exporter %s is not installed (%v), and CI=true: test.sh must install it", statsdExporterVersion, err)
		}
		t.Skipf("statsd_exporter %s is not installed (run ./test.sh, which installs it): %v", statsdExporterVersion, err)
	}
	return bin
}
