package e2e

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The benchmarks of this file hold many live series in the real binary and
// read what the process costs from /proc: its memory (VmRSS, VmHWM) and
// its CPU time (utime+stime). The push sink is a carbon stand-in that
// counts lines and discards them. They are measurements, never
// assertions; BENCHMARKS.md has the figures and the commands, e.g.
//
//	go test -run '^$' -bench 'SeriesScale/1000000' -benchtime 1x -timeout 30m ./e2e/

// BenchmarkSeriesScale fills statsbridge with distinct counters, one name
// each (the shape of Graphite-style names, a family per series), then:
//   - scrapes /metrics once, lets two flushes go to the push sink, and
//     reports VmRSS and VmHWM (default configuration, one Graphite sink);
//   - reports the CPU the idle process takes per series and flush with
//     that sink, over several flushes with no traffic;
//   - in a second process with no push sink, reports the cores it takes
//     idle with the default 10 s flush.
func BenchmarkSeriesScale(b *testing.B) {
	for _, n := range []int{10_000, 100_000, 1_000_000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			for b.Loop() {
				seriesScale(b, n)
			}
		})
	}
}

// fillRate is the pace series are created at: one the socket does not
// overflow at on a busy machine. (A new name costs more than a sample to a
// series that exists: it is mapped and registered.)
const fillRate = 100_000

// create makes n series, sending them again should the kernel have dropped
// some, until the model holds them all: as the push sink shows (a flush
// of at least 2n lines), or without one, as a scrape shows.
func create(b *testing.B, r *relay, n int, sink *discardSink) {
	b.Helper()
	for try := 0; ; try++ {
		fill(b, r, n, n, fillRate)
		if sink != nil {
			if sink.tryWaitFlushes(1, 2*n, time.Minute) {
				return
			}
		} else {
			time.Sleep(3 * time.Second)
			if metricValue(r.scrape(b), "statsbridge_model_series") == float64(n) {
				return
			}
		}
		if try == 2 {
			b.Fatalf("the model does not hold the %d series after 3 tries", n)
		}
	}
}

func seriesScale(b *testing.B, n int) {
	flush := 10 * time.Second
	sink := startDiscardSink(b)
	r := startRelay(b, fmt.Sprintf(`
[statsd]
udp = ["127.0.0.1:0"]
tcp = []
[http]
listen = "127.0.0.1:0"
[[graphite]]
address = %q
`, sink.addr))
	create(b, r, n, sink)
	if got := metricValue(r.scrape(b), "statsbridge_model_series"); got != float64(n) {
		b.Fatalf("%v series, want %d", got, n)
	}
	// Two flushes after the scrape, so that one is all sent.
	sink.waitFlushes(b, 2, 2*n, 3*flush)
	rss, hwm := memoryOf(b, r.cmd.Process.Pid)
	b.Logf("%d series: VmRSS %.0f MB, VmHWM %.0f MB", n, rss, hwm)
	b.ReportMetric(rss, "RSS-MB")
	b.ReportMetric(hwm, "HWM-MB")

	// Idle, the sink gets every series at every flush: the CPU of six
	// flush intervals, by series and flush.
	const intervals = 6
	cpu := cpuSeconds(b, r.cmd.Process.Pid)
	time.Sleep(intervals * flush)
	used := cpuSeconds(b, r.cmd.Process.Pid) - cpu
	b.Logf("%d series: %.1f s of CPU in %d flush intervals", n, used, intervals)
	b.ReportMetric(used/intervals/float64(n)*1e6, "µs-CPU/series/flush")
	r.stop(b)

	// The same series, no push sink: what an idle relay costs.
	r = startRelay(b, `
[statsd]
udp = ["127.0.0.1:0"]
tcp = []
[http]
listen = "127.0.0.1:0"
`)
	create(b, r, n, nil)
	time.Sleep(flush) // an interval ends with every series new in it
	const window = 60 * time.Second
	cpu = cpuSeconds(b, r.cmd.Process.Pid)
	time.Sleep(window)
	b.ReportMetric((cpuSeconds(b, r.cmd.Process.Pid)-cpu)/window.Seconds(), "idle-cores")
	r.stop(b)
}

