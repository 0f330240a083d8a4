package main

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/statsbridge/statsbridge/config"
)

// fakeCarbon collects the plaintext lines written to it.
type fakeCarbon struct {
	l     net.Listener
	mu    sync.Mutex
	lines []string
}

func newFakeCarbon(t *testing.T) *fakeCarbon {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeCarbon{l: l}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					f.mu.Lock()
					f.lines = append(f.lines, sc.Text())
					f.mu.Unlock()
				}
			}()
		}
	}()
	t.Cleanup(func() { l.Close() })
	return f
}

// sum adds up the values written for path.
func (f *fakeCarbon) sum(path string) float64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	total := 0.0
	for _, line := range f.lines {
		fields := strings.Fields(line)
		if len(fields) == 3 && fields[0] == path {
			v, _ := strconv.ParseFloat(fields[1], 64)
			total += v
		}
	}
	return total
}

type addrs struct{ udp, tcp, http string }

// startRun runs statsbridge in-process and returns its bound addresses and
// a function that stops it and returns run's error.
func startRun(t *testing.T, cfg config.Config) (addrs, func() error) {
	return startRunWith(t, cfg, hooks{})
}

// startRunWith is startRun with hooks (reloads).
func startRunWith(t *testing.T, cfg config.Config, h hooks) (addrs, func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	up := make(chan addrs, 1)
	done := make(chan error, 1)
	h.started = func(udp, tcp []net.Addr, h net.Addr) {
		a := addrs{udp: udp[0].String(), http: h.String()}
		if len(tcp) > 0 {
			a.tcp = tcp[0].String()
		}
		up <- a
	}
	go func() { done <- run(ctx, cfg, slog.New(slog.DiscardHandler), h) }()
	select {
	case a := <-up:
		return a, func() error { cancel(); return <-done }
	case err := <-done:
		cancel()
		t.Fatalf("run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("run did not start")
	}
	return addrs{}, nil
}

func testConfig() config.Config {
	cfg := config.Default()
	cfg.Statsd.UDP = []string{"127.0.0.1:0"}
	cfg.Statsd.TCP = []string{"127.0.0.1:0"}
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.Statsd.FlushInterval = config.Duration(time.Hour) // only the shutdown flush
	return cfg
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestRunServesMetricsAndDeliversOnStop(t *testing.T) {
	carbon := newFakeCarbon(t)
	cfg := testConfig()
	g := config.DefaultGraphite()
	g.Address, g.Layout = carbon.l.Addr().String(), config.LayoutPaths
	cfg.Graphite = []config.Graphite{g}
	a, stop := startRun(t, cfg)

	udp, _ := net.Dial("udp", a.udp)
	udp.Write([]byte("skeleton.hits:1|c\nskeleton.hits:2|c"))
	udp.Write([]byte("skeleton.temp:21.5|g"))
	udp.Close()

	deadline := time.Now().Add(5 * time.Second)
	for {
		_, body := get(t, "http://"+a.http+"/metrics")
		if strings.Contains(body, "\nskeleton_hits_total 3\n") && strings.Contains(body, "\nskeleton_temp 21.5\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics lacks skeleton_hits_total 3 and skeleton_temp 21.5:\n%s", body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Every self-metric family is in the README's table.
	_, body := get(t, "http://"+a.http+"/metrics")
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(body, "\n") {
		if name, ok := strings.CutPrefix(line, "# TYPE statsbridge_"); ok {
			family := "statsbridge_" + strings.TrimSuffix(strings.Fields(name)[0], "_total")
			if !strings.Contains(string(readme), "| `"+family) {
				t.Errorf("self-metric %s is not in the README's table", family)
			}
		}
	}
	// client_golang's Go and process collectors, through the model.
	for _, want := range []string{"# TYPE go_goroutines gauge", "# TYPE go_gc_duration_seconds summary",
		"# TYPE process_cpu_seconds_total counter", "statsbridge_build_info{version=\"dev\",goversion=\"" + runtime.Version() + "\"} 1",
		"statsbridge_config_last_reload_successful 1", "statsbridge_last_received_timestamp_seconds{prefix=\"prosody\"} 0"} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	for _, rows := range []string{"| `process_*`", "| `go_*`"} {
		if !strings.Contains(string(readme), rows) {
			t.Errorf("the README's self-metrics table has no %s row", rows)
		}
	}
	if code, body := get(t, "http://"+a.http+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}

	// A last increment right before the stop still reaches the sink.
	tcp, _ := net.Dial("tcp", a.tcp)
	tcp.Write([]byte("skeleton.hits:4|c\n"))
	tcp.Close()
	time.Sleep(50 * time.Millisecond)
	if err := stop(); err != nil {
		t.Fatalf("run returned %v", err)
	}
	deadline = time.Now().Add(5 * time.Second)
	for carbon.sum("skeleton.hits") != 7 {
		if time.Now().After(deadline) {
			t.Fatalf("carbon got %v for skeleton.hits, want 7", carbon.sum("skeleton.hits"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRunStartsNothingOnError(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	free, _ := net.ListenPacket("udp", "127.0.0.1:0")
	udpAddr := free.LocalAddr().String()
	free.Close()

	cfg := testConfig()
	cfg.Statsd.UDP = []string{udpAddr}
	cfg.HTTP.Listen = taken.Addr().String() // cannot be bound
	err = run(context.Background(), cfg, slog.New(slog.DiscardHandler), hooks{})
	if err == nil || !strings.Contains(err.Error(), "http listen") {
		t.Fatalf("run: %v, want an http listen error", err)
	}
	again, err := net.ListenPacket("udp", udpAddr)
	if err != nil {
		t.Fatalf("the StatsD UDP socket was left open: %v", err)
	}
	again.Close()
}

// TestOrphanSpoolsAreReported: under a spool_dir, a spool that holds data
// and that no sink opened is logged; the ones sinks opened, and empty ones,
// are not.
func TestOrphanSpoolsAreReported(t *testing.T) {
	root := t.TempDir()
	for dir, segment := range map[string]bool{"graphite-used": true, "graphite-orphan": true, "influx-empty": false} {
		if err := os.MkdirAll(filepath.Join(root, dir), 0o750); err != nil {
			t.Fatal(err)
		}
		if segment {
			if err := os.WriteFile(filepath.Join(root, dir, "1.spool"), []byte("x"), 0o640); err != nil {
				t.Fatal(err)
			}
		}
	}
	var log strings.Builder
	logger := slog.New(slog.NewTextHandler(&log, nil))
	warnAboutOrphanSpools([]*pushSink{{plan: sinkPlan{spoolDir: filepath.Join(root, "graphite-used")}}, {}}, logger)
	if got := strings.Count(log.String(), "a spool no configured sink uses"); got != 1 ||
		!strings.Contains(log.String(), "graphite-orphan") {
		t.Errorf("want one warning, for graphite-orphan; got:\n%s", log.String())
	}
}
