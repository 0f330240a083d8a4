package e2e

// The reliability suite: statsbridge's promises (nothing accepted is lost,
// no client or backend can break it) tried the way a hostile user and an
// outage would, against the real backends. CI runs it shortened;
// ./reliability.sh runs it at full length (60 s outages, a million
// series) and prints the figures RELIABILITY.md gives.

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// reliabilityScale is how long and how large the scenarios run.
type reliabilityScale struct {
	name string
	// outage is how long a backend is down, fails or hangs.
	outage time.Duration
	// linesPerSecond is the steady load during an outage.
	linesPerSecond int
	// series is the series count of the large flush, and queueSize the
	// sink's queue_size for it ("" is the default, 64MiB).
	series    int
	queueSize string
	// largeFlushInterval is the flush interval for it: long enough for
	// the backend to take a flush of that many series on a 2-core machine
	// (Debian's Prometheus 2.42 took about 45,000 a second here, beside
	// the relay). Behind a backend slower than that, the flush would not
	// be whole, by design (TestABackendSlowerThanTheFlushesGetsEverySeriesInTurn).
	largeFlushInterval string
}

// scale is the CI scale, or the full one under STATSBRIDGE_RELIABILITY=long.
func scale() reliabilityScale {
	if os.Getenv("STATSBRIDGE_RELIABILITY") == "long" {
		return reliabilityScale{name: "long", outage: 60 * time.Second, linesPerSecond: 3000, series: 1_000_000, largeFlushInterval: "60s"}
	}
	// 100,000 series is a flush of about 16 MiB for remote-write: a 4MiB
	// queue makes it larger than the queue, as 1M series are at 64MiB.
	return reliabilityScale{name: "ci", outage: 10 * time.Second, linesPerSecond: 1500, series: 100_000, queueSize: "4MiB", largeFlushInterval: "10s"}
}

// figures is one scenario's row of RELIABILITY.md.
type figures struct {
	scenario           string
	sent, delivered    float64
	unit               string // what sent and delivered count
	peakRSS            string
	notes              string
	lostAllowed, extra string
}

// report logs a scenario's figures and, when STATSBRIDGE_RELIABILITY_REPORT
// names a file, appends them to it as a table row.
func report(t *testing.T, f figures) {
	t.Helper()
	row := fmt.Sprintf("| %s | %s | %s %s | %s | %s | %s | %s |", f.scenario, scale().name,
		strconv.FormatFloat(f.sent, 'f', -1, 64), f.unit, strconv.FormatFloat(f.delivered, 'f', -1, 64),
		strconv.FormatFloat(f.sent-f.delivered, 'f', -1, 64), f.peakRSS, f.notes)
	t.Log("figures:", row)
	path := os.Getenv("STATSBRIDGE_RELIABILITY_REPORT")
	if path == "" {
		return
	}
	reportMu.Lock()
	defer reportMu.Unlock()
	fd, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Errorf("report: %v", err)
		return
	}
	defer fd.Close()
	fmt.Fprintln(fd, row)
}

var reportMu sync.Mutex

// peakRSS is the relay's peak resident memory so far (VmHWM).
func (r *relay) peakRSS(t testing.TB) string {
	return fmt.Sprintf("%d MiB", r.memoryMiB(t, "VmHWM"))
}

// memoryMiB reads one of the relay's memory figures from /proc (VmRSS,
// VmHWM), in MiB.
func (r *relay) memoryMiB(t testing.TB, field string) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", r.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			return (kb + 512) / 1024
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, r.cmd.Process.Pid)
	return 0
}

// metric reads one series' value from the relay's /metrics, 0 when absent.
func (r *relay) metric(t testing.TB, series string) float64 {
	t.Helper()
	v, _ := sample(r.scrape(t), series)
	f, _ := strconv.ParseFloat(v, 64)
	return f
}

// fault is how a faultProxy answers.
type fault string

const (
	pass        fault = "pass"      // forward to the backend
	fail500     fault = "500"       // 500 Internal Server Error
	throttleDay fault = "429-a-day" // 429 with Retry-After: 86400, once, then pass
	refuseAll   fault = "400"       // 400 to everything
	hang        fault = "hang"      // never answer while the fault lasts
	slow        fault = "1KB/s"     // read the request at 1 KB/s
	unavailable fault = "503-a-day" // 503 with Retry-After: 86400, once, then pass
)