// BenchmarkSendToSinkDelay measures how long a sample takes from its
// datagram to the push sink, with many idle series and a 1 s flush: the
// flush interval (the sample waits for the next flush) plus what the flush
// takes. A probe counter of a name of its own is sent every 50 ms; the sink
// notes when each first arrives.
func BenchmarkSendToSinkDelay(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			for b.Loop() {
				sendToSinkDelay(b, n)
			}
		})
	}
}

func sendToSinkDelay(b *testing.B, n int) {
	const probes = 600
	sink := startDiscardSink(b)
	// Room for the probes past the default max_series of a million.
	r := startRelay(b, udpRelay+fmt.Sprintf(`
[limits]
max_series = %d
[[graphite]]
address = %q
`, n+probes, sink.addr))
	// Flushes of a million series every second may run into each other:
	// the sink cannot tell them apart, so a scrape says the series are in.
	create(b, r, n, nil)
	c, err := net.Dial("udp", r.UDP)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	sent := make([]time.Time, probes)
	for i := range probes {
		sent[i] = time.Now()
		fmt.Fprintf(c, "delay.probe.%d:1|c", i)
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(5 * time.Second) // the last probes' flushes
	var delays []time.Duration
	for i, at := range sink.probeArrivals(probes) {
		if !at.IsZero() {
			delays = append(delays, at.Sub(sent[i]))
		}
	}
	r.stop(b)
	if len(delays) < probes*9/10 {
		b.Fatalf("only %d of %d probes arrived", len(delays), probes)
	}
	slices.Sort(delays)
	b.ReportMetric(float64(delays[len(delays)/2].Milliseconds()), "p50-ms")
	b.ReportMetric(float64(delays[len(delays)*99/100].Milliseconds()), "p99-ms")
	b.ReportMetric(float64(probes-len(delays)), "lost-probes")
}

// BenchmarkFlushUnderLoad sends 20-line datagrams at a steady rate to a
// relay holding many series, for 10 s across flushes every 2 s to a push
// sink, and reports the datagrams the kernel dropped: a flush must stop no
// reader. The same load on a relay with no push sink (where a flush does
// next to nothing) tells what the flushes add to what the load alone costs.
// STATSBRIDGE_BENCH_RATE sets the lines per second (default 1,000,000).
func BenchmarkFlushUnderLoad(b *testing.B) {
	rate := 1_000_000
	if s := os.Getenv("STATSBRIDGE_BENCH_RATE"); s != "" {
		rate, _ = strconv.Atoi(s)
	}
	for _, n := range []int{100_000, 1_000_000} {
		for _, push := range []bool{true, false} {
			name := strconv.Itoa(n) + "/graphite"
			if !push {
				name = strconv.Itoa(n) + "/no_push_sink"
			}
			b.Run(name, func(b *testing.B) {
				for b.Loop() {
					flushUnderLoad(b, n, rate, push)
				}
			})
		}
	}
}

func flushUnderLoad(b *testing.B, n, rate int, push bool) {
	cfg := `
[statsd]
udp = ["127.0.0.1:0"]
tcp = []
flush_interval = "2s"
[http]
listen = "127.0.0.1:0"
`
	if push {
		cfg += fmt.Sprintf("[[graphite]]\naddress = %q\n", startDiscardSink(b).addr)
	}
	r := startRelay(b, cfg)
	create(b, r, n, nil)
	before := metricValue(r.scrape(b), "statsbridge_ingest_udp_kernel_drops_total")
	const window = 10 * time.Second
	start := time.Now()
	datagrams := fill(b, r, n, rate*int(window/time.Second), rate)
	sent := time.Since(start)
	body := r.scrape(b)
	drops := metricValue(body, "statsbridge_ingest_udp_kernel_drops_total") - before
	r.stop(b)
	b.ReportMetric(float64(datagrams)*20/sent.Seconds(), "sent-lines/s")
	b.ReportMetric(drops, "dropped-datagrams")
	b.ReportMetric(100*drops/float64(datagrams), "%dropped")
}

// fill sends total lines "bench.counter.<i>:1|c", i going round the n
// series, 20 to a datagram, at rate lines a second. It returns the
// datagrams sent.
func fill(b *testing.B, r *relay, n, total, rate int) int {
	b.Helper()
	c, err := net.Dial("udp", r.UDP)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	perSecond := rate / 20
	var d []byte
	sent := 0
	start := time.Now()
	for i := 0; i < total; i += 20 {
		d = d[:0]
		for j := i; j < i+20 && j < total; j++ {
			if len(d) > 0 {
				d = append(d, '\n')
			}
			d = fmt.Appendf(d, "bench.counter.%d:1|c", j%n)
		}
		c.Write(d)
		sent++
		if ahead := time.Duration(sent)*time.Second/time.Duration(perSecond) - time.Since(start); ahead > time.Millisecond {
			time.Sleep(ahead)
		}
	}
	return sent
}

// discardSink is a carbon stand-in: it reads lines, counts them, tells
// flushes apart by the pause between them, and notes when each delay probe
// first arrives.
type discardSink struct {
	addr    string
	mu      sync.Mutex
	flushes []int64 // lines of each flush seen so far
	last    time.Time
	probes  map[int]time.Time
}

func startDiscardSink(t testing.TB) *discardSink {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &discardSink{addr: l.Addr().String(), probes: map[int]time.Time{}}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go s.read(conn)
		}
	}()
	return s
}

