package e2e

import (
	"bytes"
	"fmt"
	"math"
	"net"
	"net/http"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
)

// load sends a steady stream of counter increments of 1 over UDP and
// counts what it sent of each counter.
type load struct {
	names []string
	mu    sync.Mutex
	sent  map[string]int
	stop  chan struct{}
	done  chan struct{}
}

// startLoad sends linesPerSecond lines, spread over names, in datagrams of
// 20 lines every 10ms or so.
func startLoad(t testing.TB, addr string, names []string, linesPerSecond int) *load {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	l := &load{names: names, sent: map[string]int{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		defer c.Close()
		perTick := max(linesPerSecond/100, 1)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		next := 0
		for {
			select {
			case <-l.stop:
				return
			case <-tick.C:
			}
			var b bytes.Buffer
			l.mu.Lock()
			for i := 0; i < perTick; i++ {
				name := l.names[next%len(l.names)]
				next++
				if b.Len() > 0 {
					b.WriteByte('\n')
				}
				b.WriteString(name + ":1|c")
				l.sent[name]++
			}
			l.mu.Unlock()
			c.Write(b.Bytes())
		}
	}()
	return l
}

// finish stops the load and returns what was sent of each counter.
func (l *load) finish() map[string]int {
	close(l.stop)
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sent
}

// points is a backend's stored points of one counter: time (ms) -> value.
type points map[int64]float64

func (p points) sum() float64 {
	s := 0.0
	for _, v := range p {
		s += v
	}
	return s
}

func (p points) String() string {
	ts := make([]int64, 0, len(p))
	for t := range p {
		ts = append(ts, t)
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i] < ts[j] })
	var b strings.Builder
	for _, t := range ts {
		fmt.Fprintf(&b, "%d=%v ", t, p[t])
	}
	return b.String()
}

// sameAs reports how victim differs from control, point by point.
func (p points) sameAs(control points) string {
	var diffs []string
	for t, v := range control {
		if got, ok := p[t]; !ok {
			diffs = append(diffs, fmt.Sprintf("missing %d", t))
		} else if got != v {
			diffs = append(diffs, fmt.Sprintf("at %d %v, control %v", t, got, v))
		}
	}
	for t := range p {
		if _, ok := control[t]; !ok {
			diffs = append(diffs, fmt.Sprintf("extra %d", t))
		}
	}
	sort.Strings(diffs)
	return strings.Join(diffs, "; ")
}

// backend is one kind of server as the delivery tests use it.
type backend struct {
	kind string
	// start starts an instance and returns its sink's TOML and a reader of
	// one counter's points (the counter's StatsD name is given).
	start func(t *testing.T) (sinkTOML string, read func(t testing.TB, name string) points, s *server)
	// perInterval says a counter's points are per-interval deltas (they
	// add up to the total); otherwise they are cumulative totals.
	perInterval bool
}

var backends = []backend{
	{kind: "carbon", perInterval: true, start: func(t *testing.T) (string, func(testing.TB, string) points, *server) {
		c := startCarbon(t)
		return fmt.Sprintf("[[graphite]]\naddress = %q\nlayout = \"paths\"\n", c.Addr),
			func(t testing.TB, name string) points {
				out := points{}
				for _, p := range c.points(t, name) {
					out[p.T*1000] = p.V
				}
				return out
			}, c.server
	}},
	{kind: "influxdb", perInterval: true, start: func(t *testing.T) (string, func(testing.TB, string) points, *server) {
		in := startInflux(t)
		// No CREATE DATABASE: create_database makes it.
		return fmt.Sprintf("[[influx]]\nurl = \"%s/write?db=statsd\"\ncreate_database = true\n", in.URL),
			func(t testing.TB, name string) points {
				out := points{}
				rows := in.queryOptional(t, "statsd", fmt.Sprintf(`SELECT "value" FROM %q`, strings.ReplaceAll(name, ".", "_")))
				for _, r := range rows {
					out[int64(r[0].(float64))] = r[1].(float64)
				}
				return out
			}, in.server
	}},
	{kind: "prometheus", perInterval: false, start: func(t *testing.T) (string, func(testing.TB, string) points, *server) {
		p := startPrometheus(t)
		return fmt.Sprintf("[[remote_write]]\nurl = \"%s/api/v1/write\"\n", p.URL),
			func(t testing.TB, name string) points {
				out := points{}
				for _, s := range p.samples(t, strings.ReplaceAll(name, ".", "_")+"_total", 10*time.Minute) {
					v, _ := strconv.ParseFloat(s.V, 64)
					out[s.T] = v
				}
				return out
			}, p.server
	}},
}

// total is what a backend's points say was counted in all.
func (b backend) total(p points) float64 {
	if b.perInterval {
		return p.sum()
	}
	last, lastT := 0.0, int64(math.MinInt64)
	for t, v := range p {
		if t > lastT {
			last, lastT = v, t
		}
	}
	return last
}

