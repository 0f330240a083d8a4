package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSIGHUPReloadsTheMapping changes the mapping file under the running
// binary: a good file remaps new names and keeps old series; a bad one is
// refused with an error in the log, and the mapping in force stays.
func TestSIGHUPReloadsTheMapping(t *testing.T) {
	mapping := filepath.Join(t.TempDir(), "mapping.yml")
	write(t, mapping, "mappings:\n- match: app.*.hits\n  name: app_hits_total\n  labels:\n    app: $1\n")
	r := startRelay(t, fmt.Sprintf(`
[statsd]
udp = ["127.0.0.1:0"]
tcp = []
[http]
listen = "127.0.0.1:0"
[mapping]
file = %q
`, mapping))

	want := func(series, value string) {
		t.Helper()
		eventually(t, 5*time.Second, series+" = "+value, func() (bool, string) {
			v, _ := sample(r.scrape(t), series)
			return v == value, v
		})
	}
	hup := func() {
		t.Helper()
		if err := r.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	r.sendUDP(t, "app.web.hits:1|c")
	want(`app_hits_total{app="web"}`, "1")

	write(t, mapping, "mappings:\n- match: app.*.hits\n  name: requests_total\n  labels:\n    service: $1\n")
	hup()
	eventually(t, 5*time.Second, "the reload is logged", func() (bool, string) {
		return strings.Contains(r.log.String(), "reloaded the mapping"), r.log.String()
	})
	r.sendUDP(t, "app.web.hits:2|c")
	want(`requests_total{service="web"}`, "2")
	want(`app_hits_total{app="web"}`, "1") // the old series keeps its state

	write(t, mapping, "mappings:\n- match: app.*.hits\n  name: x\n  timer_type: histogram\n")
	hup()
	eventually(t, 5*time.Second, "the bad file is refused", func() (bool, string) {
		return strings.Contains(r.log.String(), "reload refused"), r.log.String()
	})
	r.sendUDP(t, "app.web.hits:3|c")
	want(`requests_total{service="web"}`, "5")

	os.Remove(mapping)
	hup()
	eventually(t, 5*time.Second, "a missing file is refused", func() (bool, string) {
		return strings.Count(r.log.String(), "reload refused") == 2, r.log.String()
	})
	r.stop(t)
}
