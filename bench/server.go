package main

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
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The servers compared.
const (
	statsbridge    = "statsbridge"
	statsdExporter = "statsd_exporter"
)

// ServerOptions configure the servers alike where they can be.
type ServerOptions struct {
	ReadBuffer int    // SO_RCVBUF asked for
	ReadCork   string // statsbridge's [statsd] read_cork; "" leaves the key out
	Readers    int    // statsbridge's [statsd] readers (0: one per core)
	Flush      string // statsbridge's flush_interval
	Pprof      bool   // statsbridge's [http] pprof
	Nice       int    // niceness the server runs at (nice -n)
}

// server is a statsbridge or statsd_exporter process under test.
type server struct {
	kind     string
	cmd      *exec.Cmd
	dir      string
	udpPort  int
	httpAddr string
	carbon   *carbonSink // statsbridge's push sink; nil for statsd_exporter
	stderr   bytes.Buffer
}

func freePort(network string) (int, error) {
	switch network {
	case "udp":
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port, nil
	default:
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port, nil
	}
}

// startServer starts a server of kind and waits until it answers /metrics.
func startServer(kind, bin string, o ServerOptions) (*server, error) {
	udpPort, err := freePort("udp")
	if err != nil {
		return nil, err
	}
	httpPort, err := freePort("tcp")
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "statsbridge-bench-")
	if err != nil {
		return nil, err
	}
	s := &server{kind: kind, dir: dir, udpPort: udpPort, httpAddr: fmt.Sprintf("127.0.0.1:%d", httpPort)}
	switch kind {
	case statsbridge:
		if s.carbon, err = startCarbon(); err != nil {
			return nil, err
		}
		pprof := "" // a key older statsbridges do not know
		if o.Pprof {
			pprof = "pprof = true"
		}
		cork := ""
		if o.ReadCork != "" {
			cork = fmt.Sprintf("read_cork = %q\n", o.ReadCork)
		}
		conf := fmt.Sprintf(`log_level = "warn"
[statsd]
udp = ["127.0.0.1:%d"]
tcp = []
read_buffer = %d
readers = %d
flush_interval = %q
%s
[http]
listen = %q
%s

[[graphite]]
address = %q
layout = "paths"
`, udpPort, o.ReadBuffer, o.Readers, o.Flush, cork, s.httpAddr, pprof, s.carbon.addr())
		path := filepath.Join(dir, "statsbridge.toml")
		if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
			return nil, err
		}
		s.cmd = exec.Command(bin, "--config", path)
	case statsdExporter:
		s.cmd = exec.Command(bin,
			fmt.Sprintf("--statsd.listen-udp=127.0.0.1:%d", udpPort),
			"--statsd.listen-tcp=",
			"--web.listen-address="+s.httpAddr,
			fmt.Sprintf("--statsd.read-buffer=%d", o.ReadBuffer),
			"--log.level=warn")
	default:
		return nil, fmt.Errorf("unknown server %q", kind)
	}
	if o.Nice != 0 {
		// nice execs the server: the process, and every thread it makes,
		// has the niceness, and the same PID.
		s.cmd.Args = append([]string{"nice", "-n", strconv.Itoa(o.Nice)}, s.cmd.Args...)
		s.cmd.Path, err = exec.LookPath("nice")
		if err != nil {
			return nil, err
		}
	}
	s.cmd.Stderr = &s.stderr
	s.cmd.Stdout = io.Discard
	if err := s.cmd.Start(); err != nil {
		s.cleanup()
		return nil, err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := s.scrape(); err == nil {
			return s, nil
		}
		if time.Now().After(deadline) || s.cmd.ProcessState != nil {
			s.kill()
			return nil, fmt.Errorf("%s did not start: %s", kind, s.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *server) pid() int { return s.cmd.Process.Pid }

// stop ends the server with SIGTERM (statsbridge then makes its last
// flush) and waits for it.
func (s *server) stop() error {
	s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		err = fmt.Errorf("%s did not stop on SIGTERM", s.kind)
		<-done
	}
	s.cleanup()
	return err
}

func (s *server) kill() {
	s.cmd.Process.Kill()
	s.cmd.Wait()
	s.cleanup()
}

func (s *server) cleanup() {
	if s.carbon != nil {
		s.carbon.close()
	}
	os.RemoveAll(s.dir)
}

// scrape reads /metrics in the Prometheus text format.
func (s *server) scrape() (string, error) {
	resp, err := http.Get("http://" + s.httpAddr + "/metrics")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("/metrics: %s", resp.Status)
	}
	return string(b), nil
}

