package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
)

// uploadProsody is a Prosody with one upload component. (Prosody gives a
// family one bucket layout, the first one registered: two components with
// different limits in one Prosody both get the layout of the first loaded.)
type uploadProsody struct {
	c2s, http int
}

// startUploadProsody runs a Prosody with an upload component limited to
// limit bytes and the statistics backend given: "statsd" to send to statsd
// (host:port), or "internal" to keep its statistics and show them on its
// own /metrics.
func startUploadProsody(t *testing.T, backend, statsd, component string, limit int) *uploadProsody {
	t.Helper()
	prosodyBin := need(t, "prosody")
	prosodyctl := need(t, "prosodyctl")
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "data"), 0o750)
	cert, key := writeCertificate(t, dir)
	p := &uploadProsody{c2s: freePort(t), http: freePort(t)}
	stats := `statistics = "internal"`
	if backend == "statsd" {
		host, port, _ := net.SplitHostPort(statsd)
		stats = fmt.Sprintf(`statistics = "statsd"
statistics_config = { statsd_server = %q; statsd_port = %s; }`, host, port)
	}
	cfg := fmt.Sprintf(`
run_as_root = true
pidfile = %[1]q
data_path = %[2]q
log = { { levels = { min = "info" }, to = "console" } }
interfaces = { "127.0.0.1" }
local_interfaces = { "127.0.0.1" }
c2s_ports = { %[3]d }
s2s_ports = { %[4]d }
http_ports = { %[5]d }
http_interfaces = { "127.0.0.1" }
https_ports = { }
certificates = %[6]q
ssl = { certificate = %[7]q; key = %[8]q; }
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_hashed"
storage = "internal"
%[9]s
statistics_interval = 1
modules_enabled = { "roster"; "saslauth"; "disco"; "http_openmetrics" }

VirtualHost "localhost"
Component %[10]q "http_file_share"
	http_file_share_size_limit = %[11]d
`, filepath.Join(dir, "prosody.pid"), filepath.Join(dir, "data"), p.c2s, freePort(t), p.http, dir, cert, key, stats, component, limit)
	cfgPath := filepath.Join(dir, "prosody.cfg.lua")
	write(t, cfgPath, cfg)
	if out, err := exec.Command(prosodyctl, "--config", cfgPath, "register", "alice", "localhost", "alicepw").CombinedOutput(); err != nil {
		t.Fatalf("prosodyctl register: %v\n%s", err, out)
	}
	startServer(t, "prosody "+backend, func() *exec.Cmd { return exec.Command(prosodyBin, "-F", "--config", cfgPath) },
		tcpReady(fmt.Sprintf("127.0.0.1:%d", p.c2s)))
	return p
}

// xmppClient is just enough of an XMPP client to ask for upload slots.
type xmppClient struct {
	conn net.Conn
	dec  *xml.Decoder
}

func (c *xmppClient) send(t *testing.T, s string) {
	t.Helper()
	if _, err := io.WriteString(c.conn, s); err != nil {
		t.Fatal(err)
	}
}

