package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// writeCertificate makes a self-signed certificate for localhost and its
// subdomains, for Prosody's STARTTLS.
func writeCertificate(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost", "*.localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "localhost.crt"), filepath.Join(dir, "localhost.key")
	write(t, certFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	write(t, keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})))
	return certFile, keyFile
}

// prosodyConfig is the capture's configuration (testdata/prosody), on free
// ports, sending StatsD to statsbridge every second.
func prosodyConfig(dir, certs, cert, key string, c2s, s2s, http int, statsd string) string {
	host, port, _ := net.SplitHostPort(statsd)
	return fmt.Sprintf(`
run_as_root = true
pidfile = %[1]q
data_path = %[2]q
log = { { levels = { min = "info" }, to = "console" } }
interfaces = { "127.0.0.1" }
local_interfaces = { "127.0.0.1" }
c2s_ports = { %[6]d }
s2s_ports = { %[7]d }
http_ports = { %[8]d }
http_interfaces = { "127.0.0.1" }
https_ports = { }
certificates = %[3]q
ssl = { certificate = %[4]q; key = %[5]q; }
c2s_require_encryption = false
s2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_hashed"
storage = "internal"
smacks_hibernation_time = 30
bosh_max_inactivity = 30

statistics = "statsd"
statistics_interval = 1
statistics_config = { statsd_server = %[9]q; statsd_port = %[10]s; }

modules_enabled = {
	"roster"; "saslauth"; "tls"; "disco"; "carbons"; "pep"; "private";
	"blocklist"; "vcard4"; "vcard_legacy"; "version"; "uptime"; "time";
	"ping"; "register"; "mam"; "smacks"; "csi_simple"; "bosh";
	"http_openmetrics";
}

VirtualHost "localhost"
Component "conference.localhost" "muc"
Component "upload.localhost" "http_file_share"
`, filepath.Join(dir, "prosody.pid"), filepath.Join(dir, "data"), certs, cert, key, c2s, s2s, http, host, port)
}

// TestRealProsodyThroughRemoteWrite runs a real Prosody with
// statistics = "statsd" pointed at statsbridge, which remote-writes to a
// real Prometheus, drives XMPP traffic through it (the capture's
// activity.py: c2s with and without TLS, smacks, MUC, upload, BOSH, s2s
// probes), and queries Prometheus for Prosody's own series names. It also
// reads Prosody's /metrics for the families' metadata (metrics_url).
func TestRealProsodyThroughRemoteWrite(t *testing.T) {
	prosodyBin := need(t, "prosody")
	prosodyctl := need(t, "prosodyctl")
	python := need(t, "python3")
	prom := startPrometheus(t)

	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "data"), 0o750)
	cert, key := writeCertificate(t, dir)
	c2s, s2s, http := freePort(t), freePort(t), freePort(t)

	r := startRelay(t, fmt.Sprintf(`
log_level = "debug"
[statsd]
udp = ["127.0.0.1:0"]
tcp = []
flush_interval = "1s"
[prosody]
hosts = ["localhost", "conference.localhost", "upload.localhost"]
metrics_url = "http://127.0.0.1:%d/metrics"
metrics_refresh = "1s"
[http]
listen = "127.0.0.1:0"
[[remote_write]]
url = "%s/api/v1/write"
`, http, prom.URL))

	cfg := filepath.Join(dir, "prosody.cfg.lua")
	write(t, cfg, prosodyConfig(dir, dir, cert, key, c2s, s2s, http, r.UDP))
	for _, user := range []string{"alice", "bob"} {
		out, err := exec.Command(prosodyctl, "--config", cfg, "register", user, "localhost", user+"pw").CombinedOutput()
		if err != nil {
			t.Fatalf("prosodyctl register %s: %v\n%s", user, err, out)
		}
	}
	startServer(t, "prosody", func() *exec.Cmd { return exec.Command(prosodyBin, "-F", "--config", cfg) },
		tcpReady(fmt.Sprintf("127.0.0.1:%d", c2s)))

	activity := exec.Command(python, "../testdata/prosody/tools/activity.py",
		strconv.Itoa(c2s), strconv.Itoa(s2s), strconv.Itoa(http), "3")
	if out, err := activity.CombinedOutput(); err != nil {
		t.Fatalf("activity.py: %v\n%s", err, out)
	}

	// While alice and bob were connected, Prosody's gauge burst said so.
	eventually(t, 20*time.Second, "c2s connections in Prometheus", func() (bool, string) {
		ss := prom.samples(t, `prosody_mod_c2s__connections{host="localhost",type="c2s",ip_family="ipv4"}`, 5*time.Minute)
		for _, s := range ss {
			if v, _ := strconv.ParseFloat(s.V, 64); v >= 1 {
				return true, ""
			}
		}
		return false, fmt.Sprint(ss)
	})
	eventually(t, 20*time.Second, "a Prosody histogram in Prometheus", func() (bool, string) {
		buckets := prom.samples(t, `prosody_stats_collection_seconds_bucket{le="0.001"}`, 5*time.Minute)
		inf := prom.samples(t, `prosody_stats_collection_seconds_bucket{le="+Inf"}`, 5*time.Minute)
		count := prom.samples(t, `prosody_stats_collection_seconds_count`, 5*time.Minute)
		return len(buckets) > 0 && len(inf) > 0 && len(count) > 0 && inf[len(inf)-1].V == count[len(count)-1].V,
			fmt.Sprint(buckets, inf, count)
	})
	eventually(t, 10*time.Second, "smacks' histogram with its host", func() (bool, string) {
		ss := prom.samples(t, `prosody_mod_smacks__tx_acked_stanzas_count{host="localhost"}`, 5*time.Minute)
		return len(ss) > 0, fmt.Sprint(ss)
	})
	if !strings.Contains(r.log.String(), "read Prosody's families") {
		t.Errorf("statsbridge did not read Prosody's /metrics:\n%s", r.log.String())
	}
	body := r.scrape(t)
	if v, _ := sample(body, "statsbridge_prosody_unknown_names_total"); v != "0" {
		t.Errorf("%s of Prosody's names were not in the catalog", v)
	}
	r.stop(t)
}