// TestSIGTERMRightAfterABurstDeliversEverything sends a burst of known
// increments and SIGTERM at once: every increment must be in all three
// backends.
func TestSIGTERMRightAfterABurstDeliversEverything(t *testing.T) {
	var sinks string
	var readers []func(testing.TB, string) points
	for _, b := range backends {
		sink, read, _ := b.start(t)
		sinks += sink
		readers = append(readers, read)
	}
	r := startRelay(t, `
shutdown_timeout = "30s"
[statsd]
udp = ["127.0.0.1:0"]
tcp = ["127.0.0.1:0"]
flush_interval = "1s"
[http]
listen = "127.0.0.1:0"
`+sinks)
	name := uniqueName("burst")
	var udp, tcp []string
	for i := 0; i < 300; i++ { // 20,000 increments in 300 datagrams and one TCP write
		udp = append(udp, strings.TrimSuffix(strings.Repeat(name+":1|c\n", 50), "\n"))
	}
	tcp = append(tcp, strings.Repeat(name+":1|c\n", 5000))
	time.Sleep(1500 * time.Millisecond)
	r.sendUDP(t, udp...)
	r.sendTCP(t, tcp[0])
	r.stop(t)
	const want = 20000
	for i, read := range readers {
		b := backends[i]
		eventually(t, 10*time.Second, b.kind+" holds every increment", func() (bool, string) {
			p := read(t, name)
			return b.total(p) == want, fmt.Sprintf("total %v of %d: %v", b.total(p), want, p)
		})
	}
}

// TestARejectedBatchDoesNotHoldUpTheNext: Prometheus refuses every sample
// of one series (it already has a newer one: 400 out of order) and so every
// request that holds it. statsbridge splits the refused batches down to that
// series, drops and counts it, and every other series keeps arriving.
func TestARejectedBatchDoesNotHoldUpTheNext(t *testing.T) {
	prom := startPrometheus(t)
	bad, good := uniqueName("refused"), uniqueName("accepted")
	// A sample a minute ahead makes the series' samples at "now" out of order.
	future := time.Now().Add(time.Minute).UnixMilli()
	remoteWrite(t, prom.URL, bad+"_total", 1000, future)

	r := startRelay(t, fmt.Sprintf(`
[statsd]
udp = ["127.0.0.1:0"]
tcp = []
flush_interval = "1s"
[http]
listen = "127.0.0.1:0"
[[remote_write]]
url = "%s/api/v1/write"
`, prom.URL))
	l := startLoad(t, r.UDP, []string{bad, good}, 200)
	eventually(t, 20*time.Second, "the good series keeps arriving", func() (bool, string) {
		ss := prom.samples(t, good+"_total", time.Minute)
		return len(ss) >= 5, fmt.Sprint(ss)
	})
	l.finish()
	if ss := prom.samplesUntil(t, bad+"_total", 5*time.Minute, time.UnixMilli(future+1000)); len(ss) != 1 || ss[0].T != future {
		t.Errorf("the refused series holds %v, want only the sample written ahead", ss)
	}
	body := r.scrape(t)
	if v, _ := sample(body, `statsbridge_sink_dropped_points_total{reason="rejected",sink="remote_write[0]"}`); v == "0" || v == "" {
		t.Errorf("refused points counted: %q", v)
	}
	r.stop(t)
}

// remoteWrite writes one sample the way any remote-write client does.
func remoteWrite(t *testing.T, url, name string, v float64, ms int64) {
	t.Helper()
	req := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
		Labels:  []prompb.Label{{Name: "__name__", Value: name}},
		Samples: []prompb.Sample{{Value: v, Timestamp: ms}},
	}}}
	data, err := req.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(url+"/api/v1/write", "application/x-protobuf", bytes.NewReader(snappy.Encode(nil, data)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("remote write: %d", resp.StatusCode)
	}
}

// TestASecondSIGTERMExitsAtOnce: the first SIGTERM waits up to
// shutdown_timeout for a dead backend; a second one ends the process.
func TestASecondSIGTERMExitsAtOnce(t *testing.T) {
	r := startRelay(t, fmt.Sprintf(`
shutdown_timeout = "60s"
[statsd]
udp = ["127.0.0.1:0"]
tcp = []
flush_interval = "1s"
[http]
listen = "127.0.0.1:0"
[[remote_write]]
url = "http://127.0.0.1:%d/api/v1/write"
`, freePort(t)))
	r.sendUDP(t, "waiting:1|c")
	eventually(t, 10*time.Second, "a failed delivery", func() (bool, string) {
		v, _ := sample(r.scrape(t), `statsbridge_sink_failures_total{reason="network",sink="remote_write[0]"}`)
		return v != "" && v != "0", v
	})
	r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.exited:
		t.Fatal("exited on the first SIGTERM although delivery was still being tried")
	case <-time.After(1500 * time.Millisecond):
	}
	r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.exited:
	case <-time.After(3 * time.Second):
		t.Fatal("still running 3s after the second SIGTERM")
	}
	r.stopped = true
}

// TestSIGHUPDuringShutdownDoesNotKill: a SIGHUP (logrotate, say) that comes
// while shutdown delivers must not end the process before it spools.
func TestSIGHUPDuringShutdownDoesNotKill(t *testing.T) {
	spool := t.TempDir()
	r := startRelay(t, fmt.Sprintf(`
shutdown_timeout = "2s"
[statsd]
udp = ["127.0.0.1:0"]
tcp = []
flush_interval = "1s"
[http]
listen = "127.0.0.1:0"
[[remote_write]]
url = "http://127.0.0.1:%d/api/v1/write"
spool_dir = %q
`, freePort(t), spool))
	r.sendUDP(t, "kept:1|c")
	eventually(t, 10*time.Second, "a failed delivery", func() (bool, string) {
		v, _ := sample(r.scrape(t), `statsbridge_sink_failures_total{reason="network",sink="remote_write[0]"}`)
		return v != "" && v != "0", v
	})
	r.cmd.Process.Signal(syscall.SIGTERM)
	time.Sleep(300 * time.Millisecond)
	r.cmd.Process.Signal(syscall.SIGHUP)
	r.wait(t) // exit 0, after shutdown_timeout
	segments, _ := filepath.Glob(filepath.Join(spool, "*", "*.spool"))
	if len(segments) == 0 {
		t.Error("nothing was spooled at shutdown")
	}
}
