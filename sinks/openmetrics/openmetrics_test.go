package openmetrics

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"

	"github.com/statsbridge/statsbridge/model"
	"github.com/statsbridge/statsbridge/model/modeltest"
)

func TestWrite(t *testing.T) {
	m := modeltest.Model(t, "hits:3|c|#path:/a\"b\\c", "temp:21.5|g", "inf:inf|g")
	var b bytes.Buffer
	if err := Write(&b, m, Options{}); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"# TYPE hits counter\n",
		`hits_total{path="/a\"b\\c"} 3` + "\n",
		"# TYPE temp gauge\n",
		"\ntemp 21.5\n",
		"inf +Inf\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if !strings.HasSuffix(out, "# EOF\n") {
		t.Errorf("no # EOF:\n%s", out)
	}
	if !strings.Contains(out, `hits_created{path="/a\"b\\c"} `) {
		t.Errorf("no _created:\n%s", out)
	}
	mustParseAsOpenMetrics(t, b.Bytes())
}

func TestHandlerNegotiatesAndLimitsAccess(t *testing.T) {
	m := modeltest.Model(t, "hits:3|c")
	loopback := netip.MustParsePrefix("127.0.0.0/8")
	proxy := netip.MustParsePrefix("10.0.0.1/32")
	h := NewHandler(m, Access{Allow: []netip.Prefix{loopback, netip.MustParsePrefix("192.168.0.0/16")}, TrustedProxies: []netip.Prefix{proxy}},
		Options{}, slog.New(slog.DiscardHandler))
	tests := []struct {
		name, remote, accept, xff string
		status                    int
		wantType, wantBody        string
	}{
		{"OpenMetrics when asked", "127.0.0.1:5000", "application/openmetrics-text; version=1.0.0", "", 200,
			"application/openmetrics-text", "hits_total 3\n"},
		{"Prometheus text otherwise", "127.0.0.1:5000", "*/*", "", 200, "text/plain; version=0.0.4", "# TYPE hits_total counter\nhits_total 3\n"},
		{"Prometheus' own Accept: OpenMetrics", "127.0.0.1:5000",
			"application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
			"", 200, "application/openmetrics-text", "hits_total 3\n"},
		{"protobuf first (native histograms): the next choice, OpenMetrics", "127.0.0.1:5000",
			"application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,text/plain;version=0.0.4;q=0.4",
			"", 200, "application/openmetrics-text", "hits_total 3\n"},
		{"outside the allow list", "203.0.113.9:5000", "", "", 403, "", ""},
		{"X-Forwarded-For from an untrusted peer is ignored", "203.0.113.9:5000", "", "127.0.0.1", 403, "", ""},
		{"a trusted proxy's X-Forwarded-For is believed", "10.0.0.1:5000", "", "192.168.1.1", 200, "", "hits_total 3"},
		{"a trusted proxy forwarding an outsider", "10.0.0.1:5000", "", "203.0.113.9", 403, "", ""},
		{"the client named last before the trusted proxies", "10.0.0.1:5000", "", "192.168.1.1, 203.0.113.9", 403, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
			req.RemoteAddr = tt.remote
			if tt.accept != "" {
				req.Header.Set("Accept", tt.accept)
			}
			if tt.xff != "" {
				req.Header.Set("X-Forwarded-For", tt.xff)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d", rec.Code, tt.status)
			}
			if !strings.HasPrefix(rec.Header().Get("Content-Type"), tt.wantType) {
				t.Errorf("Content-Type %q, want %q", rec.Header().Get("Content-Type"), tt.wantType)
			}
			if !strings.Contains(rec.Body.String(), tt.wantBody) {
				t.Errorf("body lacks %q:\n%s", tt.wantBody, rec.Body.String())
			}
		})
	}
}

