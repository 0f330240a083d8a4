package e2e

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// etsyStatsdVersion is npm's statsd package that test.sh installs
// (ETSY_STATSD_VERSION there): Etsy statsd, the oracle of the etsy layout.
const etsyStatsdVersion = "0.9.0"

// etsyRounds are sent to Etsy statsd and statsbridge alike, each in a flush
// interval of its own; a nil round sends nothing, to see what idle series
// write.
var etsyRounds = [][]string{
	{
		// Counters, sampled too.
		"corpus.hits:1|c\ncorpus.hits:2|c|@0.5\ncorpus.hits:3|c|@0.1",
		"corpus.sampled:1|c|@0.3\ncorpus.neg:-4|c\ncorpus.frac:0.25|c",
		"corpus.rounding:3|c|@0.9\ncorpus.rounding:7|c|@0.07", // value * (1/rate), to the last bit
		"corpus.mixedrates:1|c:2|c|@0.5:3|c|@0.25",
		// Gauges: relative, negative (relative to 0 on a new gauge, as in
		// Etsy), large and small.
		"corpus.temp:20|g\ncorpus.temp:+5|g\ncorpus.temp:-3|g",
		"corpus.below:0|g\ncorpus.below:-5|g\ncorpus.fresh:-7|g",
		"corpus.pi:3.14159|g\ncorpus.big:1234567|g\ncorpus.tiny:0.0000001|g",
		// Sets.
		"corpus.users:alice|s\ncorpus.users:bob|s\ncorpus.users:alice|s\ncorpus.users:42|s",
		// Timers: sampled, multi-value with their own rates, many values
		// for the percentiles, a negative value (dropped).
		"corpus.lat:100|ms\ncorpus.lat:200|ms\ncorpus.lat:300|ms|@0.5\ncorpus.lat:+5|ms",
		"corpus.multi:1|ms:2|ms:3|ms",
		"corpus.multi:4|ms|@0.25:5|ms",
		"corpus.many:" + manyTimerValues(20),
		"corpus.negtimer:-1|ms\ncorpus.negtimer:2|ms",
		// Names Etsy sanitises.
		"corpus.with space:1|c\ncorpus.with\ttab:1|g\ncorpus.nbsp\u00a0name:1|c\ncorpus.two  \u2003 spaces:1|c",
		"corpus/slash/name:1|c\ncorpus.odd(bytes)!:1|c\ncorpus.\u00fcn\u00efc\u00f6d\u00e9:1|c\ncorpus.ok_-.=chars:1|c",
		// Tags (Etsy writes them in the order sent, carbon sorts them).
		"corpus.tagged:1|c|#env:prod\ncorpus.tagged:2|c|#env:dev\ncorpus.tagtimer:5|ms|#zone:b,app:a",
		// Lines both refuse.
		"corpus.nocolon\ncorpus.badval:abc|c\ncorpus.badrate:1|c|@x",
		// Lines read differently on purpose: see etsyAllowed.
		"corpus.hist:5|h\ncorpus.dist:7|d",
		"corpus.unknown:1|x",
		"corpus.ctrl\x01byte:1|c",
		"corpus.mixed:1|c:2|g",
		"corpus.same.name:1|c\ncorpus.same_name:2|c",
		"corpus.tagchars:1|c|#url:http://x/y,canary",
	},
	{
		"corpus.temp:+1|g\ncorpus.fresh:+2|g",
		"corpus.hits:5|c\ncorpus.users:carol|s",
		"corpus.lat:50|ms\ncorpus.multi:6|ms:7|ms|@0.5",
	},
	nil,
}

// manyTimerValues is n timer values, out of order, as the fields of one
// multi-value line.
func manyTimerValues(n int) string {
	var b strings.Builder
	for i := n; i >= 1; i-- {
		if i < n {
			b.WriteByte(':')
		}
		fmt.Fprintf(&b, "%d|ms", i*7%23)
	}
	return b.String()
}

// needEtsyStatsd finds node and Etsy statsd's stats.js where test.sh
// installs them.
func needEtsyStatsd(t *testing.T) (node, statsJS string) {
	t.Helper()
	node = need(t, "node")
	cache, err := os.UserCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	statsJS = filepath.Join(cache, "statsbridge-test", "etsy-statsd-"+etsyStatsdVersion, "node_modules", "statsd", "stats.js")
	if _, err := os.Stat(statsJS); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("Etsy statsd %s is not installed (%v), and CI=true: test.sh must install it", etsyStatsdVersion, err)
		}
		t.Skipf("Etsy statsd %s is not installed (run ./test.sh, which installs it): %v", etsyStatsdVersion, err)
	}
	return node, statsJS
}

// carbonCapture is a carbon plaintext listener that keeps every line, by
// connection: Etsy statsd opens one per flush.
type carbonCapture struct {
	l     net.Listener
	mu    sync.Mutex
	conns []*capturedConn
}

