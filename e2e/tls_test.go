package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/statsbridge/statsbridge/sinks/tlstest"
)

// secureVictoria is a victoria-metrics that answers only HTTPS with basic
// authentication, and takes Graphite plaintext on a port of its own.
type secureVictoria struct {
	*server
	URL          string
	GraphiteAddr string
	client       *http.Client
	user, pass   string
}

func startSecureVictoria(t testing.TB, ca *tlstest.CA, user, pass string) *secureVictoria {
	t.Helper()
	bin := need(t, "victoria-metrics")
	dir := t.TempDir()
	certFile, keyFile := tlstest.WriteKeyPair(t, dir, "victoria", ca.Server(t, "127.0.0.1"))
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	graphite := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	v := &secureVictoria{URL: "https://" + addr, GraphiteAddr: graphite, user: user, pass: pass,
		client: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}}}
	mk := func() *exec.Cmd {
		return exec.Command(bin, "-storageDataPath="+filepath.Join(dir, "data"), "-retentionPeriod=1",
			"-httpListenAddr="+addr, "-graphiteListenAddr="+graphite,
			"-tls", "-tlsCertFile="+certFile, "-tlsKeyFile="+keyFile,
			"-httpAuth.username="+user, "-httpAuth.password="+pass,
			"-search.latencyOffset=0s", "-search.disableCache", "-loggerLevel=WARN")
	}
	v.server = startServer(t, "victoria-metrics", mk, func() bool {
		resp, err := v.get("/health")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == http.StatusOK
	})
	return v
}

func (v *secureVictoria) get(path string) (*http.Response, error) {
	req, _ := http.NewRequest(http.MethodGet, v.URL+path, nil)
	req.SetBasicAuth(v.user, v.pass)
	return v.client.Do(req)
}

// values returns every stored value of each series matching selector, by
// its series text (name{labels sorted}), oldest first.
func (v *secureVictoria) values(t testing.TB, selector string) map[string][]float64 {
	t.Helper()
	if resp, err := v.get("/internal/force_flush"); err == nil {
		resp.Body.Close()
	}
	resp, err := v.get("/api/v1/export?" + url.Values{"match[]": {selector}}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return decodeExport(t, resp.Body)
}

// decodeExport reads victoria-metrics' /api/v1/export JSON lines.
func decodeExport(t testing.TB, r io.Reader) map[string][]float64 {
	t.Helper()
	out := map[string][]float64{}
	dec := json.NewDecoder(r)
	for {
		var line struct {
			Metric     map[string]string `json:"metric"`
			Values     []json.Number     `json:"values"`
			Timestamps []int64           `json:"timestamps"`
		}
		if err := dec.Decode(&line); err != nil {
			break
		}
		var labels []string
		for k, val := range line.Metric {
			if k != "__name__" {
				labels = append(labels, fmt.Sprintf("%s=%q", k, val))
			}
		}
		sort.Strings(labels)
		key := line.Metric["__name__"] + "{" + strings.Join(labels, ",") + "}"
		for _, n := range line.Values {
			f, _ := strconv.ParseFloat(n.String(), 64)
			out[key] = append(out[key], f)
		}
	}
	return out
}

// startTLSTerminator accepts mutual TLS and passes what it decrypts on to
// upstream in plaintext, as stunnel or carbon-relay-ng in front of carbon
// do. It refuses a client without a certificate clientCAs signed.
func startTLSTerminator(t testing.TB, cert tls.Certificate, clientCAs *x509.CertPool, upstream string) string {
	t.Helper()
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clientCAs})
	if err != nil {
		t.Fatal(err)
	}
	var conns sync.WaitGroup
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns.Go(func() {
				defer c.Close()
				up, err := net.Dial("tcp", upstream)
				if err != nil {
					return
				}
				defer up.Close()
				io.Copy(up, c) // carbon's protocol is one way
			})
		}
	}()
	t.Cleanup(func() { l.Close(); <-done; conns.Wait() })
	return l.Addr().String()
}

// startMutualTLSProxy is an HTTPS reverse proxy that takes only clients
// with a certificate clientCAs signed, in front of an HTTPS backend, as an
// ingress in front of Mimir or VictoriaMetrics cluster does.
func startMutualTLSProxy(t testing.TB, cert tls.Certificate, clientCAs *x509.CertPool, backend string, backendCAs *x509.CertPool) string {
	t.Helper()
	target, _ := url.Parse(backend)
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: backendCAs}}
	srv := httptest.NewUnstartedServer(proxy)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clientCAs}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestTLSSinksDeliverOverRealTLS sends one counter through every kind of