// Totals are what a server's /metrics says it processed.
type Totals struct {
	Lines     float64 // lines parsed
	Datagrams float64 // datagrams read
	Dropped   float64 // datagrams the server itself dropped (a full internal queue)
	Reads     float64 // read system calls (statsbridge only)
	Counters  float64 // the sum of every bench.c.* counter series
}

var benchCounter = regexp.MustCompile(`^bench_c_[0-9]+(_total)?(\{[^}]*\})? (\S+)$`)

func (s *server) totals() (Totals, error) {
	text, err := s.scrape()
	if err != nil {
		return Totals{}, err
	}
	var t Totals
	value := func(line string) float64 {
		f := strings.Fields(line)
		v, _ := strconv.ParseFloat(f[len(f)-1], 64)
		return v
	}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if m := benchCounter.FindStringSubmatch(line); m != nil {
			v, _ := strconv.ParseFloat(m[3], 64)
			t.Counters += v
			continue
		}
		name, _, _ := strings.Cut(line, " ")
		switch name {
		case "statsbridge_ingest_lines_total", "statsd_exporter_lines_total":
			t.Lines = value(line)
		case "statsbridge_ingest_datagrams_total", "statsd_exporter_udp_packets_total":
			t.Datagrams = value(line)
		case "statsbridge_ingest_udp_reads_total":
			t.Reads = value(line)
		case "statsd_exporter_udp_packet_drops_total":
			t.Dropped = value(line)
		}
	}
	return t, nil
}

// CPU is a process's CPU time so far: utime+stime from /proc/PID/stat, in
// clock ticks of 10ms, and the sum of its threads' run time from
// /proc/PID/task/*/schedstat, in nanoseconds.
type CPU struct {
	Stat  time.Duration
	Sched time.Duration
}

func (a CPU) sub(b CPU) CPU { return CPU{a.Stat - b.Stat, a.Sched - b.Sched} }

const clockTick = 10 * time.Millisecond // USER_HZ is 100 on Linux

func processCPU(pid int) (CPU, error) {
	var c CPU
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return c, err
	}
	// The fields after the command, which is in parentheses and may hold
	// spaces: state is field 3, utime 14 and stime 15.
	rest := string(b[bytes.LastIndexByte(b, ')')+2:])
	f := strings.Fields(rest)
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	c.Stat = time.Duration(utime+stime) * clockTick
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		ns, _ := strconv.ParseInt(strings.Fields(string(b))[0], 10, 64)
		c.Sched += time.Duration(ns)
	}
	return c, nil
}

// peakRSS is VmHWM from /proc/PID/status, in bytes.
func peakRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// UDPSockets are the kernel's counters for the sockets bound to a port,
// from /proc/net/udp: datagrams dropped on a full buffer, bytes queued.
type UDPSockets struct {
	Drops  int64
	Queued int64
}

func udpSockets(port int) UDPSockets {
	var u UDPSockets
	b, err := os.ReadFile("/proc/net/udp")
	if err != nil {
		return u
	}
	suffix := fmt.Sprintf(":%04X", port)
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 13 || !strings.HasSuffix(f[1], suffix) {
			continue
		}
		drops, _ := strconv.ParseInt(f[12], 10, 64)
		u.Drops += drops
		if _, rx, ok := strings.Cut(f[4], ":"); ok {
			q, _ := strconv.ParseInt(rx, 16, 64)
			u.Queued += q
		}
	}
	return u
}

// profile saves a CPU profile of the next d of a statsbridge started with
// pprof into path.
func (s *server) profile(d time.Duration, path string) error {
	resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", s.httpAddr, int(d.Seconds())))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("profile: %s", resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(f, resp.Body)
	return err
}
