package main

import (
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/statsbridge/statsbridge/config"
)

// reloader hands run the configuration a test sets, as the file on disk.
type reloader struct {
	mu   sync.Mutex
	cfg  config.Config
	err  error
	reqs chan reloadRequest
}

func newReloader(cfg config.Config) *reloader {
	return &reloader{cfg: cfg, reqs: make(chan reloadRequest)}
}

func (r *reloader) hooks() hooks {
	return hooks{reloads: r.reqs, reread: func() (config.Config, error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.cfg, r.err
	}}
}

// reload sets the configuration and asks for a reload, as SIGHUP does.
func (r *reloader) reload(t *testing.T, cfg config.Config, err error) error {
	t.Helper()
	r.mu.Lock()
	r.cfg, r.err = cfg, err
	r.mu.Unlock()
	done := make(chan error, 1)
	select {
	case r.reqs <- reloadRequest{source: "test", done: done}:
	case <-time.After(10 * time.Second):
		t.Fatal("the reload was not taken")
	}
	return <-done
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func metric(t *testing.T, httpAddr, series string) string {
	t.Helper()
	_, body := get(t, "http://"+httpAddr+"/metrics")
	for _, line := range strings.Split(body, "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			return rest
		}
	}
	return ""
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not after 5s: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestReloadAppliesTheWholeFile: a reload applies new listeners, a new
// mapping, a new sink and new limits; every series keeps its state; a bad
// configuration is refused, and the one in force stays.
func TestReloadAppliesTheWholeFile(t *testing.T) {
	carbon := newFakeCarbon(t)
	cfg := testConfig()
	cfg.Statsd.TCP = []string{}
	rl := newReloader(cfg)
	a, stop := startRunWith(t, cfg, rl.hooks())

	udp, _ := net.Dial("udp", a.udp)
	defer udp.Close()
	udp.Write([]byte("app.web.hits:1|c"))
	waitFor(t, "app_web_hits_total 1", func() bool { return metric(t, a.http, "app_web_hits_total") == "1" })

	dir := t.TempDir()
	mapping := filepath.Join(dir, "mapping.yml")
	os.WriteFile(mapping, []byte("mappings:\n- match: app.*.hits\n  name: app_hits\n  labels:\n    app: $1\n"), 0o644)
	next := cfg
	tcp := freeAddr(t)
	next.Statsd.TCP = []string{tcp}
	next.Mapping.File = mapping
	g := config.DefaultGraphite()
	g.Address, g.Layout = carbon.l.Addr().String(), config.LayoutPaths
	next.Graphite = []config.Graphite{g}
	if err := rl.reload(t, next, nil); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if v := metric(t, a.http, "statsbridge_config_last_reload_successful"); v != "1" {
		t.Errorf("last reload successful = %q", v)
	}

	c, err := net.Dial("tcp", tcp)
	if err != nil {
		t.Fatalf("the new TCP listener: %v", err)
	}
	c.Write([]byte("app.api.hits:2|c\n"))
	c.Close()
	udp.Write([]byte("app.web.hits:4|c"))
	waitFor(t, "the new mapping", func() bool {
		return metric(t, a.http, `app_hits_total{app="api"}`) == "2" && metric(t, a.http, `app_hits_total{app="web"}`) == "4"
	})
	if v := metric(t, a.http, "app_web_hits_total"); v != "1" {
		t.Errorf("the series of the old mapping lost its state: %q", v)
	}

	// A configuration that cannot be applied is refused whole.
	bad := next
	bad.HTTP.Listen = freeAddr(t)
	bad.Statsd.UDP = []string{carbon.l.Addr().String() + "x"}
	if err := rl.reload(t, bad, nil); err == nil {
		t.Fatal("an address that cannot be bound was accepted")
	}
	if err := rl.reload(t, next, errors.New("statsbridge.toml:3: statsd.udp: bad")); err == nil || !strings.Contains(err.Error(), "statsd.udp") {
		t.Fatalf("a file with errors: %v", err)
	}
	if v := metric(t, a.http, "statsbridge_config_last_reload_successful"); v != "0" {
		t.Errorf("after a refused reload, last reload successful = %q", v)
	}
	udp.Write([]byte("app.web.hits:1|c"))
	waitFor(t, "the configuration in force still applies", func() bool { return metric(t, a.http, `app_hits_total{app="web"}`) == "5" })

	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// Carbon acknowledges nothing: the stop returns once the lines are
	// written, and the fake carbon reads them a moment later.
	waitFor(t, "the sink the reload added delivered app.api.hits 2", func() bool { return carbon.sum("app.api.hits") == 2 })
}

// TestAdminEndpointsAnswerOnlyAdminAddresses: the tap and reload refuse an
// address outside http.admin_allow, even one /metrics allows.
func TestAdminEndpointsAnswerOnlyAdminAddresses(t *testing.T) {
	cfg := testConfig()
	cfg.HTTP.AdminAllow = []string{"::1/128"}
	rl := newReloader(cfg)
	a, stop := startRunWith(t, cfg, rl.hooks())
	defer stop()
	if code, _ := get(t, "http://"+a.http+"/metrics"); code != http.StatusOK {
		t.Errorf("/metrics: %d", code)
	}
	if code, body := get(t, "http://"+a.http+"/-/tap"); code != http.StatusForbidden || !strings.Contains(body, "admin_allow") {
		t.Errorf("/-/tap from 127.0.0.1: %d %q", code, body)
	}
	resp, err := http.Post("http://"+a.http+"/-/reload", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("POST /-/reload from 127.0.0.1: %d", resp.StatusCode)
	}

	// From an admin address, POST /-/reload reloads.
	allowed := cfg
	allowed.HTTP.AdminAllow = []string{"127.0.0.1"}
	if err := rl.reload(t, allowed, nil); err != nil {
		t.Fatal(err)
	}
	resp, err = http.Post("http://"+a.http+"/-/reload", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("POST /-/reload from an admin address: %d", resp.StatusCode)
	}
}

// TestLastReceivedPerPrefixAndSource: when the Prosody prefix and each
// sender (with source_label) last sent something is a series of its own.
func TestLastReceivedPerPrefixAndSource(t *testing.T) {
	cfg := testConfig()
	cfg.Statsd.SourceLabel = "instance"
	cfg.Statsd.FlushInterval = config.Duration(100 * time.Millisecond)
	a, stop := startRun(t, cfg)
	defer stop()
	before := float64(time.Now().Unix())
	if v := metric(t, a.http, `statsbridge_last_received_timestamp_seconds{prefix="prosody"}`); v != "0" {
		t.Errorf("before any line under the prefix: %q, want 0", v)
	}
	udp, _ := net.Dial("udp", a.udp)
	defer udp.Close()
	udp.Write([]byte("prosody.prosody_mod_c2s.connections.localhost.c2s.ipv4:1|g"))
	waitFor(t, "both series", func() bool {
		p, _ := strconv.ParseFloat(metric(t, a.http, `statsbridge_last_received_timestamp_seconds{prefix="prosody"}`), 64)
		s, _ := strconv.ParseFloat(metric(t, a.http, `statsbridge_last_received_timestamp_seconds{instance="127.0.0.1"}`), 64)
		return p >= before && s >= before
	})
}
