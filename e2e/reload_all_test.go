package e2e

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// carbonSum adds up what carbon stored for a path.
func carbonSum(t *testing.T, c *carbon, path string) float64 {
	t.Helper()
	sum := 0.0
	for _, p := range c.points(t, path) {
		sum += p.V
	}
	return sum
}

func (r *relay) hup(t *testing.T) {
	t.Helper()
	if err := r.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
}

// waitLog waits for the relay's log to hold n lines containing text.
func (r *relay) waitLog(t *testing.T, text string, n int) {
	t.Helper()
	eventually(t, 10*time.Second, fmt.Sprintf("%d log lines with %q", n, text), func() (bool, string) {
		return strings.Count(r.log.String(), text) >= n, r.log.String()
	})
}

// selfMetric reads one of the relay's own series from /metrics.
func (r *relay) selfMetric(t *testing.T, series string) float64 {
	t.Helper()
	v, ok := sample(r.scrape(t), series)
	if !ok {
		return 0
	}
	f, _ := strconv.ParseFloat(v, 64)
	return f
}

// TestReloadEverythingKeepsState: a SIGHUP applies a whole new file to the
// running binary, against real carbon and Prometheus: a new TCP listener, a
// new mapping file, a remote-write with new external labels. Every series
// keeps its state, and the graphite sink, unchanged, keeps what it spooled
// in a carbon outage across the reload and delivers it once carbon is
// back. A file with errors is then refused, and the one in force stays.
func TestReloadEverythingKeepsState(t *testing.T) {
	carbon := startCarbon(t)
	prom := startPrometheus(t)
	name := uniqueName("reload_all")
	config := func(extra string) string {
		return fmt.Sprintf(`
shutdown_timeout = "3s"
[statsd]
udp = ["127.0.0.1:0"]
flush_interval = "1s"
%s
[http]
listen = "127.0.0.1:0"
[[graphite]]
address = %q
layout = "paths"
spool_dir = "spool"
[[remote_write]]
url = "%s/api/v1/write"
`, extra, carbon.Addr, prom.URL)
	}
	r := startRelay(t, strings.Replace(config("tcp = []"), "[[remote_write]]", "[[remote_write]]\nexternal_labels = { relay = \"a\" }", 1))
	cfgPath := filepath.Join(r.configDir, "statsbridge.toml")

	for range 5 {
		r.sendUDP(t, name+".hits:1|c")
	}
	eventually(t, 15*time.Second, "carbon has the first 5", func() (bool, string) {
		got := carbonSum(t, carbon, name+".hits")
		return got == 5, fmt.Sprint(got)
	})

	// An outage: what the graphite sink cannot deliver goes to its spool.
	carbon.stop()
	for range 3 {
		r.sendUDP(t, name+".hits:1|c")
	}
	eventually(t, 15*time.Second, "the graphite sink spools in the outage", func() (bool, string) {
		v := r.selfMetric(t, `statsbridge_sink_spool_bytes{sink="graphite[0]"}`)
		return v > 0, fmt.Sprint(v)
	})

	// The whole file changes, but the graphite sink's table does not.
	tcp := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	mapping := filepath.Join(r.configDir, "mapping.yml")
	write(t, mapping, fmt.Sprintf("mappings:\n- match: %s.mapped.*\n  name: %s_mapped\n  labels:\n    what: $1\n", name, name))
	next := strings.Replace(config(fmt.Sprintf("tcp = [%q]\n[mapping]\nfile = \"mapping.yml\"", tcp)), "[[remote_write]]",
		"[[remote_write]]\nexternal_labels = { relay = \"a\", reloaded = \"yes\" }", 1)
	write(t, cfgPath, next)
	r.hup(t)
	r.waitLog(t, "reloaded the mapping, listeners and sinks", 1)
	if !strings.Contains(r.log.String(), "sinks_added=0 sinks_changed=1 sinks_removed=0 sinks_kept=1 listeners_changed=true") {
		t.Errorf("the reload's summary:\n%s", r.log.String())
	}
	c, err := net.Dial("tcp", tcp)
	if err != nil {
		t.Fatalf("the TCP listener the reload added: %v", err)
	}
	fmt.Fprintf(c, "%s.hits:2|c\n%s.mapped.x:1|c\n", name, name)
	c.Close()

	// Carbon back: the spool kept across the reload is delivered.
	carbon.start(t)
	eventually(t, 20*time.Second, "carbon has all 10, spooled ones included", func() (bool, string) {
		got := carbonSum(t, carbon, name+".hits")
		return got == 10, fmt.Sprint(got)
	})
	// Prometheus gets the counter's total, not a restart: the series kept
	// its state under the new external labels.
	eventually(t, 15*time.Second, "Prometheus has the total under the new labels", func() (bool, string) {
		ss := prom.samples(t, name+`_hits_total{reloaded="yes"}`, time.Minute)
		if len(ss) == 0 {
			return false, "no samples"
		}
		return ss[len(ss)-1].V == "10", ss[len(ss)-1].V
	})
	eventually(t, 15*time.Second, "the new mapping", func() (bool, string) {
		ss := prom.samples(t, name+`_mapped_total{what="x"}`, time.Minute)
		return len(ss) > 0, fmt.Sprint(ss)
	})
	if v := r.selfMetric(t, "statsbridge_config_last_reload_successful"); v != 1 {
		t.Errorf("statsbridge_config_last_reload_successful %v after a good reload", v)
	}

	// A file with errors is refused, and the one in force stays.
	write(t, cfgPath, next+"\n[statsd]\nudp = 5\n")
	r.hup(t)
	r.waitLog(t, "reload refused: nothing reloaded; the configuration in force stays", 1)
	if v := r.selfMetric(t, "statsbridge_config_last_reload_successful"); v != 0 {
		t.Errorf("statsbridge_config_last_reload_successful %v after a refused reload", v)
	}
	r.sendUDP(t, name+".hits:1|c")
	eventually(t, 15*time.Second, "the configuration in force still delivers", func() (bool, string) {
		got := carbonSum(t, carbon, name+".hits")
		return got == 11, fmt.Sprint(got)
	})
	r.stop(t)
}

