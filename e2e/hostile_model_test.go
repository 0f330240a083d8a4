package e2e

import (
	"fmt"
	"io"
	"math"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"
)

// TestHostileInputKeepsEveryOutputValid sends what a careless or hostile
// client can send: tags that collide with le and quantile, with each other
// once sanitised, or with reserved names; arithmetic past the largest float;
// invalid UTF-8; 8 KB names. /metrics must still be read whole by
// Prometheus' own parser, a real Prometheus must take every remote-write
// request (and store the series, with their labels renamed), and the
// self-metrics must count what was renamed, dropped and refused.
func TestHostileInputKeepsEveryOutputValid(t *testing.T) {
	prom := startPrometheus(t)
	name := uniqueName("hostile")
	mapping := filepath.Join(t.TempDir(), "mapping.yml")
	write(t, mapping, fmt.Sprintf(`
defaults:
  observer_type: histogram
mappings:
- match: "%[1]s.summary.*"
  observer_type: summary
  name: "%[1]s_summary"
  labels:
    origin: "$1"
`, name))
	r := startRelay(t, fmt.Sprintf(`
[statsd]
udp = ["127.0.0.1:0"]
tcp = []
flush_interval = "1s"
[http]
listen = "127.0.0.1:0"
[mapping]
file = %q
[[remote_write]]
url = "%s/api/v1/write"
`, mapping, prom.URL))

	const longNames = 100
	datagrams := []string{
		name + ".h:1|h|#le:5",
		name + ".summary.x:1|ms|#quantile:0.5",
		name + ".pair:1|c|#a.b:1,a_b:2",
		name + ".reserved:1|g|#__x:1,__name__:evil",
		name + ".big:1e308|c", name + ".big:1e308|c", // the second would make the total +Inf
		name + ".rate:1e303|c|@0.000001", // 1e309: +Inf, refused by ingest as bad_value
		name + ".tiny:1|c|@1e-320",       // +Inf, unless ingest refuses the rate first
		name + ".tiny:-1|c|@1e-320",      // then NaN
		"\xff\xfe.bad:1|c",
		name + ".badtag:1|c|#k:\xff",
	}
	for i := range longNames {
		datagrams = append(datagrams, fmt.Sprintf("%09d%s:1|c", i, strings.Repeat("n", 8<<10)))
	}
	r.sendUDP(t, datagrams...)

	counter := func(page, series string) float64 {
		v, ok := sample(page, series)
		if !ok {
			return 0
		}
		f, _ := strconv.ParseFloat(v, 64)
		return f
	}
	var page string
	eventually(t, 10*time.Second, "/metrics counts every datagram", func() (bool, string) {
		page = r.scrape(t)
		long := counter(page, `statsbridge_model_dropped_samples_total{reason="name_too_long"}`)
		_, big := sample(page, name+"_big_total")
		return long == longNames && big, fmt.Sprintf("name_too_long %v", long)
	})

	rss := r.peakRSS(t)
	defer func() {
		accounted := float64(len(datagrams))
		if t.Failed() {
			accounted = 0 // the checks below say which were not
		}
		report(t, figures{scenario: "hostile datagrams: le, quantile, colliding and reserved tags, +Inf arithmetic, invalid UTF-8, 8 KB names",
			sent: float64(len(datagrams)), delivered: accounted, unit: "lines, each applied or counted as the checks require", peakRSS: rss,
			notes: "/metrics parses with Prometheus' parser; Prometheus takes every remote-write request"})
	}()

	t.Run("/metrics parses and scrapes", func(t *testing.T) {
		if problems := scrapeProblems([]byte(page)); len(problems) > 0 {
			t.Errorf("%s\n%s", strings.Join(problems, "\n"), page)
		}
		for series, want := range map[string]string{
			name + "_h_bucket{exported_le=\"5\",le=\"1\"}": "1",
			name + "_pair_total{a_b=\"2\"}":                "1",
			name + "_reserved{_name__=\"evil\",_x=\"1\"}":  "1",
			name + "_big_total":                            "1e+308",
		} {
			if got, _ := sample(page, series); got != want {
				t.Errorf("%s = %q, want %q", series, got, want)
			}
		}
		if v, ok := sample(page, name+"_tiny_total"); ok && (v == "NaN" || strings.HasSuffix(v, "Inf")) {
			t.Errorf("%s_tiny_total = %s", name, v)
		}
	})

	t.Run("self-metrics count it", func(t *testing.T) {
		for series, least := range map[string]float64{
			`statsbridge_model_renamed_labels_total{reason="le"}`:              1,
			`statsbridge_model_renamed_labels_total{reason="quantile"}`:        1,
			`statsbridge_model_renamed_labels_total{reason="reserved_prefix"}`: 2,
			`statsbridge_model_dropped_labels_total{reason="duplicate"}`:       1,
			`statsbridge_model_dropped_samples_total{reason="name_too_long"}`:  longNames,
			`statsbridge_ingest_bad_lines_total{reason="bad_bytes"}`:           2,
		} {
			if got := counter(page, series); got < least {
				t.Errorf("%s = %v, want at least %v", series, got, least)
			}
		}
		// Ingest refuses the two tiny rates (bad_rate) and the value a rate
		// takes past the float range (bad_value); the model drops the
		// second huge counter, which would make the total +Inf.
		for series, want := range map[string]float64{
			`statsbridge_model_dropped_samples_total{reason="non_finite"}`: 1,
			`statsbridge_ingest_bad_lines_total{reason="bad_rate"}`:        2,
			`statsbridge_ingest_bad_lines_total{reason="bad_value"}`:       1,
		} {
			if got := counter(page, series); got != want {
				t.Errorf("%s = %v, want %v", series, got, want)
			}
		}
		if _, ok := sample(page, name+"_rate_total"); ok {
			t.Errorf("%s_rate_total exists: a value past the float range was taken", name)
		}
	})

	t.Run("prometheus stores the series", func(t *testing.T) {
		for selector, want := range map[string]string{
			name + `_h_bucket{exported_le="5",le="+Inf"}`:                        "1",
			name + `_summary_count{exported_quantile="0.5",origin="x"}`:          "1",
			name + `_summary{exported_quantile="0.5",origin="x",quantile="0.5"}`: "0.001",
			name + `_pair_total{a_b="2"}`:                                        "1",
			name + `_reserved{_name__="evil",_x="1"}`:                            "1",
			name + `_big_total`:                                                  "1e+308",
		} {
			eventually(t, 10*time.Second, selector+" reached prometheus", func() (bool, string) {
				ss := prom.samples(t, selector, time.Minute)
				if len(ss) == 0 {
					return false, "no samples"
				}
				got, _ := strconv.ParseFloat(ss[len(ss)-1].V, 64)
				w, _ := strconv.ParseFloat(want, 64)
				return math.Abs(got-w) <= 0.01*math.Abs(w), fmt.Sprint(ss)
			})
		}
		// Every request was taken: not one failed delivery.
		page := r.scrape(t)
		for _, reason := range []string{"network", "timeout", "throttled", "server_error", "client_error", "rejected", "permanent"} {
			series := fmt.Sprintf(`statsbridge_sink_failures_total{reason=%q,sink="remote_write[0]"}`, reason)
			if got := counter(page, series); got != 0 {
				t.Errorf("%s = %v", series, got)
			}
		}
	})
}

