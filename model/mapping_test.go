package model

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/statsbridge/statsbridge/ingest"
)

func loadDocsMapping(t *testing.T) *FileMapper {
	t.Helper()
	fm, err := LoadMappingFile("testdata/statsd_exporter_docs.yml")
	if err != nil {
		t.Fatal(err)
	}
	return fm
}

func mappedModel(t *testing.T, fm *FileMapper, now func() time.Time) *Model {
	return New(Options{MaxSeries: 1000, MaxSeriesPerFamily: 100, Mappers: []Mapper{fm}, Observers: fm.Observers(), Now: now})
}

// pointsByFamily collects one interval and returns its points by family.
func pointsByFamily(m *Model) map[string][]Point {
	out := map[string][]Point{}
	for _, p := range collect(m) {
		out[p.Series.Family().Name] = append(out[p.Series.Family().Name], p)
	}
	return out
}

// TestStatsdExporterDocsMapping loads mappings taken from statsd_exporter's
// README and checks each maps as the README says.
func TestStatsdExporterDocsMapping(t *testing.T) {
	m := mappedModel(t, loadDocsMapping(t), nil)
	feed(t, m,
		"test.dispatcher.FooProcessor.send.success:1|c",
		"foo_product.signup.facebook.failure:1|c",
		"test.web-server.foo.bar:1|c",
		"http.request.200:1|c",
		"test.timing.a.b.c:100|ms",
		"test.histogram.a.b.c:30|ms",
		"test.foo.x:1|c",
		"test.foo.y:1|g",
		"web1.app--http.status.500.count:1|c",
		"honor.x:1|c|#env:prod",
		"honor.y:1|c",
		"foo.latency_ms:250|g",
		"other.timer:5|ms",
		"noisy.thing:1|c",
	)
	got := pointsByFamily(m)
	tests := []struct {
		family string
		typ    Type
		labels string // the series' labels, as name=value joined by ","
		help   string
	}{
		{"dispatcher_events", Counter, "action=send,job=test_dispatcher,outcome=success,processor=FooProcessor", ""},
		{"signup_events", Counter, "job=foo_product_server,outcome=failure,provider=facebook", ""},
		// Unmatched: the name with non-alphanumerics as underscores, no labels.
		{"test_web_server_foo_bar", Counter, "", ""},
		{"http_requests", Counter, "code=200", "Total number of http requests"},
		{"my_timer", Summary, "job=a_server,outcome=c,provider=b", ""},
		{"my_histogram", Histogram, "job=a_server,outcome=c,provider=b", ""},
		{"test_foo", Counter, "provider=x", ""},
		// match_metric_type: counter, so a gauge of that name is unmatched.
		{"test_foo_y", Gauge, "", ""},
		// Counter families drop "_total"; it is exposed as request_total.
		{"request", Counter, "code=500,exec=app,hostname=web1,protocol=http", ""},
		{"foo_latency_seconds", Gauge, "", ""},
		// Unmatched observers take the defaults: a histogram with its buckets.
		{"other_timer", Histogram, "", ""},
	}
	for _, tt := range tests {
		pts := got[tt.family]
		if len(pts) != 1 {
			t.Errorf("%s: %d series, want 1 (families: %v)", tt.family, len(pts), keys(got))
			continue
		}
		f := pts[0].Series.Family()
		if f.Type != tt.typ || labelText(pts[0].Series.Labels()) != tt.labels || (tt.help != "" && f.Help != tt.help) {
			t.Errorf("%s: type %v labels %q help %q; want %v %q %q", tt.family, f.Type, labelText(pts[0].Series.Labels()), f.Help, tt.typ, tt.labels, tt.help)
		}
	}
	if honored := got["honored"]; len(honored) != 2 || !slices.ContainsFunc(honored, func(p Point) bool { return p.Series.Labels().Get("env") == "prod" }) ||
		!slices.ContainsFunc(honored, func(p Point) bool { return p.Series.Labels().Get("env") == "default" }) {
		t.Errorf("honor_labels: a tag should override the mapping's default label: %v", honored)
	}
	if _, ok := got["dropped"]; ok || m.Dropped(DropMapping) != 1 {
		t.Errorf("action: drop: family present %v, dropped %d", ok, m.Dropped(DropMapping))
	}
	if v := got["foo_latency_seconds"][0].Value; v != 0.25 {
		t.Errorf("scale: 0.001 of 250 = %v", v)
	}

	timer := got["my_timer"][0]
	sum := timer.Series.Family().Summary
	if !slices.Equal(sum.Quantiles, []float64{0.99, 0.95, 0.9, 0.5}) || sum.MaxAge != 30*time.Second || sum.AgeBuckets != 3 {
		t.Errorf("summary_options: %+v", sum)
	}
	if timer.Summary == nil || timer.Summary.Count != 1 || timer.Summary.Sum != 0.1 {
		t.Errorf("my_timer holds %+v, want one observation of 0.1s", timer.Summary)
	}
	hist := got["my_histogram"][0]
	if les := bucketLEs(hist.Series.Family().Buckets); les != "0.01,0.025,0.05,0.1,+Inf" {
		t.Errorf("histogram_options.buckets: %s", les)
	}
	if h := hist.Histogram; h == nil || h.Buckets[1] != 0 || h.Buckets[2] != 1 || h.Count != 1 {
		t.Errorf("30ms should land in le=0.05: %+v", h)
	}
	if les := bucketLEs(got["other_timer"][0].Series.Family().Buckets); les != "0.1,1,10,+Inf" {
		t.Errorf("defaults' buckets: %s", les)
	}
}