// faultProxy sits between statsbridge and a real backend and injects one
// fault at a time; pass forwards to the backend.
type faultProxy struct {
	URL      string
	mode     atomic.Value // fault
	requests atomic.Int64 // requests received while not passing
	// release is closed when a hang ends.
	release atomic.Pointer[chan struct{}]
	server  *http.Server
}

func startFaultProxy(t *testing.T, backend string) *faultProxy {
	t.Helper()
	target, err := url.Parse(backend)
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{}
	release := make(chan struct{})
	p.release.Store(&release)
	p.mode.Store(pass)
	forward := httputil.NewSingleHostReverseProxy(target)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.URL = "http://" + l.Addr().String()
	p.server = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mode := p.mode.Load().(fault)
		if mode != pass {
			p.requests.Add(1)
		}
		switch mode {
		case fail500:
			http.Error(w, "injected failure", http.StatusInternalServerError)
		case throttleDay, unavailable:
			p.mode.CompareAndSwap(mode, pass)
			w.Header().Set("Retry-After", "86400")
			status := http.StatusTooManyRequests
			if mode == unavailable {
				status = http.StatusServiceUnavailable
			}
			http.Error(w, "come back tomorrow", status)
		case refuseAll:
			http.Error(w, "injected refusal", http.StatusBadRequest)
		case hang:
			select {
			case <-*p.release.Load():
			case <-r.Context().Done():
			}
			http.Error(w, "was hanging", http.StatusServiceUnavailable)
		case slow:
			for {
				if _, err := io.CopyN(io.Discard, r.Body, 100); err != nil {
					break
				}
				select {
				case <-time.After(100 * time.Millisecond): // 1 KB/s
				case <-r.Context().Done():
					return
				}
			}
			http.Error(w, "read slowly", http.StatusServiceUnavailable)
		default:
			forward.ServeHTTP(w, r)
		}
	})}
	go p.server.Serve(l)
	t.Cleanup(func() { p.server.Close() })
	return p
}

// set injects a fault; pass ends it, and lets a hanging request go.
func (p *faultProxy) set(f fault) {
	old := p.mode.Swap(f)
	if old == hang && f != hang {
		next := make(chan struct{})
		close(*p.release.Swap(&next))
	}
}

// TestBackendOutageLosesNothing stops each backend for an outage (10 s in
// CI, 60 s at full length) under a steady load, with and without a spool,
// and starts it again. Afterwards it must hold exactly what a second
// instance of the same backend, up all along, got from the same flushes: no
// missing point and no wrong value for any interval, and totals equal to
// what was sent.
func TestBackendOutageLosesNothing(t *testing.T) {
	sc := scale()
	for _, b := range backends {
		for _, spooled := range []bool{false, true} {
			name := b.kind + "/memory"
			if spooled {
				name = b.kind + "/spool"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				victimSink, readVictim, victim := b.start(t)
				controlSink, readControl, _ := b.start(t)
				if spooled {
					victimSink += fmt.Sprintf("spool_dir = %q\n", t.TempDir())
				}
				prefix := uniqueName("outage")
				names := []string{prefix + ".a", prefix + ".b", prefix + ".c"}
				r := startRelay(t, "shutdown_timeout = \"30s\"\n"+udpRelay+victimSink+controlSink)
				l := startLoad(t, r.UDP, names, sc.linesPerSecond)
				time.Sleep(5 * time.Second)
				victim.stop()
				time.Sleep(sc.outage)
				if spooled {
					if n := r.metric(t, `statsbridge_sink_spool_bytes{sink="`+sinkName(b.kind)+`[0]"}`); n == 0 {
						t.Error("nothing was in the spool during the outage")
					}
				}
				victim.start(t)
				time.Sleep(8 * time.Second)
				sent := l.finish()
				time.Sleep(1500 * time.Millisecond)
				body := r.scrape(t)
				rss := r.peakRSS(t)
				r.stop(t)
				if drops, _ := sample(body, "statsbridge_ingest_udp_kernel_drops_total"); drops != "0" {
					t.Fatalf("the kernel dropped %s datagrams: totals cannot be checked", drops)
				}
				var allSent, allDelivered float64
				for _, name := range names {
					var v, c points
					eventually(t, 30*time.Second, name+" stored in both", func() (bool, string) {
						v, c = readVictim(t, name), readControl(t, name)
						return b.total(c) == float64(sent[name]) && v.sameAs(c) == "", fmt.Sprintf(
							"sent %d; control total %v; victim differs: %s", sent[name], b.total(c), v.sameAs(c))
					})
					allSent += float64(sent[name])
					allDelivered += b.total(v)
					t.Logf("%s: %d points, total %v in both", name, len(c), b.total(c))
				}
				report(t, figures{scenario: fmt.Sprintf("%s down %v, %s", b.kind, sc.outage, map[bool]string{false: "no spool", true: "spool"}[spooled]),
					sent: allSent, delivered: allDelivered, unit: "increments", peakRSS: rss,
					notes: fmt.Sprintf("%d lines/s; every interval equal to a backend that stayed up", sc.linesPerSecond)})
			})
		}
	}
}