// capturedConn is what one connection wrote.
type capturedConn struct {
	accepted time.Time
	lines    []string
	closed   bool // the sender is done: Etsy statsd closes after a flush
}

func startCapture(t *testing.T) *carbonCapture {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &carbonCapture{l: l}
	var wg sync.WaitGroup
	var open []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			cc := &capturedConn{accepted: time.Now()}
			c.mu.Lock()
			c.conns = append(c.conns, cc)
			open = append(open, conn)
			c.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				sc := bufio.NewScanner(conn)
				for sc.Scan() {
					c.mu.Lock()
					cc.lines = append(cc.lines, sc.Text())
					c.mu.Unlock()
				}
				c.mu.Lock()
				cc.closed = true
				c.mu.Unlock()
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		c.mu.Lock()
		for _, conn := range open {
			conn.Close()
		}
		c.mu.Unlock()
		wg.Wait()
	})
	return c
}

func (c *carbonCapture) addr() string { return c.l.Addr().String() }

// flushAfter returns the lines of the first connection accepted after t,
// and whether it is there and closed: Etsy statsd's first flush after t.
func (c *carbonCapture) flushAfter(t time.Time) ([]string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cc := range c.conns {
		if cc.accepted.After(t) {
			return append([]string(nil), cc.lines...), cc.closed
		}
	}
	return nil, false
}

// stamped returns every line carrying the timestamp ts.
func (c *carbonCapture) stamped(ts int64) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, cc := range c.conns {
		for _, l := range cc.lines {
			if f := strings.Fields(l); len(f) == 3 && f[2] == fmt.Sprint(ts) {
				out = append(out, l)
			}
		}
	}
	return out
}

// lineCount is how many lines have been written, on every connection.
func (c *carbonCapture) lineCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, cc := range c.conns {
		n += len(cc.lines)
	}
	return n
}

// startEtsy runs Etsy statsd with its graphite backend writing to graphite,
// flushing every second, and returns its UDP address once it has flushed.
func startEtsy(t *testing.T, node, statsJS string, legacyNamespace bool, capture *carbonCapture) string {
	t.Helper()
	dir := t.TempDir()
	udp := fmt.Sprintf("127.0.0.1:%d", freeUDPPort(t))
	host, port, _ := net.SplitHostPort(udp)
	_, gport, _ := net.SplitHostPort(capture.addr())
	config := fmt.Sprintf(`{
  address: %q, port: %s,
  mgmt_address: "127.0.0.1", mgmt_port: %d,
  flushInterval: 1000,
  percentThreshold: [90],
  backends: ["./backends/graphite"],
  graphiteHost: "127.0.0.1", graphitePort: %s,
  graphite: { legacyNamespace: %v },
  automaticConfigReload: false
}
`, host, port, freePort(t), gport, legacyNamespace)
	cfgPath := filepath.Join(dir, "config.js")
	if err := os.WriteFile(cfgPath, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	log := &logBuffer{}
	cmd := exec.Command(node, statsJS, cfgPath)
	cmd.Dir = filepath.Dir(statsJS)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("Etsy statsd (legacyNamespace %v) log:\n%s", legacyNamespace, log.String())
		}
	})
	started := time.Now()
	eventually(t, 15*time.Second, "Etsy statsd flushes to its capture", func() (bool, string) {
		select {
		case <-exited:
			t.Fatalf("Etsy statsd exited:\n%s", log.String())
		default:
		}
		_, ok := capture.flushAfter(started)
		return ok, log.String()
	})
	return udp
}

