package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestHostileTCPIdleConnectionsCannotHoldEverySlot: connections that never
// send a line fill every TCP slot of the running binary; tcp_line_timeout
// closes them, and a real client that retries gets its line into /metrics.
func TestHostileTCPIdleConnectionsCannotHoldEverySlot(t *testing.T) {
	const slots = 64
	r := startRelay(t, fmt.Sprintf(`
[statsd]
udp = []
tcp = ["127.0.0.1:0"]
tcp_max_connections = %d
tcp_max_connections_per_source = 0
tcp_line_timeout = "1s"
[http]
listen = "127.0.0.1:0"
`, slots))
	for range slots {
		c, err := net.Dial("tcp", r.TCP)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	eventually(t, 10*time.Second, "every slot taken", func() (bool, string) {
		body := r.scrape(t)
		open, _ := sample(body, "statsbridge_ingest_tcp_connections")
		cut, _ := sample(body, `statsbridge_ingest_tcp_timeouts_total{timeout="line"}`)
		return open == strconv.Itoa(slots) || (cut != "" && cut != "0"), "open " + open + ", cut " + cut
	})

	// A real client retries, as StatsD clients do, until its line is in.
	eventually(t, 10*time.Second, "the real client's line in /metrics", func() (bool, string) {
		if c, err := net.Dial("tcp", r.TCP); err == nil {
			c.Write([]byte("hostile_real:1|c\n"))
			time.Sleep(50 * time.Millisecond)
			c.Close()
		}
		v, _ := sample(r.scrape(t), "hostile_real_total")
		return v != "", v
	})
	// The real client got in once the first idle ones were cut; on a busy
	// machine the last are cut a little later.
	var body string
	eventually(t, 10*time.Second, "every idle connection closed at tcp_line_timeout", func() (bool, string) {
		body = r.scrape(t)
		v, _ := sample(body, `statsbridge_ingest_tcp_timeouts_total{timeout="line"}`)
		return v == strconv.Itoa(slots), v
	})
	if !strings.Contains(r.log.String(), "no complete line within tcp_line_timeout") {
		t.Error("the line timeouts were not logged")
	}
	real, _ := sample(body, "hostile_real_total")
	got, _ := strconv.ParseFloat(real, 64)
	report(t, figures{scenario: fmt.Sprintf("%d idle TCP connections holding every slot", slots), sent: 1, delivered: min(got, 1),
		unit: "line of a real client", peakRSS: r.peakRSS(t), notes: "the idle ones are closed at tcp_line_timeout (1s)"})
	r.stop(t)
}

// TestHostileTinySampleRates: a rate that would make a counter +Inf is a
// bad line, counted; the good lines around it still count.
func TestHostileTinySampleRates(t *testing.T) {
	r := startRelay(t, `
[statsd]
udp = ["127.0.0.1:0"]
tcp = []
[http]
listen = "127.0.0.1:0"
`)
	r.sendUDP(t,
		"hostile_rate:1|c|@1e-320",
		"hostile_rate:1|c|@4.9e-324\nhostile_rate:1|c|@0.5",
		"hostile_rate:1|c|@1e-7",
		"hostile_rate:1e303|c|@1e-6",
		"hostile_timer:5|ms|@1e-300",
		"hostile_rate:1|c|@1e-6",
		"hostile_done:1|c",
	)
	eventually(t, 5*time.Second, "the last line", func() (bool, string) {
		v, _ := sample(r.scrape(t), "hostile_done_total")
		return v == "1", v
	})
	body := r.scrape(t)
	want := map[string]string{
		"hostile_rate_total": "1.000002e+06", // 1/0.5 + 1/1e-6
		`statsbridge_ingest_bad_lines_total{reason="bad_rate"}`:  "4",
		`statsbridge_ingest_bad_lines_total{reason="bad_value"}`: "1",
	}
	for series, w := range want {
		if got, _ := sample(body, series); got != w {
			t.Errorf("%s = %q, want %s", series, got, w)
		}
	}
	if _, ok := sample(body, "hostile_timer_seconds_count"); ok {
		t.Error("the timer with a rate of 1e-300 was taken")
	}
	if strings.Contains(body, "+Inf\n") {
		t.Errorf("/metrics holds an infinite value:\n%s", body)
	}
	counted := 0.0
	for _, series := range []string{`statsbridge_ingest_bad_lines_total{reason="bad_rate"}`, `statsbridge_ingest_bad_lines_total{reason="bad_value"}`} {
		v, _ := sample(body, series)
		f, _ := strconv.ParseFloat(v, 64)
		counted += f
	}
	report(t, figures{scenario: "sample rates down to 4.9e-324", sent: 5, delivered: counted, unit: "hostile lines",
		peakRSS: r.peakRSS(t), notes: "delivered: refused and counted as bad lines; the good lines beside them count; no state is +Inf"})
	r.stop(t)
}

// TestHostileSecondRelayOnTheSameUDPPort: a second statsbridge on the UDP
// port of a running one would, through SO_REUSEPORT, take part of its
// datagrams. It exits non-zero instead, and the first keeps everything.
func TestHostileSecondRelayOnTheSameUDPPort(t *testing.T) {
	first := startRelay(t, `
[statsd]
udp = ["127.0.0.1:0"]
tcp = []
readers = 2
[http]
listen = "127.0.0.1:0"
`)
	cfg := filepath.Join(t.TempDir(), "second.toml")
	write(t, cfg, fmt.Sprintf(`
[statsd]
udp = [%q]
tcp = []
readers = 2
[http]
listen = "127.0.0.1:0"
`, first.UDP))
	second := exec.Command(statsbridgeBin, "run", "--config", cfg)
	var out logBuffer
	second.Stdout, second.Stderr = &out, &out
	if err := second.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- second.Wait() }()
	select {
	case err := <-exited:
		if err == nil {
			t.Errorf("the second statsbridge exited 0:\n%s", out.String())
		}
		if !strings.Contains(out.String(), "address already in use by another process") {
			t.Errorf("the second statsbridge did not say why:\n%s", out.String())
		}
	case <-time.After(10 * time.Second):
		second.Process.Signal(os.Interrupt)
		<-exited
		t.Fatalf("the second statsbridge is running on %s beside the first:\n%s", first.UDP, out.String())
	}

	// Each datagram from its own port, so that a shared SO_REUSEPORT group
	// would spread them over both processes.
	const datagrams = 300
	for range datagrams {
		first.sendUDP(t, "hostile_shared:1|c")
	}
	eventually(t, 5*time.Second, "every datagram at the first statsbridge", func() (bool, string) {
		v, _ := sample(first.scrape(t), "hostile_shared_total")
		return v == strconv.Itoa(datagrams), v
	})
	report(t, figures{scenario: "a second relay started on the same UDP port", sent: datagrams, delivered: first.metric(t, "hostile_shared_total"),
		unit: "datagrams", peakRSS: first.peakRSS(t), notes: "the second exits non-zero; the first keeps every datagram"})
	first.stop(t)
}
