package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// statsbridgeBin is the statsbridge built by build.sh for this test run.
var statsbridgeBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "statsbridge-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	statsbridgeBin = filepath.Join(dir, "statsbridge")
	build := exec.Command("../build.sh", statsbridgeBin)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building statsbridge with build.sh:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// need finds a server binary. Without it the test is skipped, but under
// CI=true it fails: CI must prove the end-to-end tests ran.
func need(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not installed, and CI=true: the test command must install it", name)
		}
		t.Skipf("%s is not installed (run ./test.sh, which installs it)", name)
	}
	return path
}

// logBuffer collects a process's output for assertions and failure reports.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// relay is a running statsbridge process.
type relay struct {
	cmd       *exec.Cmd
	log       *logBuffer
	exited    chan struct{}
	exitErr   error
	UDP, TCP  string
	HTTP      string
	stopped   bool
	configDir string
}

var (
	startedLine = regexp.MustCompile(`msg="statsbridge started".*statsd="([^"]*)" http=(\S+)`)
	udpAddr     = regexp.MustCompile(`udp (\S+?)(,|$)`)
	tcpAddr     = regexp.MustCompile(`tcp (\S+?)(,|$)`)
)

// udpRelay is the configuration most tests start from: StatsD on a UDP
// port the kernel picks, no TCP, a flush every second, and /metrics on a
// port the kernel picks. Sinks and other tables follow it; top-level keys
// go before it.
const udpRelay = `
[statsd]
udp = ["127.0.0.1:0"]
tcp = []
flush_interval = "1s"
[http]
listen = "127.0.0.1:0"
`

// startRelay runs statsbridge with the given TOML configuration (ports 0
// are fine: the bound addresses are read from its start-up log line) and
// stops it when the test ends.
func startRelay(t testing.TB, configTOML string, args ...string) *relay {
	t.Helper()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "statsbridge.toml")
	if err := os.WriteFile(cfgPath, []byte(configTOML), 0o644); err != nil {
		t.Fatal(err)
	}
	r := &relay{log: &logBuffer{}, exited: make(chan struct{}), configDir: dir}
	r.cmd = exec.Command(statsbridgeBin, append([]string{"run", "--config", cfgPath}, args...)...)
	r.cmd.Stdout, r.cmd.Stderr = r.log, r.log
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.exitErr = r.cmd.Wait(); close(r.exited) }()
	t.Cleanup(func() {
		if !r.stopped {
			r.cmd.Process.Kill()
			<-r.exited
		}
		if t.Failed() {
			t.Logf("statsbridge log:\n%s", r.log.String())
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		if m := startedLine.FindStringSubmatch(r.log.String()); m != nil {
			if u := udpAddr.FindStringSubmatch(m[1]); u != nil {
				r.UDP = u[1]
			}
			if c := tcpAddr.FindStringSubmatch(m[1]); c != nil {
				r.TCP = c[1]
			}
			r.HTTP = m[2]
			return r
		}
		select {
		case <-r.exited:
			t.Fatalf("statsbridge exited at start (%v):\n%s", r.exitErr, r.log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("statsbridge did not start in 15s:\n%s", r.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop sends SIGTERM and requires a clean exit.
func (r *relay) stop(t testing.TB) {
	t.Helper()
	r.cmd.Process.Signal(syscall.SIGTERM)
	r.wait(t)
}

// wait requires the process to exit cleanly within 30s.
func (r *relay) wait(t testing.TB) {
	t.Helper()
	r.stopped = true
	select {
	case <-r.exited:
	case <-time.After(30 * time.Second):
		r.cmd.Process.Kill()
		t.Fatalf("statsbridge did not exit within 30s:\n%s", r.log.String())
	}
	if r.exitErr != nil {
		t.Fatalf("statsbridge exited with %v:\n%s", r.exitErr, r.log.String())
	}
}

// sendUDP sends each payload as one datagram.
func (r *relay) sendUDP(t testing.TB, payloads ...string) {
	t.Helper()
	sendUDPTo(t, r.UDP, payloads...)
}

// sendUDPTo sends each payload as one datagram to addr.
func sendUDPTo(t testing.TB, addr string, payloads ...string) {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, p := range payloads {
		if _, err := c.Write([]byte(p)); err != nil {
			t.Fatal(err)
		}
	}
}

// sendTCP writes payload on one connection and closes it.
func (r *relay) sendTCP(t testing.TB, payload string) {
	t.Helper()
	c, err := net.Dial("tcp", r.TCP)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, payload); err != nil {
		t.Fatal(err)
	}
}

// scrape fetches /metrics as OpenMetrics text.
func (r *relay) scrape(t testing.TB) string {
	t.Helper()
	body, _ := getMetrics(t, r.HTTP, "application/openmetrics-text; version=1.0.0")
	return string(body)
}

// getMetrics fetches /metrics from addr with an Accept header, and requires
// a 200.
func getMetrics(t testing.TB, addr, accept string) (body []byte, contentType string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/metrics", nil)
	req.Header.Set("Accept", accept)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ = io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s/metrics: %d %s", addr, resp.StatusCode, body)
	}
	return body, resp.Header.Get("Content-Type")
}

// sample finds one sample's value in an exposition, by its exact series text
// (`name{labels}`), or reports false.
func sample(exposition, series string) (string, bool) {
	sc := bufio.NewScanner(strings.NewReader(exposition))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			return strings.Fields(rest)[0], true
		}
	}
	return "", false
}

// eventually polls cond until it holds or timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	eventuallyEvery(t, 100*time.Millisecond, timeout, what, cond)
}

// eventuallyEvery is eventually for a cond that is costly to check (a
// scrape of a million series), tried once every poll.
func eventuallyEvery(t testing.TB, poll, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, detail := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %v: %s", what, timeout, detail)
		}
		time.Sleep(poll)
	}
}

// freePort returns a TCP port that was free a moment ago, for servers that
// cannot report the port they picked.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// uniqueName gives each test run its own metric names, so that runs against
// long-lived servers never see each other's data.
func uniqueName(prefix string) string {
	return fmt.Sprintf("%s_%d", prefix, time.Now().UnixNano()%1_000_000_000)
}