func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// TestGraphiteAsEtsyStatsdWritesIt sends one corpus to Etsy statsd and to
// statsbridge, both flushing every second to Graphite in Etsy's two
// namespaces, and compares every path and value of every interval. What
// differs on purpose is in etsyAllowed; anything else fails.
func TestGraphiteAsEtsyStatsdWritesIt(t *testing.T) {
	node, statsJS := needEtsyStatsd(t)
	namespaces := []struct {
		name   string
		legacy bool
		etsy   *carbonCapture
		ours   *carbonCapture
		udp    string
	}{
		{name: "legacyNamespace", legacy: true},
		{name: "newNamespace", legacy: false},
	}
	for i := range namespaces {
		ns := &namespaces[i]
		ns.etsy, ns.ours = startCapture(t), startCapture(t)
		ns.udp = startEtsy(t, node, statsJS, ns.legacy, ns.etsy)
	}
	r := startRelay(t, fmt.Sprintf(`
[statsd]
udp = ["127.0.0.1:0"]
tcp = []
flush_interval = "1s"
[http]
listen = "127.0.0.1:0"
[[graphite]]
address = %q
layout = "etsy"
legacy_namespace = true
[[graphite]]
address = %q
layout = "etsy"
legacy_namespace = false
`, namespaces[0].ours.addr(), namespaces[1].ours.addr()))
	// statsbridge's first interval runs longer than a second (it starts
	// at the second boundary after the start): the rounds begin after it,
	// so that every round's interval is one second in both.
	eventually(t, 10*time.Second, "statsbridge's first flush", func() (bool, string) {
		return namespaces[0].ours.lineCount() > 0 && namespaces[1].ours.lineCount() > 0, ""
	})

	targets := []string{r.UDP, namespaces[0].udp, namespaces[1].udp}
	conns := make([]net.Conn, len(targets))
	for i, a := range targets {
		c, err := net.Dial("udp", a)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns[i] = c
	}
	// Both flush on the second. Each round goes half-way through one, so
	// that it is in one interval of each, and the rounds are two seconds
	// apart, so that a flush that runs late on a busy machine still takes
	// its round alone.
	first := time.Now().Truncate(time.Second).Add(time.Second)
	sent := make([]time.Time, len(etsyRounds))
	for i, round := range etsyRounds {
		sent[i] = first.Add(time.Duration(2*i)*time.Second + 500*time.Millisecond)
		time.Sleep(time.Until(sent[i]))
		for _, c := range conns {
			for _, d := range round {
				if _, err := c.Write([]byte(d)); err != nil {
					t.Fatal(err)
				}
			}
		}
	}

	used := make([]int, len(etsyAllowed))
	for _, ns := range namespaces {
		t.Run(ns.name, func(t *testing.T) {
			for i, at := range sent {
				// statsbridge stamps an interval with its start, Etsy statsd
				// with its end, the flush: one second later.
				start := at.Truncate(time.Second)
				ts := start.Unix()
				var etsy, ours []string
				eventually(t, 10*time.Second, fmt.Sprintf("round %d flushed by both", i), func() (bool, string) {
					var ok bool
					// Etsy statsd's flush at the interval's end (its timer
					// never fires early; the margin is for the clocks).
					etsy, ok = ns.etsy.flushAfter(start.Add(time.Second - 100*time.Millisecond))
					// statsbridge writes its flushes in order on one
					// connection: the next one's lines show this one whole.
					ours = ns.ours.stamped(ts)
					return ok && len(ns.ours.stamped(ts+1)) > 0, ""
				})
				compareWithEtsy(t, i, etsy, ours, ts, used)
			}
		})
	}
	for i, n := range used {
		if n == 0 {
			t.Errorf("no path differed for %q: the corpus no longer shows it, or it is mended", etsyAllowed[i].why)
		}
	}
}

// etsyAllowed is what differs from Etsy statsd on purpose: each entry
// matches the paths it covers, on either side. The README's "From Etsy
// statsd" lists the same. Two more differences are not paths: statsbridge
// stamps a point with its interval's start, where Etsy statsd stamps the
// flush, one interval later (so that a restart never writes an interval's
// slot twice); and a rate covers the real length of its interval, where
// Etsy statsd divides by flushInterval: they differ only in statsbridge's
// first interval after a start, longer than the others, which the rounds
// avoid.
var etsyAllowed = []struct {
	why     string
	matches func(path string) bool
}{
	{
		// See the README's Self-metrics.
		"Etsy statsd's own metrics are under statsd., statsbridge's under statsbridge.",
		func(p string) bool { return mentions(p, "statsd") || mentions(p, "statsbridge") },
	},
	{
		// A histogram keeps its observations' distribution: it is what
		// Prometheus and InfluxDB users get for h and d.
		"h and d lines are histograms, written with a timer's statistics; Etsy statsd counts them as counters",
		func(p string) bool { return mentions(p, "corpus.hist") || mentions(p, "corpus.dist") },
	},
	{
		// A typo in a type must not count as a counter quietly.
		"a line of an unknown type is a bad_type line; Etsy statsd counts it as a counter",
		func(p string) bool { return mentions(p, "corpus.unknown") },
	},
	{
		// Such bytes are a client's bug; the line is counted and logged.
		"a control character other than whitespace makes the line bad_bytes; Etsy statsd drops it from the name",
		func(p string) bool { return mentions(p, "corpus.ctrlbyte") },
	},
	{
		// A name is one family with one type for every sink.
		"a name holds one type: a gauge under a counter's name is refused (statsbridge_model_conflicts); Etsy statsd keeps a series per type",
		func(p string) bool { return mentions(p, "gauges.corpus.mixed") },
	},
	{
		// Carbon refuses a tag without a value, and its tags may hold
		// ':' and '/': they are the client's label values.
		"a bare tag is canary=true, and tag values keep what Graphite's tags allow; Etsy statsd writes ;canary and strips values to its key characters (url=http--x-y)",
		func(p string) bool { return mentions(p, "corpus.tagchars") },
	},
	{
		// A series is an OpenMetrics series for every sink.
		"names that are one OpenMetrics name (corpus.same.name and corpus.same_name are corpus_same_name) are one series, under the name seen first; Etsy statsd keeps both",
		func(p string) bool { return mentions(p, "corpus.same.name") || mentions(p, "corpus.same_name") },
	},
}