// TestClientBehindTrustedProxies: the client is the right-most address
// that is not a trusted proxy, across every X-Forwarded-For line in order
// (HAProxy appends a line of its own rather than extending the client's),
// so whatever a client writes to the left of it is never believed.
func TestClientBehindTrustedProxies(t *testing.T) {
	access := Access{
		Allow:          []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("192.168.0.0/16")},
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24"), netip.MustParsePrefix("::1/128")},
	}
	tests := []struct {
		name    string
		remote  string
		xff     []string // one header line each
		client  string   // "" when no client could be named
		allowed bool
	}{
		{"a direct scraper", "127.0.0.1:5000", nil, "127.0.0.1", true},
		{"an untrusted peer's X-Forwarded-For is ignored", "203.0.113.9:5000", []string{"127.0.0.1"}, "203.0.113.9", false},
		{"a trusted proxy without X-Forwarded-For is the client", "10.0.0.1:5000", nil, "10.0.0.1", false},
		{"one line from a trusted proxy", "10.0.0.1:5000", []string{"192.168.1.1"}, "192.168.1.1", true},
		{"a spoofed left-most value on one line", "10.0.0.1:5000", []string{"127.0.0.1, 203.0.113.9"}, "203.0.113.9", false},
		{"a spoofed first line, the proxy's own line after it", "10.0.0.1:5000", []string{"127.0.0.1", "203.0.113.9"}, "203.0.113.9", false},
		{"spoofed lists on several lines", "10.0.0.1:5000", []string{"127.0.0.1, 192.168.1.1", "127.0.0.2,203.0.113.9"}, "203.0.113.9", false},
		{"trusted proxies on the right are skipped across lines", "10.0.0.1:5000", []string{"203.0.113.9, 192.168.1.1", "10.0.0.2", "10.0.0.3"}, "192.168.1.1", true},
		{"a spoofed line before a chain of proxies", "10.0.0.1:5000", []string{"127.0.0.1", "203.0.113.9, 10.0.0.2"}, "203.0.113.9", false},
		{"an all-trusted chain names its left-most hop", "10.0.0.1:5000", []string{"10.0.0.3", "10.0.0.2"}, "10.0.0.3", false},
		{"an empty line the client sent is left of the client", "10.0.0.1:5000", []string{"", "192.168.1.1"}, "192.168.1.1", true},
		{"IPv4 mapped in IPv6 from a trusted IPv6 proxy", "[::1]:5000", []string{"::ffff:192.168.1.1"}, "192.168.1.1", true},
		{"garbage where the client should be refuses", "10.0.0.1:5000", []string{"192.168.1.1", "unknown"}, "", false},
		{"an address with a port refuses", "10.0.0.1:5000", []string{"192.168.1.1:4000"}, "", false},
		{"an empty hop refuses", "10.0.0.1:5000", []string{"192.168.1.1,"}, "", false},
		{"an empty line refuses when it is walked", "10.0.0.1:5000", []string{"192.168.1.1", ""}, "", false},
		{"garbage left of the client is never read", "10.0.0.1:5000", []string{"garbage", "192.168.1.1"}, "192.168.1.1", true},
		{"an unparsable peer refuses", "somewhere", nil, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
			req.RemoteAddr = tt.remote
			for _, line := range tt.xff {
				req.Header.Add("X-Forwarded-For", line)
			}
			client, allowed := access.client(req)
			got := ""
			if client.IsValid() {
				got = client.String()
			}
			if got != tt.client || allowed != tt.allowed {
				t.Errorf("client %q allowed %v, want %q allowed %v", got, allowed, tt.client, tt.allowed)
			}
		})
	}
}

func TestWriteHistogramsAndSummaries(t *testing.T) {
	m := modeltest.Model(t, "api.time:100|ms", "api.time:300|ms")
	var b bytes.Buffer
	if err := Write(&b, m, Options{}); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"# TYPE api_time_seconds histogram\n# UNIT api_time_seconds seconds\n",
		`api_time_seconds_bucket{le="0.1"} 1` + "\n",
		`api_time_seconds_bucket{le="0.25"} 1` + "\n",
		`api_time_seconds_bucket{le="0.5"} 2` + "\n",
		`api_time_seconds_bucket{le="1"} 2` + "\n",
		`api_time_seconds_bucket{le="+Inf"} 2` + "\n",
		"api_time_seconds_sum 0.4\napi_time_seconds_count 2\napi_time_seconds_created ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	mustParseAsOpenMetrics(t, b.Bytes())
}