// sinkName is the self-metrics' sink name of a backend kind.
func sinkName(kind string) string {
	return map[string]string{"carbon": "graphite", "influxdb": "influx", "prometheus": "remote_write"}[kind]
}

// TestSIGKILLInAnOutageLosesNothingSpooled: with spool_dir set and the
// default queue_size, every backend goes down under load; what arrives
// during the outage is spooled at once, so a SIGKILL after the last flush
// loses none of it: started again on the same spool, statsbridge delivers
// every increment to each backend once it is back.
func TestSIGKILLInAnOutageLosesNothingSpooled(t *testing.T) {
	sc := scale()
	var sinksTOML string
	var readers []func(testing.TB, string) points
	var servers []*server
	spool := t.TempDir()
	for _, b := range backends {
		sink, read, s := b.start(t)
		sinksTOML += sink + fmt.Sprintf("spool_dir = %q\n", spool)
		readers = append(readers, read)
		servers = append(servers, s)
	}
	cfg := udpRelay + sinksTOML
	r := startRelay(t, cfg)
	prefix := uniqueName("killed")
	names := []string{prefix + ".a", prefix + ".b"}
	for _, s := range servers {
		s.stop()
	}
	l := startLoad(t, r.UDP, names, sc.linesPerSecond)
	time.Sleep(sc.outage)
	sent := l.finish()
	// Two flushes after the last line: it left the model and, the backends
	// being down, went to the spools.
	time.Sleep(2500 * time.Millisecond)
	body := r.scrape(t)
	if drops, _ := sample(body, "statsbridge_ingest_udp_kernel_drops_total"); drops != "0" {
		t.Fatalf("the kernel dropped %s datagrams: totals cannot be checked", drops)
	}
	for _, b := range backends {
		if q, _ := sample(body, `statsbridge_sink_queue_bytes{sink="`+sinkName(b.kind)+`[0]"}`); q != "0" {
			t.Errorf("%s: %s bytes wait only in memory in the outage", b.kind, q)
		}
	}
	rss := r.peakRSS(t)
	r.cmd.Process.Kill()
	<-r.exited
	r.stopped = true

	for _, s := range servers {
		s.start(t)
	}
	again := startRelay(t, cfg)
	total := 0
	for _, n := range sent {
		total += n
	}
	for i, b := range backends {
		delivered := 0.0
		for _, name := range names {
			eventually(t, 60*time.Second, b.kind+": "+name+" delivered from the spool", func() (bool, string) {
				p := readers[i](t, name)
				return b.total(p) == float64(sent[name]), fmt.Sprintf("total %v of %d sent", b.total(p), sent[name])
			})
			delivered += b.total(readers[i](t, name))
		}
		report(t, figures{scenario: fmt.Sprintf("SIGKILL after %v of outage, %s, spool", sc.outage, b.kind),
			sent: float64(total), delivered: delivered, unit: "increments", peakRSS: rss,
			notes: "default queue_size; killed two flushes after the last line"})
	}
	again.stop(t)
}