// push sink over TLS to a victoria-metrics that serves only HTTPS with
// basic authentication: remote-write and InfluxDB straight to it (checking
// its certificate against a CA made here), remote-write and InfluxDB through
// a proxy that demands a client certificate, and Graphite through a TLS
// terminator that demands one too. A sink that does not trust the backend's
// CA is a configuration error, one that checks nothing delivers and says so
// in the log, and no password is ever logged.
func TestTLSSinksDeliverOverRealTLS(t *testing.T) {
	const user, pass = "statsbridge", "VmBasicPass7q"
	serverCA := tlstest.NewCA(t, "backend")
	clientCA := tlstest.NewCA(t, "clients")
	vm := startSecureVictoria(t, serverCA, user, pass)
	dir := t.TempDir()
	caFile := serverCA.WriteCA(t, dir)
	certFile, keyFile := tlstest.WriteKeyPair(t, dir, "relay", clientCA.Client(t, "relay1"))
	passFile := filepath.Join(dir, "vm-password")
	write(t, passFile, pass+"\n")
	graphiteFront := startTLSTerminator(t, serverCA.Server(t, "127.0.0.1"), clientCA.Pool(), vm.GraphiteAddr)
	httpFront := startMutualTLSProxy(t, serverCA.Server(t, "127.0.0.1"), clientCA.Pool(), vm.URL, serverCA.Pool())
	q := strconv.Quote

	r := startRelay(t, fmt.Sprintf(`
log_level = "debug"
shutdown_timeout = "2s"
[statsd]
udp = ["127.0.0.1:0"]
tcp = []
flush_interval = "1s"
[http]
listen = "127.0.0.1:0"

[[remote_write]]
url = "%[1]s/api/v1/write"
username = %[3]q
password_file = %[4]q
external_labels = { path = "rw-direct" }
tls = { ca_file = %[5]s }

[[remote_write]]
url = "%[2]s/api/v1/write"
username = %[3]q
password = %[6]q
external_labels = { path = "rw-mutual" }
[remote_write.tls]
ca_file = %[5]s
cert_file = %[7]s
key_file = %[8]s

[[influx]]
url = "%[1]s/write?db=direct"
username = %[3]q
password = %[6]q
tls = { ca_file = %[5]s }

[[influx]]
url = "%[2]s/write?db=mutual"
username = %[3]q
password_file = %[4]q
tls = { ca_file = %[5]s, cert_file = %[7]s, key_file = %[8]s }

[[graphite]]
address = %[9]q
layout = "tags"
counters = "cumulative"
external_labels = { path = "graphite-mutual" }
tls = { enabled = true, ca_file = %[5]s, cert_file = %[7]s, key_file = %[8]s }

[[remote_write]]
url = "%[1]s/api/v1/write"
username = %[3]q
password = %[6]q
external_labels = { path = "rw-insecure" }
tls = { insecure_skip_verify = true }

[[remote_write]]
url = "%[1]s/api/v1/write"
username = %[3]q
password = %[6]q
external_labels = { path = "rw-untrusted" }
`, vm.URL, httpFront, user, passFile, q(caFile), pass, q(certFile), q(keyFile), graphiteFront))

	name := uniqueName("tlshits")
	r.sendUDP(t, name+":5|c")
	want := map[string]string{ // series: how its values add up to 5
		name + `_total{path="rw-direct"}`:                  "last",
		name + `_total{path="rw-mutual"}`:                  "last",
		name + `_total{path="rw-insecure"}`:                "last",
		name + `_value{db="direct",metric_type="counter"}`: "sum",
		name + `_value{db="mutual",metric_type="counter"}`: "sum",
		name + `{path="graphite-mutual"}`:                  "last",
	}
	eventually(t, 20*time.Second, "every TLS sink delivered to victoria-metrics", func() (bool, string) {
		got := vm.values(t, `{__name__=~"`+name+`.*"}`)
		for series, how := range want {
			vs := got[series]
			total := 0.0
			if how == "sum" {
				for _, v := range vs {
					total += v
				}
			} else if len(vs) > 0 {
				total = vs[len(vs)-1]
			}
			if total != 5 {
				return false, fmt.Sprintf("%s: %v; have %v", series, vs, got)
			}
		}
		return true, ""
	})
	if _, ok := vm.values(t, `{__name__=~"`+name+`.*",path="rw-untrusted"}`)[name+`_total{path="rw-untrusted"}`]; ok {
		t.Error("a sink that does not trust the backend's CA delivered")
	}
	eventually(t, 10*time.Second, "the untrusted certificate counted as a configuration error", func() (bool, string) {
		body := r.scrape(t)
		v, _ := sample(body, `statsbridge_sink_failures_total{reason="client_error",sink="remote_write[3]"}`)
		n, _ := strconv.ParseFloat(v, 64)
		return n > 0, body
	})
	r.stop(t)
	log := r.log.String()
	if !strings.Contains(log, `insecure_skip_verify is on`) || !strings.Contains(log, `sink=remote_write[2]`) {
		t.Errorf("no warning for the sink that checks no certificate:\n%s", log)
	}
	if !strings.Contains(log, "certificate signed by unknown authority") {
		t.Errorf("the untrusted certificate was not logged:\n%s", log)
	}
	for _, secret := range []string{pass, base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))} {
		if strings.Contains(log, secret) {
			t.Errorf("the log shows a password (%s):\n%s", secret, log)
		}
	}
}