// TestReloadSinkWithANewIdentity: a sink whose layout changes is a new
// sink. The old one, in a carbon outage, spools what it could not deliver
// within shutdown_timeout, and the new one writes the new layout; started
// again on the old configuration, statsbridge delivers the old spool, so
// nothing is lost.
func TestReloadSinkWithANewIdentity(t *testing.T) {
	carbon := startCarbon(t)
	name := uniqueName("ident")
	spool := t.TempDir() // both runs' relays use it
	config := func(layout string) string {
		return fmt.Sprintf(`
shutdown_timeout = "2s"
[statsd]
udp = ["127.0.0.1:0"]
tcp = []
flush_interval = "1s"
[http]
listen = "127.0.0.1:0"
[[graphite]]
address = %q
layout = %q
spool_dir = %q
`, carbon.Addr, layout, spool)
	}
	r := startRelay(t, config("etsy"))
	cfgPath := filepath.Join(r.configDir, "statsbridge.toml")
	for range 3 {
		r.sendUDP(t, name+".hits:1|c")
	}
	etsyPath := "stats_counts." + name + ".hits"
	eventually(t, 15*time.Second, "carbon has 3 in the etsy layout", func() (bool, string) {
		got := carbonSum(t, carbon, etsyPath)
		return got == 3, fmt.Sprint(got)
	})

	carbon.stop()
	for range 2 {
		r.sendUDP(t, name+".hits:1|c")
	}
	// Each flush in the outage adds to the spool: two more after the send,
	// and the flush that holds the 2 is in the old sink's spool.
	spooled := func() float64 { return r.selfMetric(t, `statsbridge_sink_spool_bytes{sink="graphite[0]"}`) }
	for range 2 {
		before := spooled()
		eventually(t, 15*time.Second, "the etsy sink spools a flush in the outage", func() (bool, string) {
			v := spooled()
			return v > before, fmt.Sprint(v)
		})
	}
	write(t, cfgPath, config("paths"))
	r.hup(t)
	r.waitLog(t, "reloaded the mapping, listeners and sinks", 1)
	if !strings.Contains(r.log.String(), "sinks_added=1 sinks_changed=0 sinks_removed=1") {
		t.Errorf("the reload's summary:\n%s", r.log.String())
	}
	r.waitLog(t, "a sink the reload removed left data in its spool", 1)

	carbon.start(t)
	for range 4 {
		r.sendUDP(t, name+".hits:1|c")
	}
	eventually(t, 20*time.Second, "carbon has the new sink's 4 in the paths layout", func() (bool, string) {
		got := carbonSum(t, carbon, name+".hits")
		return got == 4, fmt.Sprint(got)
	})
	if got := carbonSum(t, carbon, etsyPath); got != 3 {
		t.Errorf("the old layout's path has %v, want the 3 delivered before the outage", got)
	}
	r.stop(t)
	spools, _ := os.ReadDir(spool)
	if len(spools) != 2 {
		t.Errorf("spool directories %v, want the old sink's and the new one's", spools)
	}

	// The old configuration again: its spool is delivered.
	again := startRelay(t, config("etsy"))
	eventually(t, 20*time.Second, "the old sink's spool is delivered", func() (bool, string) {
		got := carbonSum(t, carbon, etsyPath)
		return got == 5, fmt.Sprint(got)
	})
	again.stop(t)
}