// TestAFlushOfManySeriesReachesAHealthyBackendWhole: a flush far larger
// than queue_size (100,000 series through a 4MiB queue in CI; a million at
// the default 64MiB at full length) reaches a real Prometheus whole, every
// flush, with nothing dropped.
func TestAFlushOfManySeriesReachesAHealthyBackendWhole(t *testing.T) {
	sc := scale()
	prom := startPrometheus(t)
	queue := ""
	if sc.queueSize != "" {
		queue = fmt.Sprintf("queue_size = %q\n", sc.queueSize)
	}
	r := startRelay(t, fmt.Sprintf(`
[statsd]
udp = ["127.0.0.1:0"]
tcp = []
flush_interval = %q
[limits]
max_series = %d
max_series_per_family = %d
[http]
listen = "127.0.0.1:0"
[[remote_write]]
url = "%s/api/v1/write"
timeout = "60s"
%s`, sc.largeFlushInterval, sc.series+1000, sc.series/10+1000, prom.URL, queue))
	t.Cleanup(func() {
		if t.Failed() && !r.stopped {
			t.Logf("the sink's counters at the failure:\n%s", grepLines(r.scrape(t), "statsbridge_sink_"))
		}
	})
	// Ten families of series/10 series each, one line per series. The
	// kernel may drop some of a burst of new series on a busy machine: the
	// lines are sent again until the model holds every series (what this
	// test is about is their flushes, not their values). A scrape of this
	// many series is large, so it is polled slowly.
	family := uniqueName("many")
	for round := 1; ; round++ {
		sendSeries(t, r, family, sc.series)
		held, last := 0.0, -1.0
		for held != last {
			time.Sleep(3 * time.Second)
			last, held = held, r.metric(t, "statsbridge_model_series")
		}
		if held >= float64(sc.series) {
			break
		}
		if round == 5 {
			t.Fatalf("%v series held after sending every one %d times", held, round)
		}
		t.Logf("round %d: %v of %d series held (%v datagrams dropped by the kernel); sending again",
			round, held, sc.series, r.metric(t, "statsbridge_ingest_udp_kernel_drops_total"))
	}
	// Both checks read every series (a PromQL count, a scrape of
	// statsbridge): polled often, they would take the CPU the flushes need.
	poll := max(2*time.Second, time.Duration(sc.series/50000)*time.Second)
	query := fmt.Sprintf(`count({__name__=~"%s_f[0-9]_total"})`, family)
	eventuallyEvery(t, poll, time.Duration(sc.series/2000+60)*time.Second, "every series in prometheus", func() (bool, string) {
		n := prom.instant(t, query)
		return n == float64(sc.series), fmt.Sprintf("%v of %d series", n, sc.series)
	})
	// Two more flushes of every series, through the same small queue.
	before := r.metric(t, `statsbridge_sink_points_total{sink="remote_write[0]"}`)
	eventuallyEvery(t, poll, time.Duration(sc.series/2000+60)*time.Second, "two more whole flushes", func() (bool, string) {
		n := r.metric(t, `statsbridge_sink_points_total{sink="remote_write[0]"}`)
		return n-before >= 2*float64(sc.series), fmt.Sprintf("%v points since", n-before)
	})
	body := r.scrape(t)
	dropped := 0.0
	for _, reason := range []string{"queue_full", "retry_age", "rejected", "permanent", "shutdown", "spool_full", "spool_error"} {
		v, _ := sample(body, fmt.Sprintf(`statsbridge_sink_dropped_points_total{reason=%q,sink="remote_write[0]"}`, reason))
		f, _ := strconv.ParseFloat(v, 64)
		dropped += f
		if f != 0 {
			t.Errorf("%v points dropped as %s from a healthy backend", f, reason)
		}
	}
	waited, _ := sample(body, `statsbridge_sink_flow_wait_seconds_total{sink="remote_write[0]"}`)
	w, _ := strconv.ParseFloat(waited, 64)
	if w == 0 {
		t.Errorf("the flush never waited for room: it was not larger than the queue")
	}
	points := r.metric(t, `statsbridge_sink_points_total{sink="remote_write[0]"}`)
	report(t, figures{scenario: fmt.Sprintf("flush of %d series to a healthy Prometheus", sc.series),
		sent: points + dropped, delivered: points, unit: "points", peakRSS: r.peakRSS(t),
		notes: fmt.Sprintf("queue_size %s; the flushes waited %.1f s for room", map[bool]string{true: "64MiB (default)", false: sc.queueSize}[sc.queueSize == ""], w)})
	r.stop(t)
}