// next decodes the next top-level element of the stream (the stream's own
// start is skipped) into v.
func (c *xmppClient) next(t *testing.T, v any) xml.StartElement {
	t.Helper()
	for {
		tok, err := c.dec.Token()
		if err != nil {
			t.Fatalf("reading the XMPP stream: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local != "stream" {
			if err := c.dec.DecodeElement(v, &se); err != nil {
				t.Fatal(err)
			}
			return se
		}
	}
}

func (c *xmppClient) openStream(t *testing.T) {
	t.Helper()
	c.send(t, "<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")
	c.dec = xml.NewDecoder(c.conn)
	var features struct{}
	if se := c.next(t, &features); se.Name.Local != "features" {
		t.Fatalf("got <%s>, want stream features", se.Name.Local)
	}
}

// xmppLogin logs in with SASL PLAIN on a plaintext stream and binds.
func xmppLogin(t *testing.T, c2s int, user, password string) *xmppClient {
	t.Helper()
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", c2s))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	c := &xmppClient{conn: conn}
	c.openStream(t)
	c.send(t, "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"+
		base64.StdEncoding.EncodeToString([]byte("\x00"+user+"\x00"+password))+"</auth>")
	var answer struct{}
	if se := c.next(t, &answer); se.Name.Local != "success" {
		t.Fatalf("SASL: <%s>", se.Name.Local)
	}
	c.openStream(t)
	c.send(t, "<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>layout</resource></bind></iq>")
	var iq struct {
		Type string `xml:"type,attr"`
	}
	if c.next(t, &iq); iq.Type != "result" {
		t.Fatalf("bind: %q", iq.Type)
	}
	return c
}

// upload asks component for a slot and puts size bytes in it.
func (p *uploadProsody) upload(t *testing.T, c *xmppClient, component string, size int) {
	t.Helper()
	c.send(t, fmt.Sprintf("<iq type='get' id='slot' to='%s'><request xmlns='urn:xmpp:http:upload:0' filename='f.bin' size='%d' content-type='application/octet-stream'/></iq>",
		component, size))
	var iq struct {
		Type string `xml:"type,attr"`
		Put  struct {
			URL     string `xml:"url,attr"`
			Headers []struct {
				Name  string `xml:"name,attr"`
				Value string `xml:",chardata"`
			} `xml:"header"`
		} `xml:"slot>put"`
	}
	if c.next(t, &iq); iq.Type != "result" || iq.Put.URL == "" {
		t.Fatalf("no upload slot from %s: %+v", component, iq)
	}
	u, err := url.Parse(iq.Put.URL)
	if err != nil {
		t.Fatal(err)
	}
	// The slot names the component's host; Prosody's HTTP server routes
	// on the Host header.
	host := u.Host
	u.Host = fmt.Sprintf("127.0.0.1:%d", p.http)
	req, _ := http.NewRequest(http.MethodPut, u.String(), bytes.NewReader(bytes.Repeat([]byte("x"), size)))
	req.Host = host
	req.Header.Set("Content-Type", "application/octet-stream")
	for _, h := range iq.Put.Headers {
		req.Header.Set(h.Name, h.Value)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT %s to %s: %s", iq.Put.URL, component, resp.Status)
	}
}

var uploadSeries = regexp.MustCompile(`(?m)^prosody_mod_http_file_share__upload_bytes_(bucket|count|sum)\{([^}]*)\} (\S+)$`)

// uploadLines are a page's series of the upload histogram, as written
// (le spelled as on the page), with their values, sorted. Values are
// compared as numbers (Prosody writes 2102152 where statsbridge writes
// 2.102152e+06).
func uploadLines(page string) []string {
	var out []string
	for _, m := range uploadSeries.FindAllStringSubmatch(page, -1) {
		v, _ := strconv.ParseFloat(m[3], 64)
		out = append(out, fmt.Sprintf("%s{%s} %s", m[1], m[2], strconv.FormatFloat(v, 'f', -1, 64)))
	}
	sort.Strings(out)
	return out
}

// TestProsodyUploadLayoutsFromTheWire runs real Prosodies in pairs, one
// pair with an upload component limited to 3 MiB and one with 100 MiB: in
// each pair one sends StatsD to statsbridge, the other keeps its statistics
// and shows them on its own /metrics. After the same uploads to both,
// statsbridge must show the upload histogram exactly as Prosody's own pages
// do, each series with its own layout, learned from the wire alone (no
// metrics_url): no le="16777216" for the 3 MiB limit, and the 67108864 and
// 268435456 the catalog lacks for 100 MiB. Remote-write carries the same to a real
// Prometheus 2.x, le spelled as Prosody does (le_format "prosody") and as
// Prometheus 3 stores it ("float").
func TestProsodyUploadLayoutsFromTheWire(t *testing.T) {
	prom := startPrometheus(t)
	r := startRelay(t, fmt.Sprintf(`
[statsd]
udp = ["127.0.0.1:0"]
tcp = []
flush_interval = "1s"
[prosody]
hosts = ["localhost", "upload3.localhost", "upload100.localhost"]
[http]
listen = "127.0.0.1:0"
[[remote_write]]
url = "%[1]s/api/v1/write"
external_labels = { sink = "prosody" }
[[remote_write]]
url = "%[1]s/api/v1/write"
le_format = "float"
external_labels = { sink = "float" }
`, prom.URL))
	// Two pairs of Prosodies, one limited to 3 MiB and one to 100 MiB: in
	// each pair one sends StatsD to statsbridge, its twin keeps its own
	// statistics, and both get the same uploads.
	pairs := []struct {
		component string
		limit     int
		sizes     []int
	}{
		{"upload3.localhost", 3 << 20, []int{5000}},
		{"upload100.localhost", 100 << 20, []int{2 << 20, 5000}},
	}
	var want []string
	for _, pair := range pairs {
		sender := startUploadProsody(t, "statsd", r.UDP, pair.component, pair.limit)
		twin := startUploadProsody(t, "internal", "", pair.component, pair.limit)
		for _, p := range []*uploadProsody{sender, twin} {
			c := xmppLogin(t, p.c2s, "alice", "alicepw")
			for _, size := range pair.sizes {
				p.upload(t, c, pair.component, size)
			}
		}
		var page []string
		count := fmt.Sprintf(`count{host=%q} %d`, pair.component, len(pair.sizes))
		eventually(t, 20*time.Second, "the uploads on Prosody's own page", func() (bool, string) {
			resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", twin.http))
			if err != nil {
				return false, err.Error()
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			page = uploadLines(string(body))
			return slices.Contains(page, count), strings.Join(page, "\n")
		})
		want = append(want, page...)
	}
	sort.Strings(want)
	if !slices.Contains(want, `bucket{host="upload100.localhost",le="268435456"} 2`) ||
		slices.ContainsFunc(want, func(l string) bool { return strings.HasPrefix(l, `bucket{host="upload3.localhost",le="16777216"}`) }) {
		t.Fatalf("Prosody's own pages do not have the layouts this test is about:\n%s", strings.Join(want, "\n"))
	}
	var got []string
	eventually(t, 20*time.Second, "statsbridge shows the upload histogram as Prosody's page does", func() (bool, string) {
		got = uploadLines(r.scrape(t))
		return slices.Equal(got, want), fmt.Sprintf("\nstatsbridge:\n%s\nProsody:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	})

	// Prometheus stores what remote-write sent: Prosody's spelling from the
	// "prosody" sink, Prometheus 3's from the "float" one.
	wantLE := map[string][]string{}
	for _, line := range want {
		if m := regexp.MustCompile(`^bucket\{host="([^"]+)",le="([^"]+)"\}`).FindStringSubmatch(line); m != nil {
			wantLE[m[1]] = append(wantLE[m[1]], m[2])
		}
	}
	for host, les := range wantLE {
		floats := make([]string, len(les))
		for i, le := range les {
			v, _ := strconv.ParseFloat(le, 64)
			floats[i] = labels.FormatOpenMetricsFloat(v)
		}
		for sink, want := range map[string][]string{"prosody": les, "float": floats} {
			sort.Strings(want)
			eventually(t, 20*time.Second, "Prometheus holds the "+sink+" spelling for "+host, func() (bool, string) {
				seen := map[string]bool{}
				for _, s := range prom.samples(t, fmt.Sprintf(`prosody_mod_http_file_share__upload_bytes_bucket{host=%q,sink=%q}`, host, sink), 5*time.Minute) {
					seen[s.Labels["le"]] = true
				}
				var got []string
				for le := range seen {
					got = append(got, le)
				}
				sort.Strings(got)
				return slices.Equal(got, want), fmt.Sprintf("le %v, want %v", got, want)
			})
		}
	}
	r.stop(t)
}

// TestProsody13SmacksLayoutFromTheWire sends statsbridge what Prosody 13.0
// sends for a resumption after 5 s (its layout read from its source, as
// extracted into model/prosody/testdata/upstream), with no override in the
// configuration, and expects the histogram as 13.0's own page would show
// it: 13.0's layout, not the 0.12 one the catalog has first.
func TestProsody13SmacksLayoutFromTheWire(t *testing.T) {
	data, err := os.ReadFile("../model/prosody/testdata/upstream/prosody-13.0.json")
	if err != nil {
		t.Fatal(err)
	}
	var calls struct {
		Sites []struct {
			Family  string   `json:"family"`
			Buckets []string `json:"buckets"`
		} `json:"sites"`
	}
	if err := json.Unmarshal(data, &calls); err != nil {
		t.Fatal(err)
	}
	var bounds []string
	for _, s := range calls.Sites {
		if s.Family == "prosody_mod_smacks__resumption_age_seconds" {
			bounds = s.Buckets
		}
	}
	if len(bounds) == 0 {
		t.Fatal("no resumption_age layout in Prosody 13.0's extracted definitions")
	}
	r := startRelay(t, `
[statsd]
udp = ["127.0.0.1:0"]
tcp = []
[prosody]
hosts = ["localhost"]
[http]
listen = "127.0.0.1:0"
`)
	// util/statsd.lua: +1 on every bucket at or above the value, the count,
	// and the running sum at the next collection.
	const series = "prosody.prosody_mod_smacks.resumption_age_seconds.localhost"
	var lines, want []string
	for _, b := range append(bounds, "+Inf") {
		v, _ := strconv.ParseFloat(b, 64)
		n := 0
		if b == "+Inf" || 5 <= v {
			lines = append(lines, series+".bucket."+strings.ReplaceAll(b, ".", "_")+":1|c")
			n = 1
		}
		want = append(want, fmt.Sprintf(`prosody_mod_smacks__resumption_age_seconds_bucket{host="localhost",le="%s"} %d`, b, n))
	}
	r.sendUDP(t, append(lines, series+".count:1|c", series+".sum:5|g")...)
	eventually(t, 10*time.Second, "13.0's layout", func() (bool, string) {
		var got []string
		for _, line := range strings.Split(r.scrape(t), "\n") {
			if strings.HasPrefix(line, "prosody_mod_smacks__resumption_age_seconds_bucket{") {
				got = append(got, line)
			}
		}
		return slices.Equal(got, want), fmt.Sprintf("\n got %s\nwant %s", strings.Join(got, "\n     "), strings.Join(want, "\n     "))
	})
	r.stop(t)
}