func TestMappingTTL(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	m := mappedModel(t, loadDocsMapping(t), func() time.Time { return now })
	feed(t, m, "short.lived.x:1|c", "http.request.200:1|c")
	now = now.Add(5 * time.Minute)
	collectAt(m, now)
	fams := pointsByFamily(m)
	if _, ok := fams["short_lived"]; ok {
		t.Error("a series with ttl 1m was kept after 5m idle")
	}
	if _, ok := fams["http_requests"]; !ok {
		t.Error("a series under the defaults' ttl of 2h expired after 5m")
	}
}

func TestBadMappingFilesAreRefused(t *testing.T) {
	for _, yaml := range []string{
		"mappings:\n- match: a.*\n  name: x\n  timer_type: histogram\n", // statsd_exporter knows no timer_type
		"mappings:\n- match: a.*\n  name: x\n  buckets: [1, 2]\n",       // nor a bare buckets
		"mappings:\n- match: a.*\n",                                     // no name
		"mappings:\n- match: '('\n  match_type: regex\n  name: x\n",     // a bad regex
		"mappings: [",
	} {
		if _, err := ParseMapping(yaml); err == nil {
			t.Errorf("accepted:\n%s", yaml)
		}
	}
	if _, err := LoadMappingFile("testdata/no-such-file.yml"); err == nil || !strings.Contains(err.Error(), "no-such-file") {
		t.Errorf("a missing file: %v", err)
	}
}

// TestReloadRemapsAndKeepsState: after SetMappers, names map anew; series
// made before keep their totals.
func TestReloadRemapsAndKeepsState(t *testing.T) {
	m := New(Options{MaxSeries: 100, MaxSeriesPerFamily: 100})
	feed(t, m, "app.hits:2|c")
	fm, err := ParseMapping("mappings:\n- match: app.*\n  name: app_events_total\n  labels:\n    kind: $1\n")
	if err != nil {
		t.Fatal(err)
	}
	m.SetMappers([]Mapper{fm}, fm.Observers())
	feed(t, m, "app.hits:3|c")
	got := pointsByFamily(m)
	if p := got["app_hits"]; len(p) != 1 || p[0].Value != 2 {
		t.Errorf("the series made before the reload: %v", p)
	}
	if p := got["app_events"]; len(p) != 1 || p[0].Value != 3 || p[0].Series.Labels().Get("kind") != "hits" {
		t.Errorf("the series the new mapping makes: %v", p)
	}
}

func TestLabelLimits(t *testing.T) {
	m := New(Options{MaxSeries: 100, MaxSeriesPerFamily: 100, MaxLabels: 2, MaxNameLength: 10, MaxLabelValueLength: 5})
	feed(t, m, "ok:1|c|#a:1,b:2", "many:1|c|#a:1,b:2,c:3", "waytoolongname:1|c", "long:1|c|#a:123456")
	got := pointsByFamily(m)
	if len(got) != 1 || got["ok"] == nil {
		t.Errorf("families %v, want only ok", keys(got))
	}
	for r, want := range map[DropReason]uint64{DropTooManyLabels: 1, DropNameTooLong: 1, DropLabelValueTooLong: 1} {
		if m.Dropped(r) != want {
			t.Errorf("%v: %d", r, m.Dropped(r))
		}
	}
}

func labelText(ls Labels) string {
	parts := make([]string, len(ls))
	for i, l := range ls {
		parts[i] = l.Name + "=" + l.Value
	}
	return strings.Join(parts, ",")
}

func bucketLEs(bs []Bucket) string {
	les := make([]string, len(bs))
	for i, b := range bs {
		les[i] = b.LE
	}
	return strings.Join(les, ",")
}

func keys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// TestMappedNamesWithInvalidUTF8DoNotPanic: statsd_exporter's escaping
// panics on invalid UTF-8; a capture carrying it must still give a valid
// name (ingest rejects such lines, but the mapper does not rely on that).
func TestMappedNamesWithInvalidUTF8DoNotPanic(t *testing.T) {
	fm, err := ParseMapping("mappings:\n- match: a.*\n  name: \"x_$1\"\n")
	if err != nil {
		t.Fatal(err)
	}
	mp, ok := fm.Map("a.\xff\xfe", ingest.Counter, nil)
	if !ok || mp.Family.Name != "x__" {
		t.Errorf("got %q, %v; want x__", mp.Family.Name, ok)
	}
}
