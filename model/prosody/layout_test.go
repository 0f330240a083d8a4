package prosody

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/statsbridge/statsbridge/model"
)

// uploadBounds is mod_http_file_share's upload-size layout for a size
// limit, as its Lua computes it: powers of 4 from 1024, up to the first at
// or above the limit.
func uploadBounds(limit float64) []string {
	var bounds []string
	for exp := 1024.0; ; exp *= 4 {
		bounds = append(bounds, strconv.FormatFloat(exp, 'f', -1, 64))
		if exp >= limit {
			return bounds
		}
	}
}

// smacks13 is Prosody 13.0's resumption_age layout (mod_smacks.lua).
var smacks13 = []string{"0", "1", "12", "60", "360", "900", "1440", "3600", "14400", "86400"}

// wireObservation is what util/statsd.lua sends for one observation of a
// histogram series: +1 on every bucket at or above it (le with "." as "_"),
// then +1 on the count.
func wireObservation(series string, bounds []string, v float64) []string {
	var lines []string
	for _, b := range append(bounds, "+Inf") {
		bound, _ := strconv.ParseFloat(b, 64)
		if b == "+Inf" || v <= bound {
			lines = append(lines, series+".bucket."+strings.ReplaceAll(b, ".", "_")+":1|c")
		}
	}
	return append(lines, series+".count:1|c")
}

// shown is a scrape's layout and counts of one series, "le=count ...", as
// Prosody's own page would show them.
func shown(t *testing.T, m *model.Model, family, host string) string {
	t.Helper()
	var out string
	m.Gather(func(f *model.Family, points []model.Point) {
		if f.Name != family {
			return
		}
		for _, p := range points {
			if p.Series.Labels().Get("host") != host {
				continue
			}
			var parts []string
			for i, b := range p.Histogram.Layout {
				parts = append(parts, fmt.Sprintf("%s=%v", b.LE, p.Histogram.Buckets[i]))
			}
			out = strings.Join(parts, " ")
		}
	})
	return out
}

// prosodysPage is what Prosody's own page (internal backend) shows for a
// series with that layout after those observations.
func prosodysPage(bounds []string, observed ...float64) string {
	var parts []string
	for _, b := range append(bounds, "+Inf") {
		bound, _ := strconv.ParseFloat(b, 64)
		n := 0
		for _, v := range observed {
			if b == "+Inf" || v <= bound {
				n++
			}
		}
		parts = append(parts, fmt.Sprintf("%s=%d", b, n))
	}
	return strings.Join(parts, " ")
}

// TestLayoutsLearnedFromTheWire feeds the model what Prosody sends for
// layouts the catalog does not have as such, and expects each series
// exposed exactly as Prosody's own page shows it: no bucket the sender
// lacks (a histogram that falls after its last bucket breaks
// histogram_quantile), none it has missing.
func TestLayoutsLearnedFromTheWire(t *testing.T) {
	const upload = "prosody.prosody_mod_http_file_share.upload_bytes."
	const smacks = "prosody.prosody_mod_smacks.resumption_age_seconds."
	tests := []struct {
		what    string
		family  string
		series  string
		bounds  []string // the sender's
		observe []float64
	}{
		{"http_file_share, 3 MiB limit", "prosody_mod_http_file_share__upload_bytes", upload + "upload_localhost",
			uploadBounds(3 << 20), []float64{5000}},
		{"http_file_share, 100 MiB limit", "prosody_mod_http_file_share__upload_bytes", upload + "upload_localhost",
			uploadBounds(100 << 20), []float64{5000}},
		{"http_file_share, 100 MiB limit, a large upload first", "prosody_mod_http_file_share__upload_bytes", upload + "upload_localhost",
			uploadBounds(100 << 20), []float64{50 << 20, 300}},
		{"http_file_share, the default 10 MiB", "prosody_mod_http_file_share__upload_bytes", upload + "upload_localhost",
			uploadBounds(10 << 20), []float64{5000}},
		{"smacks on 13.0, resumed after 5 s", "prosody_mod_smacks__resumption_age_seconds", smacks + "localhost",
			smacks13, []float64{5}},
		{"smacks on 13.0, resumed after 1000 s", "prosody_mod_smacks__resumption_age_seconds", smacks + "localhost",
			smacks13, []float64{1000, 0.5}},
		{"smacks on 0.12, resumed after 5 s", "prosody_mod_smacks__resumption_age_seconds", smacks + "localhost",
			[]string{"0", "1", "2", "5", "10", "30", "60", "120", "300", "600"}, []float64{5}},
	}
	for _, tt := range tests {
		t.Run(tt.what, func(t *testing.T) {
			r := newRelay()
			host := "localhost"
			if strings.Contains(tt.series, "upload") {
				host = "upload_localhost"
			}
			for i, v := range tt.observe {
				r.send(t, wireObservation(tt.series, tt.bounds, v)...)
				if got, want := shown(t, r.m, tt.family, host), prosodysPage(tt.bounds, tt.observe[:i+1]...); got != want {
					t.Errorf("after %v:\n got %s\nwant %s", tt.observe[:i+1], got, want)
				}
			}
		})
	}
}