// mentions reports whether the dot-separated key is in path, whole.
func mentions(path, key string) bool {
	for i := 0; ; {
		j := strings.Index(path[i:], key)
		if j < 0 {
			return false
		}
		j += i
		end := j + len(key)
		if (j == 0 || path[j-1] == '.') && (end == len(path) || path[end] == '.' || path[end] == ';') {
			return true
		}
		i = j + 1
	}
}

// compareWithEtsy compares one interval's lines: every path and value the
// same, and statsbridge's timestamp one second before Etsy statsd's.
// Tags are compared sorted, as carbon stores them.
func compareWithEtsy(t *testing.T, round int, etsy, ours []string, ts int64, used []int) {
	t.Helper()
	etsyPoints, etsyStamps := carbonPoints(t, etsy)
	ourPoints, _ := carbonPoints(t, ours)
	paths := map[string]bool{}
	for p := range etsyPoints {
		paths[p] = true
	}
	for p := range ourPoints {
		paths[p] = true
	}
	sorted := make([]string, 0, len(paths))
	for p := range paths {
		sorted = append(sorted, p)
	}
	sort.Strings(sorted)
	compared := 0
paths:
	for _, p := range sorted {
		for i, a := range etsyAllowed {
			if a.matches(p) {
				used[i]++
				continue paths
			}
		}
		compared++
		e, inEtsy := etsyPoints[p]
		o, inOurs := ourPoints[p]
		switch {
		case !inOurs:
			t.Errorf("round %d: Etsy statsd writes %s %s, statsbridge does not", round, p, e)
		case !inEtsy:
			t.Errorf("round %d: statsbridge writes %s %s, Etsy statsd does not", round, p, o)
		case e != o:
			t.Errorf("round %d: %s: Etsy statsd writes %s, statsbridge %s", round, p, e, o)
		case etsyStamps[p] != ts+1:
			t.Errorf("round %d: %s: Etsy statsd stamps %d, want %d", round, p, etsyStamps[p], ts+1)
		}
	}
	if compared == 0 {
		t.Errorf("round %d: nothing to compare", round)
	}
}

// carbonPoints reads carbon plaintext lines into values and timestamps by
// path, with the path's tags sorted.
func carbonPoints(t *testing.T, lines []string) (values map[string]string, stamps map[string]int64) {
	t.Helper()
	values, stamps = map[string]string{}, map[string]int64{}
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) != 3 {
			t.Fatalf("not a carbon line: %q", l)
		}
		parts := strings.Split(f[0], ";")
		sort.Strings(parts[1:])
		path := strings.Join(parts, ";")
		if _, dup := values[path]; dup {
			t.Errorf("%s written twice in one flush", path)
		}
		values[path] = f[1]
		stamps[path], _ = strconv.ParseInt(f[2], 10, 64)
	}
	return values, stamps
}

// TestSelfMetricsReachCarbonApart: with --graphite, each labelled
// self-metric series has its own path, so carbon keeps each: one bad line
// is a bad_type count of 1 in carbon, as on /metrics.
func TestSelfMetricsReachCarbonApart(t *testing.T) {
	carbon := startCarbon(t)
	r := startRelay(t, `
[statsd]
udp = ["127.0.0.1:0"]
tcp = []
flush_interval = "1s"
[http]
listen = "127.0.0.1:0"
`, "--graphite", carbon.Addr)
	r.sendUDP(t, "a:1|x")
	eventually(t, 5*time.Second, "/metrics counts the bad line", func() (bool, string) {
		v, _ := sample(r.scrape(t), `statsbridge_ingest_bad_lines_total{reason="bad_type"}`)
		return v == "1", v
	})
	// Deltas, one per flush and slot: they add up to the count.
	sum := func(path string) float64 {
		total := 0.0
		for _, p := range carbon.points(t, path) {
			total += p.V
		}
		return total
	}
	eventually(t, 10*time.Second, "carbon holds the bad line's count", func() (bool, string) {
		got := sum("stats_counts.statsbridge.ingest_bad_lines.bad_type")
		return got == 1, fmt.Sprint(got)
	})
	r.stop(t)
	const badValue = "stats_counts.statsbridge.ingest_bad_lines.bad_value"
	if ps := carbon.points(t, badValue); len(ps) == 0 || sum(badValue) != 0 {
		t.Errorf("%s: carbon holds %v, want zeros", badValue, ps)
	}
}