var probePrefix = []byte("\nstats_counts.delay.probe.")

// read counts what carbon would read, in chunks, so that the stand-in
// takes little of the CPU the relay is measured on.
func (s *discardSink) read(conn net.Conn) {
	defer conn.Close()
	buf := make([]byte, 0, 1<<20)
	tail := 0 // bytes of an unfinished line at the front of buf
	for {
		n, err := conn.Read(buf[tail:cap(buf)])
		if err != nil {
			return
		}
		now := time.Now()
		chunk := buf[:tail+n]
		end := bytes.LastIndexByte(chunk, '\n') + 1
		lines := bytes.Count(chunk[tail:], []byte{'\n'})
		s.mu.Lock()
		// A pause of 300 ms or more starts a new flush.
		if now.Sub(s.last) > 300*time.Millisecond {
			s.flushes = append(s.flushes, 0)
		}
		s.last = now
		s.flushes[len(s.flushes)-1] += int64(lines)
		// Probes: "stats_counts.delay.probe.<i> 1 <ts>", after a newline
		// (the connection's first line is never one).
		for rest := chunk[:end]; ; {
			i := bytes.Index(rest, probePrefix)
			if i < 0 {
				break
			}
			rest = rest[i+len(probePrefix):]
			f := bytes.Fields(rest[:bytes.IndexByte(rest, '\n')])
			if len(f) == 3 && string(f[1]) == "1" {
				if p, err := strconv.Atoi(string(f[0])); err == nil {
					if _, seen := s.probes[p]; !seen {
						s.probes[p] = now
					}
				}
			}
		}
		s.mu.Unlock()
		// Carry the unfinished line over, with the newline before it.
		tail = copy(buf, chunk[max(end-1, 0):])
		if tail == cap(buf) {
			tail = 0 // a line longer than the buffer: not a probe
		}
	}
}

func (s *discardSink) flushCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.flushes)
}

// waitFlushes waits until k more flushes of at least min lines each have
// been read completely (the next one began, or 2 s passed after the last
// line).
func (s *discardSink) waitFlushes(t testing.TB, k, min int, timeout time.Duration) {
	t.Helper()
	if !s.tryWaitFlushes(k, min, timeout) {
		t.Fatalf("not %d full flushes in %v", k, timeout)
	}
}

func (s *discardSink) tryWaitFlushes(k, min int, timeout time.Duration) bool {
	s.mu.Lock()
	start := len(s.flushes)
	s.mu.Unlock()
	deadline := time.Now().Add(timeout)
	for {
		s.mu.Lock()
		full := 0
		for i, n := range s.flushes[start:] {
			complete := start+i < len(s.flushes)-1 || time.Since(s.last) > 2*time.Second
			if n >= int64(min) && complete {
				full++
			}
		}
		s.mu.Unlock()
		if full >= k {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *discardSink) probeArrivals(n int) []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]time.Time, n)
	for i := range out {
		out[i] = s.probes[i]
	}
	return out
}

// memoryOf reads a process's VmRSS and VmHWM, in MB.
func memoryOf(t testing.TB, pid int) (rss, hwm float64) {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb / 1000
		case "VmHWM:":
			hwm = kb / 1000
		}
	}
	return rss, hwm
}

// cpuSeconds reads a process's user and system CPU time.
func cpuSeconds(t testing.TB, pid int) float64 {
	t.Helper()
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// The fields after the command (which may hold spaces) in parentheses.
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+2:]))
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100 // clock ticks (USER_HZ is 100 on Linux)
}
