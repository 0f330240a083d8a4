package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// keepSending sends payloads every 50ms until the test ends, so that a tap
// that connects at any moment sees them.
func keepSending(t *testing.T, r *relay, payloads ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var sending sync.WaitGroup
	sending.Go(func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			r.sendUDP(t, payloads...)
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	})
	t.Cleanup(func() { cancel(); sending.Wait() })
}

// TestTapThroughAPipe: without a terminal, statsbridge tap prints a line
// for each name that matches its filter, with what it became, and each
// bad line.
func TestTapThroughAPipe(t *testing.T) {
	r := startRelay(t, `
[statsd]
udp = ["127.0.0.1:0"]
tcp = []
flush_interval = "1s"
[http]
listen = "127.0.0.1:0"
`)
	keepSending(t, r, "tapme.hits:1|c|#env:prod", "other.hits:1|c", "tapme.bad:1|q",
		"prosody.prosody_mod_c2s.connections.localhost.c2s.ipv4:2|g")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, statsbridgeBin, "tap", "--http.listen", r.HTTP, "--match", "tapme.*")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &logBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); cmd.Wait() }()
	want := map[string]bool{
		"tapme.hits|c|#env:prod -> tapme_hits{env=\"prod\"} counter (default mapping: the name is the family, tags are labels)": false,
		"bad line (bad_type): tapme.bad:1|q": false,
	}
	sc := bufio.NewScanner(stdout)
	var seen []string
	for missing := len(want); missing > 0 && sc.Scan(); {
		line := sc.Text()
		seen = append(seen, line)
		if done, ok := want[line]; ok && !done {
			want[line] = true
			missing--
		}
		if strings.Contains(line, "other.hits") || strings.Contains(line, "prosody") {
			t.Errorf("a name the filter leaves out: %q", line)
		}
	}
	for line, ok := range want {
		if !ok {
			t.Errorf("the tap never printed %q; it printed:\n%s\nstderr:\n%s", line, strings.Join(seen, "\n"), stderr.String())
		}
	}
}

// TestTapInATerminal: in a terminal (a tmux pane), statsbridge tap draws the
// live top view: names by rate with their mapping, bad lines with their
// reasons, refused series, and each sink's state.
func TestTapInATerminal(t *testing.T) {
	tmux := need(t, "tmux")
	carbon := startCarbon(t)
	r := startRelay(t, fmt.Sprintf(`
[statsd]
udp = ["127.0.0.1:0"]
tcp = []
flush_interval = "1s"
[limits]
max_labels = 2
[http]
listen = "127.0.0.1:0"
[[graphite]]
address = %q
layout = "paths"
`, carbon.Addr))
	keepSending(t, r, "tapme.hits:1|c", "tapme.hits:1|c", "tapme.bad:1|q", "tapme.wide:1|c|#a:1,b:2,c:3")

	socket := fmt.Sprintf("statsbridge-e2e-%d", time.Now().UnixNano())
	run := func(args ...string) string {
		out, err := exec.Command(tmux, append([]string{"-L", socket}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("tmux %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	run("-f", "/dev/null", "new-session", "-d", "-s", "tap", "-x", "180", "-y", "50",
		statsbridgeBin+" tap --http.listen "+r.HTTP+"; sleep 60")
	t.Cleanup(func() { exec.Command(tmux, "-L", socket, "kill-server").Run() })

	wants := []string{
		"statsbridge tap  " + r.HTTP,
		"NAMES BY RATE",
		"tapme.hits|c -> tapme_hits counter (default mapping",
		"REFUSED SERIES",
		"max_labels             tapme.wide|c|#a:1,b:2,c:3 -> tapme_wide{a=\"1\",b=\"2\",c=\"3\"}",
		"BAD LINES",
		"bad_type           tapme.bad:1|q",
		"SINKS",
		"graphite[0]      yes ",
		"graphite " + carbon.Addr,
	}
	var screen string
	deadline := time.Now().Add(20 * time.Second)
	for {
		screen = run("capture-pane", "-p", "-t", "tap")
		missing := ""
		for _, w := range wants {
			if !strings.Contains(screen, w) {
				missing = w
				break
			}
		}
		if missing == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the top view lacks %q after 20s:\n%s", missing, screen)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The busier name ranks first, at about 40 lines a second.
	if strings.Index(screen, "tapme.hits|c") > strings.Index(screen, "tapme.wide|c") {
		t.Errorf("names not ranked by rate:\n%s", screen)
	}
}

// TestTapRefusedFromANonAdminAddress: an address outside http.admin_allow
// gets no tap (and no reload), even one that may scrape /metrics.
func TestTapRefusedFromANonAdminAddress(t *testing.T) {
	r := startRelay(t, `
[statsd]
udp = ["127.0.0.1:0"]
tcp = []
[http]
listen = "127.0.0.1:0"
allow = ["127.0.0.0/8"]
admin_allow = ["127.0.0.2/32", "::1/128"]
`)
	out, err := exec.Command(statsbridgeBin, "tap", "--http.listen", r.HTTP).CombinedOutput()
	exit, ok := err.(*exec.ExitError)
	if !ok || exit.ExitCode() != 1 || !strings.Contains(string(out), "not in its http.admin_allow") {
		t.Errorf("tap from 127.0.0.1: %v\n%s", err, out)
	}
	r.scrape(t) // /metrics still answers
	resp, err := http.Post("http://"+r.HTTP+"/-/reload", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("POST /-/reload from 127.0.0.1: %s", resp.Status)
	}
}