// TestEachSeriesHasItsSendersLayout: two Prosodies with different size
// limits send one family with two layouts. (Within one Prosody a family
// keeps the layout of the component that registered it first.)
func TestEachSeriesHasItsSendersLayout(t *testing.T) {
	r := newRelay()
	const family = "prosody_mod_http_file_share__upload_bytes"
	small, large := uploadBounds(3<<20), uploadBounds(100<<20)
	r.send(t, wireObservation("prosody.prosody_mod_http_file_share.upload_bytes.small", small, 5000)...)
	r.send(t, wireObservation("prosody.prosody_mod_http_file_share.upload_bytes.large", large, 5000)...)
	if got, want := shown(t, r.m, family, "small"), prosodysPage(small, 5000); got != want {
		t.Errorf("3 MiB:\n got %s\nwant %s", got, want)
	}
	if got, want := shown(t, r.m, family, "large"), prosodysPage(large, 5000); got != want {
		t.Errorf("100 MiB:\n got %s\nwant %s", got, want)
	}
}

// TestALayoutThatShrinksAtARestart: Prosody restarts with a lower size
// limit; the bounds it no longer has stop being shown once an observation
// leaves them out, so the histogram stays monotonic.
func TestALayoutThatShrinksAtARestart(t *testing.T) {
	r := newRelay()
	const series = "prosody.prosody_mod_http_file_share.upload_bytes.upload_localhost"
	r.send(t, wireObservation(series, uploadBounds(100<<20), 5000)...)
	r.send(t, wireObservation(series, uploadBounds(3<<20), 5000)...)
	got := shown(t, r.m, "prosody_mod_http_file_share__upload_bytes", "upload_localhost")
	if want := "1024=0 4096=0 16384=2 65536=2 262144=2 1048576=2 4194304=2 +Inf=2"; got != want {
		t.Errorf("\n got %s\nwant %s", got, want)
	}
}

// TestNoSeriesLearnsWithoutBound: a sender inventing bounds is held to 64
// per series, and the lines past that are dropped and counted.
func TestNoSeriesLearnsWithoutBound(t *testing.T) {
	r := newRelay()
	const series = "prosody.prosody_mod_smacks.resumption_age_seconds.localhost"
	var lines []string
	for i := range 100 {
		lines = append(lines, fmt.Sprintf("%s.bucket.%d_5:1|c", series, i))
	}
	r.send(t, lines...)
	r.send(t, series+".count:1|c")
	if n := strings.Count(shown(t, r.m, "prosody_mod_smacks__resumption_age_seconds", "localhost"), "="); n > 64 {
		t.Errorf("%d buckets shown", n)
	}
	if r.m.Dropped(model.DropMaxBuckets) == 0 {
		t.Error("no bucket line was counted as dropped")
	}
}

// TestMetricsURLLayoutIsTheFirstGuess: a page with bucket samples (a
// Prosody with the internal backend) tells a family's layout, which wins
// over the catalog's below the lowest bound the wire shows.
func TestMetricsURLLayoutIsTheFirstGuess(t *testing.T) {
	page := "# TYPE prosody_mod_http_file_share__upload_bytes histogram\n" +
		"# UNIT prosody_mod_http_file_share__upload_bytes bytes\n"
	for _, b := range append([]string{"100", "1000"}, uploadBounds(3 << 20)[2:]...) {
		page += `prosody_mod_http_file_share__upload_bytes_bucket{host="upload.localhost",le="` + b + `"} 0` + "\n"
	}
	page += `prosody_mod_http_file_share__upload_bytes_bucket{host="upload.localhost",le="+Inf"} 0` + "\n# EOF\n"
	found, err := parsePage([]byte(page), "application/openmetrics-text")
	if err != nil {
		t.Fatal(err)
	}
	state := NewState()
	state.SetDiscovered(found)
	m := model.New(model.Options{MaxSeries: 100, MaxSeriesPerFamily: 100,
		Mappers: []model.Mapper{NewMapper("prosody", Builtin(), []string{"upload.localhost"}, state)}})
	r := &relay{m: m}
	r.send(t, wireObservation("prosody.prosody_mod_http_file_share.upload_bytes.upload_localhost", uploadBounds(3<<20), 5000)...)
	got := shown(t, m, "prosody_mod_http_file_share__upload_bytes", "upload.localhost")
	if want := "100=0 1000=0 16384=1 65536=1 262144=1 1048576=1 4194304=1 +Inf=1"; got != want {
		t.Errorf("\n got %s\nwant %s", got, want)
	}
}
