package graphite

import (
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/statsbridge/statsbridge/cork"
	"github.com/statsbridge/statsbridge/model"
	"github.com/statsbridge/statsbridge/model/modeltest"
)

var start = time.Unix(1_800_000_000, 0)

// encode renders one flush of lines and returns the carbon lines, sorted.
func encode(t *testing.T, opts Options, lines ...string) []string {
	t.Helper()
	return modeltest.Lines(modeltest.Flush(modeltest.Model(t, lines...), modeltest.Interval(start)), NewEncoder(opts).Encode)
}

func TestLayouts(t *testing.T) {
	lines := []string{"api.hits:3|c", "api.temp:21.5|g", "api.req:2|c|#env:prod"}
	tests := []struct {
		name string
		opts Options
		want []string
	}{
		{"paths, delta counters at the interval start", Options{Layout: Paths}, []string{
			"api.hits 3 1800000000", "api.req;env=prod 2 1800000000", "api.temp 21.5 1800000000"}},
		{"paths, cumulative at the flush time", Options{Layout: Paths, Cumulative: true, Prefix: "relay1."}, []string{
			"relay1.api.hits 3 1800000010", "relay1.api.req;env=prod 2 1800000010", "relay1.api.temp 21.5 1800000010"}},
		{"etsy, legacy namespace: rate per second and count", Options{Layout: Etsy, LegacyNamespace: true}, []string{
			"stats.api.hits 0.3 1800000000", "stats.api.req;env=prod 0.2 1800000000", "stats.gauges.api.temp 21.5 1800000000",
			"stats_counts.api.hits 3 1800000000", "stats_counts.api.req;env=prod 2 1800000000"}},
		{"etsy, new namespace", Options{Layout: Etsy}, []string{
			"stats.counters.api.hits.count 3 1800000000", "stats.counters.api.hits.rate 0.3 1800000000",
			"stats.counters.api.req.count;env=prod 2 1800000000", "stats.counters.api.req.rate;env=prod 0.2 1800000000",
			"stats.gauges.api.temp 21.5 1800000000"}},
		{"tags: family;label=value, external labels where the series has none", Options{Layout: Tags,
			ExternalLabels: model.Labels{{Name: "env", Value: "dev"}, {Name: "instance", Value: "relay1"}}}, []string{
			"api_hits;env=dev;instance=relay1 3 1800000000", "api_req;env=prod;instance=relay1 2 1800000000",
			"api_temp;env=dev;instance=relay1 21.5 1800000000"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := encode(t, tt.opts, lines...); strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

// TestTagsAreSortedWithLeInPlace: a line's tags are the series' (a tag sent
// empty is none, so the external label of its name applies), the external
// labels and the line's le or quantile, all sorted by name.
func TestTagsAreSortedWithLeInPlace(t *testing.T) {
	external := model.Labels{{Name: "instance", Value: "relay1"}, {Name: "zone", Value: "dev"}}
	got := encode(t, Options{Layout: Tags, ExternalLabels: external},
		"lat:100|ms|#Zone:x,zone:", "g:1|g|#a:1,instance:own")
	want := map[string]bool{
		"lat_seconds_bucket;Zone=x;instance=relay1;le=0.1;zone=dev 1 1800000000": true,
		"lat_seconds_sum;Zone=x;instance=relay1;zone=dev 0.1 1800000000":         true,
		"g;a=1;instance=own;zone=dev 1 1800000000":                               true,
	}
	for _, l := range got {
		delete(want, l)
	}
	if len(want) > 0 {
		t.Errorf("missing %v from\n%s", want, strings.Join(got, "\n"))
	}
}

func TestProsodyNamesAreSanitisedAsCarbonRequires(t *testing.T) {
	got := encode(t, Options{Layout: Paths},
		"prosody.prosody_mod_s2s.closed.:unknown.incoming.not-well-formed:1|c",
		"prosody.prosody_mod_csi_simple.flushes.localhost.subscription request:1|c",
		"prosody.prosody_mod_x.a/b  c:2|g")
	want := []string{
		"prosody.prosody_mod_csi_simple.flushes.localhost.subscription_request 1 1800000000",
		"prosody.prosody_mod_s2s.closed.unknown.incoming.not-well-formed 1 1800000000",
		"prosody.prosody_mod_x.a-b_c 2 1800000000",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestValuesCarbonCannotStoreAreSkipped(t *testing.T) {
	m := modeltest.Model(t, "a:nan|g", "b:inf|g", "c:1|g")
	enc := NewEncoder(Options{Layout: Paths})
	var data string
	buf := cork.NewBuffer(cork.Limits{Records: 10, Bytes: 1 << 20}, func(b cork.Batch) { data += string(b.Data) })
	enc.Encode(modeltest.Flush(m, modeltest.Interval(start)), buf)
	if data != "c 1 1800000000\n" || enc.Skipped.Load() != 2 {
		t.Errorf("sent %q, skipped %d", data, enc.Skipped.Load())
	}
}

func TestDeleteIdle(t *testing.T) {
	m := modeltest.Model(t, "busy:1|c", "idle:1|c")
	modeltest.Flush(m, modeltest.Interval(start))
	modeltest.Feed(t, m, "busy:1|c")
	f := modeltest.Flush(m, modeltest.Interval(start.Add(10*time.Second)))
	for _, tt := range []struct {
		deleteIdle bool
		want       string
	}{
		{false, "busy 1 1800000010\nidle 0 1800000010\n"},
		{true, "busy 1 1800000010\n"},
	} {
		var data string
		buf := cork.NewBuffer(cork.Limits{Records: 10, Bytes: 1 << 20}, func(b cork.Batch) { data += string(b.Data) })
		buf.Cork()
		NewEncoder(Options{Layout: Paths, DeleteIdle: tt.deleteIdle}).Encode(f, buf)
		buf.Uncork()
		if data != tt.want {
			t.Errorf("delete_idle=%v: %q, want %q", tt.deleteIdle, data, tt.want)
		}
	}
}

func TestTimersAndSets(t *testing.T) {
	lines := []string{"api.time:100|ms", "api.time:300|ms", "users:a|s", "users:b|s", "users:a|s"}
	tests := []struct {
		name string
		opts Options
		want []string
	}{
		{"etsy: Etsy's timer statistics in ms, sets as .count", Options{Layout: Etsy, LegacyNamespace: true}, []string{
			"stats.sets.users.count 2 1800000000",
			"stats.timers.api.time.count 2 1800000000",
			"stats.timers.api.time.count_90 2 1800000000",
			"stats.timers.api.time.count_ps 0.2 1800000000",
			"stats.timers.api.time.lower 100 1800000000",
			"stats.timers.api.time.mean 200 1800000000",
			"stats.timers.api.time.mean_90 200 1800000000",
			"stats.timers.api.time.median 200 1800000000",
			"stats.timers.api.time.std 100 1800000000",
			"stats.timers.api.time.sum 400 1800000000",
			"stats.timers.api.time.sum_90 400 1800000000",
			"stats.timers.api.time.sum_squares 100000 1800000000",
			"stats.timers.api.time.sum_squares_90 100000 1800000000",
			"stats.timers.api.time.upper 300 1800000000",
			"stats.timers.api.time.upper_90 300 1800000000",
		}},
		{"tags: the OpenMetrics histogram, per interval", Options{Layout: Tags}, []string{
			"api_time_seconds_bucket;le=+Inf 2 1800000000",
			"api_time_seconds_bucket;le=0.005 0 1800000000",
			"api_time_seconds_bucket;le=0.01 0 1800000000",
			"api_time_seconds_bucket;le=0.025 0 1800000000",
			"api_time_seconds_bucket;le=0.05 0 1800000000",
			"api_time_seconds_bucket;le=0.1 1 1800000000",
			"api_time_seconds_bucket;le=0.25 1 1800000000",
			"api_time_seconds_bucket;le=0.5 2 1800000000",
			"api_time_seconds_bucket;le=1 2 1800000000",
			"api_time_seconds_bucket;le=10 2 1800000000",
			"api_time_seconds_bucket;le=2.5 2 1800000000",
			"api_time_seconds_bucket;le=5 2 1800000000",
			"api_time_seconds_count 2 1800000000",
			"api_time_seconds_sum 0.4 1800000000",
			"users 2 1800000000",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := encode(t, tt.opts, lines...); strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestAnIdleTimerReportsACountOfZero(t *testing.T) {
	m := modeltest.Model(t, "api.time:100|ms")
	modeltest.Flush(m, modeltest.Interval(start))
	got := modeltest.Lines(modeltest.Flush(m, modeltest.Interval(start)), NewEncoder(Options{Layout: Etsy, LegacyNamespace: true}).Encode)
	want := "stats.timers.api.time.count 0 1800000000\nstats.timers.api.time.count_ps 0 1800000000"
	if strings.Join(got, "\n") != want {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), want)
	}
}

// TestProsodyHistogramsKeepProsodysNames: in the paths layout a Prosody
// histogram is written under the names Prosody sent, sanitised as Etsy does
// ("+Inf" loses its "+").
func TestProsodyHistogramsKeepProsodysNames(t *testing.T) {
	const h = "prosody.prosody_mod_smacks.tx_acked_stanzas.localhost"
	m := modeltest.ProsodyModel(t, h+".bucket.2:1|c", h+".bucket.4:1|c", h+".bucket.8:1|c", h+".bucket.16:1|c",
		h+".bucket.32:1|c", h+".bucket.+Inf:1|c", h+".count:1|c", h+".sum:2|g")
	got := modeltest.Lines(modeltest.Flush(m, modeltest.Interval(start)), NewEncoder(Options{Layout: Paths}).Encode)
	want := []string{
		h + ".bucket.0 0 1800000000", h + ".bucket.1 0 1800000000", h + ".bucket.16 1 1800000000",
		h + ".bucket.2 1 1800000000", h + ".bucket.32 1 1800000000", h + ".bucket.4 1 1800000000",
		h + ".bucket.8 1 1800000000", h + ".bucket.Inf 1 1800000000", h + ".count 1 1800000000", h + ".sum 2 1800000000",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestKeysAreSanitisedAsEtsy: AppendSanitized is Etsy statsd's
// sanitizeKeyName, whose \s is JavaScript's: Unicode whitespace, runs of it
// one '_'. Every other character outside [a-zA-Z0-9_.;=-] goes, '/' aside.
func TestKeysAreSanitisedAsEtsy(t *testing.T) {
	tests := []struct{ key, want string }{
		{"api.hits", "api.hits"},
		{"a b", "a_b"},
		{"a \t b", "a_b"},
		{"a\u00a0b", "a_b"},              // no-break space
		{"a \u00a0\u2003\u3000b", "a_b"}, // one run of spaces of every width
		{"a\u1680b\u2000c\u200ad\u2028e\u2029f\u202fg\u205fh\ufeffi", "a_b_c_d_e_f_g_h_i"},
		{"a\u200bb", "ab"}, // a zero-width space is not whitespace to JavaScript
		{"a\u0085b", "ab"}, // nor is NEL
		{"caf\u00e9/m\u00fcnchen", "caf-mnchen"},
		{"a \u00e9 b", "a__b"}, // a removed character splits the run
		{"x;k=v,y:z!", "x;k=vyz"},
		{"\u00a0", "_"},
		{"\xff\xfe", ""},
		{"api.hits/s", "api.hits-s"}, // clean up to a character that is not
		{"api.hits\u00a0now", "api.hits_now"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := string(AppendSanitized(nil, tt.key)); got != tt.want {
			t.Errorf("%q: got %q, want %q", tt.key, got, tt.want)
		}
	}
}

// TestATabInANameIsAnUnderscore: the whole way from a line, as Etsy statsd
// writes it.
func TestATabInANameIsAnUnderscore(t *testing.T) {
	got := encode(t, Options{Layout: Paths}, "a\tb:1|c", "c\u00a0d:2|g")
	want := "a_b 1 1800000000\nc_d 2 1800000000"
	if strings.Join(got, "\n") != want {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), want)
	}
}

// TestUnicodeWhitespaceInTagsIsAnUnderscore: carbon splits a line on
// whitespace, so no space of any width may reach it inside a tag either.
func TestUnicodeWhitespaceInTagsIsAnUnderscore(t *testing.T) {
	got := encode(t, Options{Layout: Paths}, "a:1|c|#k\u00a0x:v\u2003w")
	want := "a;k_x=v_w 1 1800000000"
	if strings.Join(got, "\n") != want {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), want)
	}
}

// TestValuesAreWrittenAsEtsyWritesThem: Etsy statsd writes JavaScript's
// String(v): no exponent from 1e-6 up to 1e21, and a short one outside.
func TestValuesAreWrittenAsEtsyWritesThem(t *testing.T) {
	got := encode(t, Options{Layout: Paths}, "a:1234567|g", "b:1.5e-7|g", "c:1e21|g", "d:0.000001|g", "e:-2.5e-8|g",
		"f:123456789012345680000|g", "g:1.7976931348623157e308|g", "h:0.30000000000000004|g", "i:-0|g", "j:5e-324|g",
		"k:999999999999999|g", "l:1e15|g", "m:-42|g", "n:9007199254740993|g", "o:-1e300|g")
	want := []string{"a 1234567 1800000000", "b 1.5e-7 1800000000", "c 1e+21 1800000000", "d 0.000001 1800000000",
		"e -2.5e-8 1800000000", "f 123456789012345680000 1800000000", "g 1.7976931348623157e+308 1800000000",
		"h 0.30000000000000004 1800000000", "i 0 1800000000", "j 5e-324 1800000000",
		"k 999999999999999 1800000000", "l 1000000000000000 1800000000", "m -42 1800000000",
		"n 9007199254740992 1800000000", "o -1e+300 1800000000"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestWholeNumbersAreWrittenAsTheirFloats: the integer path appendNumber
// takes for whole numbers writes what the float path would.
func TestWholeNumbersAreWrittenAsTheirFloats(t *testing.T) {
	values := []float64{1, -1, 7, 10, 100, 1234567, -987654321, 1 << 40, 999999999999999, -999999999999999}
	for v := 3.0; v < 1e15; v *= 7.3 {
		values = append(values, math.Trunc(v), -math.Trunc(v))
	}
	for _, v := range values {
		want := strconv.FormatFloat(v, 'f', -1, 64)
		if got := string(appendNumber(nil, v)); got != want {
			t.Errorf("%v: got %q, want %q", v, got, want)
		}
	}
}