// sendSeries sends one increment to each of n series of ten families.
func sendSeries(t *testing.T, r *relay, family string, n int) {
	t.Helper()
	c, err := net.Dial("udp", r.UDP)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var b strings.Builder
	lines := 0
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for i := range n {
		if lines > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "%s_f%d:1|c|#s:%d", family, i%10, i/10)
		if lines++; lines == 20 || i == n-1 {
			if _, err := c.Write([]byte(b.String())); err != nil {
				t.Fatal(err)
			}
			b.Reset()
			lines = 0
			if i%100 == 99 {
				<-tick.C // about 100,000 lines/s at most
			}
		}
	}
}

// instant runs an instant PromQL query whose result is one number (0 when
// it has none).
func (p *prometheus) instant(t testing.TB, query string) float64 {
	t.Helper()
	resp, err := http.Get(p.URL + "/api/v1/query?" + url.Values{"query": {query}}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Data struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	if len(out.Data.Result) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(out.Data.Result[0].Value[1].(string), 64)
	return v
}

// TestFailingBackends puts a fault between statsbridge and a real backend
// for the length of an outage: 500s, a 429 or 503 asking for a day, 400 to
// everything, a hang, a backend reading at 1 KB/s. Each must cost no data
// but what the backend refused (the counters' totals reach it whole once
// the fault ends), stall nothing for long, and hammer nobody.
func TestFailingBackends(t *testing.T) {
	sc := scale()
	tests := []struct {
		backend string
		fault   fault
		// refusedLoses: the fault refuses the points themselves, so they
		// are dropped (counted); the cumulative totals still arrive.
		refusedLoses bool
	}{
		{"prometheus", fail500, false},
		{"prometheus", throttleDay, false},
		{"prometheus", unavailable, false},
		{"prometheus", refuseAll, true},
		{"prometheus", hang, false},
		{"prometheus", slow, false},
		{"influxdb", fail500, false},
		{"influxdb", refuseAll, true},
		{"influxdb", hang, false},
	}
	for _, tt := range tests {
		t.Run(tt.backend+"/"+string(tt.fault), func(t *testing.T) {
			t.Parallel()
			var backendURL, sinkTOML string
			var read func(name string) float64
			switch tt.backend {
			case "prometheus":
				p := startPrometheus(t)
				backendURL = p.URL
				read = func(name string) float64 {
					return p.instant(t, fmt.Sprintf("max(max_over_time(%s_total[15m]))", strings.ReplaceAll(name, ".", "_")))
				}
			case "influxdb":
				in := startInflux(t)
				in.createDB(t, "statsd")
				backendURL = in.URL
				// Cumulative counters, as remote-write's: the totals that
				// arrive after a refusal carry what the refused points had.
				// Their shape is Telegraf's prometheus input's.
				read = func(name string) float64 {
					rows := in.queryOptional(t, "statsd", fmt.Sprintf(`SELECT last("counter") FROM %q`, strings.ReplaceAll(name, ".", "_")+"_total"))
					if len(rows) == 0 {
						return 0
					}
					v, _ := rows[0][1].(float64)
					return v
				}
			}
			proxy := startFaultProxy(t, backendURL)
			switch tt.backend {
			case "prometheus":
				sinkTOML = fmt.Sprintf("[[remote_write]]\nurl = %q\n", proxy.URL+"/api/v1/write")
			case "influxdb":
				sinkTOML = fmt.Sprintf("[[influx]]\nurl = %q\ncounters = \"cumulative\"\n", proxy.URL+"/write?db=statsd")
			}
			sinkTOML += "timeout = \"2s\"\nmax_retry_after = \"3s\"\n"
			r := startRelay(t, "shutdown_timeout = \"30s\"\n"+udpRelay+sinkTOML)
			prefix := uniqueName("faulty")
			names := []string{prefix + ".a", prefix + ".b", prefix + ".c"}
			l := startLoad(t, r.UDP, names, 300)
			time.Sleep(3 * time.Second)
			proxy.set(tt.fault)
			time.Sleep(sc.outage)
			if tt.fault != throttleDay && tt.fault != unavailable {
				proxy.set(pass)
			}
			faultRequests := proxy.requests.Load()
			time.Sleep(5 * time.Second)
			sent := l.finish()
			sink := sinkName(tt.backend) + "[0]"
			var total, delivered float64
			for _, name := range names {
				total += float64(sent[name])
				eventually(t, 30*time.Second, name+" delivered whole after the fault", func() (bool, string) {
					v := read(name)
					return v == float64(sent[name]), fmt.Sprintf("%v of %d", v, sent[name])
				})
				delivered += read(name)
			}
			body := r.scrape(t)
			rejected, _ := sample(body, fmt.Sprintf(`statsbridge_sink_dropped_points_total{reason="rejected",sink=%q}`, sink))
			if tt.refusedLoses != (rejected != "0") {
				t.Errorf("points dropped as rejected: %s", rejected)
			}
			for _, reason := range []string{"queue_full", "retry_age", "permanent", "shutdown"} {
				if v, _ := sample(body, fmt.Sprintf(`statsbridge_sink_dropped_points_total{reason=%q,sink=%q}`, reason, sink)); v != "0" {
					t.Errorf("%s points dropped as %s", v, reason)
				}
			}
			// About one flush a second reaches the fault: a refused batch
			// costs a descent (2·(log₂ n + 1) requests for its ~70 records)
			// and then backs off; a failure is retried with backoff.
			flushes := int64(sc.outage / time.Second)
			if limit := 20 * flushes; faultRequests > limit {
				t.Errorf("%d requests during a %v fault: more than %d", faultRequests, sc.outage, limit)
			}
			report(t, figures{scenario: fmt.Sprintf("%s answering %s for %v", tt.backend, tt.fault, sc.outage),
				sent: total, delivered: delivered, unit: "increments", peakRSS: r.peakRSS(t),
				notes: fmt.Sprintf("%d requests during the fault; %s points refused and counted", faultRequests, rejected)})
			r.stop(t)
		})
	}
}

// TestRefusedLongNamesCostNoMemory: distinct 8 KB names, each refused as
// too long, once took 941 MiB for 80,000 of them with no series held. A
// refusal now costs a hash, whatever the name's length.
func TestRefusedLongNamesCostNoMemory(t *testing.T) {
	n := 20_000
	if scale().name == "long" {
		n = 80_000
	}
	r := startRelay(t, `
[statsd]
udp = ["127.0.0.1:0"]
tcp = []
flush_interval = "1s"
[http]
listen = "127.0.0.1:0"
`)
	before := r.memoryMiB(t, "VmRSS")
	c, err := net.Dial("udp", r.UDP)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	long := strings.Repeat("n", 8<<10)
	for i := range n {
		fmt.Fprintf(c, "%09d%s:1|c", i, long)
		if i%10 == 9 {
			time.Sleep(time.Millisecond) // about 80 MB/s at most
		}
	}
	eventually(t, 60*time.Second, "every name refused", func() (bool, string) {
		v := r.metric(t, `statsbridge_model_dropped_samples_total{reason="name_too_long"}`)
		drops := r.metric(t, "statsbridge_ingest_udp_kernel_drops_total")
		return v+drops >= float64(n), fmt.Sprintf("%v refused, %v dropped by the kernel", v, drops)
	})
	refused := r.metric(t, `statsbridge_model_dropped_samples_total{reason="name_too_long"}`)
	kernelDrops := r.metric(t, "statsbridge_ingest_udp_kernel_drops_total")
	peak := r.peakRSS(t)
	after := r.memoryMiB(t, "VmRSS")
	// The socket buffers and the runtime take some; 8 KB names kept whole
	// would take 80 KB * n.
	if grown := after - before; grown > 64 {
		t.Errorf("RSS grew by %d MiB for %d refused names", grown, n)
	}
	report(t, figures{scenario: fmt.Sprintf("%d distinct 8 KB names, refused as too long", n),
		sent: float64(n), delivered: refused, unit: "names refused and counted", peakRSS: peak,
		notes: fmt.Sprintf("RSS %d MiB before, %d MiB after; 0 series held; lost: %v datagrams the kernel dropped on a busy machine", before, after, kernelDrops)})
	r.stop(t)
}

// grepLines keeps the lines of text that hold substr.
func grepLines(text, substr string) string {
	var b strings.Builder
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(line, substr) {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}