// TestConflictingTypesNeverBreakTheExposition: a name sent as a counter,
// a gauge and a timer keeps its first family, and the page still parses.
func TestConflictingTypesNeverBreakTheExposition(t *testing.T) {
	m := modeltest.Model(t, "x:1|c", "x:2|g", "x:3|ms", "x:4|s", "x_total:5|c", "x:6|c|#k:v")
	var b bytes.Buffer
	if err := Write(&b, m, Options{}); err != nil {
		t.Fatal(err)
	}
	mustParseAsOpenMetrics(t, b.Bytes())
	for _, want := range []string{"# TYPE x counter\n", "\nx_total 6\n", `x_total{k="v"} 6`} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("lacks %q:\n%s", want, b.String())
		}
	}
}

// mustParseAsOpenMetrics fails t unless Prometheus' own OpenMetrics parser
// accepts the whole page.
func mustParseAsOpenMetrics(t *testing.T, page []byte) {
	t.Helper()
	p, err := textparse.New(page, "application/openmetrics-text", labels.NewSymbolTable(), textparse.ParserOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := p.Next(); err == io.EOF {
			return
		} else if err != nil {
			t.Fatalf("prometheus' parser: %v\n%s", err, page)
		}
	}
}

// TestLEFormats writes one Prosody histogram and one summary both ways:
// "prosody" keeps Prosody's spelling, and "float" is exactly what
// Prometheus 3's parser makes of that spelling as it scrapes.
func TestLEFormats(t *testing.T) {
	m := modeltest.ProsodyModel(t,
		"prosody.prosody_stats_collection_seconds.bucket.0_001:1|c", "prosody.prosody_stats_collection_seconds.bucket.1:1|c",
		"prosody.prosody_stats_collection_seconds.bucket.+Inf:1|c", "prosody.prosody_stats_collection_seconds.count:1|c",
		"prosody.prosody_mod_http_file_share.upload_bytes.upload_localhost.bucket.4194304:1|c",
		"prosody.prosody_mod_http_file_share.upload_bytes.upload_localhost.bucket.16777216:1|c",
		"prosody.prosody_mod_http_file_share.upload_bytes.upload_localhost.bucket.+Inf:1|c",
		"prosody.prosody_mod_http_file_share.upload_bytes.upload_localhost.count:1|c",
		"lat:5|ms")
	pages := map[model.LEFormat]string{}
	for _, f := range []model.LEFormat{model.LEAsSent, model.LEFloat} {
		var b bytes.Buffer
		if err := Write(&b, m, Options{LEFormat: f}); err != nil {
			t.Fatal(err)
		}
		pages[f] = b.String()
	}
	for _, want := range []string{`le="0.001"`, `le="1"`, `le="4194304"`} {
		if !strings.Contains(pages[model.LEAsSent], want) {
			t.Errorf("as sent: no %s in\n%s", want, pages[model.LEAsSent])
		}
	}
	// What Prometheus 3 stores from a scrape of the "prosody" page.
	stored := map[string]bool{}
	p, err := textparse.New([]byte(pages[model.LEAsSent]), "application/openmetrics-text", labels.NewSymbolTable(), textparse.ParserOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for {
		entry, err := p.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if entry == textparse.EntrySeries {
			var ls labels.Labels
			p.Labels(&ls)
			stored[ls.String()] = true
		}
	}
	// The "float" page, read without rewriting anything.
	written := map[string]bool{}
	for _, line := range strings.Split(pages[model.LEFloat], "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest, _ := strings.Cut(line, "{")
		ls := labels.NewBuilder(labels.EmptyLabels())
		if labelText, _, ok := strings.Cut(rest, "}"); ok {
			for _, pair := range strings.Split(labelText, ",") {
				k, v, _ := strings.Cut(pair, "=")
				ls.Set(k, strings.Trim(v, `"`))
			}
		} else {
			name, _, _ = strings.Cut(line, " ")
		}
		written[ls.Set("__name__", name).Labels().String()] = true
	}
	for s := range stored {
		if !written[s] {
			t.Errorf("Prometheus 3 stores %s; the float page lacks it", s)
		}
	}
	for s := range written {
		if !stored[s] {
			t.Errorf("the float page has %s; Prometheus 3 stores no such series", s)
		}
	}
	if !strings.Contains(pages[model.LEFloat], `le="4.194304e+06"`) || !strings.Contains(pages[model.LEFloat], `le="1.0"`) {
		t.Errorf("float page:\n%s", pages[model.LEFloat])
	}
}