// scrapeProblems lists what would make Prometheus refuse or misread a
// scrape of page: a parse error, a series with two labels of one name or a
// reserved label, le on a histogram's series other than its buckets,
// quantile on a summary's series other than its quantiles.
func scrapeProblems(page []byte) []string {
	p, err := textparse.New(page, "application/openmetrics-text", labels.NewSymbolTable(), textparse.ParserOptions{})
	if err != nil {
		return []string{err.Error()}
	}
	var problems []string
	var family string
	var typ model.MetricType
	for {
		entry, err := p.Next()
		if err == io.EOF {
			return problems
		} else if err != nil {
			return append(problems, "prometheus' parser: "+err.Error())
		}
		switch entry {
		case textparse.EntryType:
			n, mt := p.Type()
			family, typ = string(n), mt
		case textparse.EntrySeries:
			var ls labels.Labels
			p.Labels(&ls)
			name := ls.Get(labels.MetricName)
			if dup, ok := ls.HasDuplicateLabelNames(); ok {
				problems = append(problems, ls.String()+": duplicate label "+dup)
			}
			ls.Range(func(l labels.Label) {
				if l.Name != labels.MetricName && strings.HasPrefix(l.Name, "__") {
					problems = append(problems, ls.String()+": reserved label "+l.Name)
				}
			})
			if typ == model.MetricTypeHistogram && (name == family+"_bucket") != ls.Has("le") {
				problems = append(problems, ls.String()+": le off a histogram's buckets")
			}
			if typ == model.MetricTypeSummary && (name == family) != ls.Has("quantile") {
				problems = append(problems, ls.String()+": quantile off a summary's quantiles")
			}
		}
	}
}
