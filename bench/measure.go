package main

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Result is one run of one server.
type Result struct {
	Mode        string // rate or capacity
	Server      string
	Shape       string
	Rep         int
	LinesPerDG  int
	Offered     float64 // datagrams per second offered (rate runs)
	Seconds     float64 // sending time (rate runs), or time to drain (capacity runs)
	Sent        int64   // datagrams sent
	KernelDrops int64   // datagrams the kernel dropped, the server's socket full
	ServerDrops float64 // datagrams the server dropped itself
	Lines       float64 // lines the server processed, by its own count
	Datagrams   float64 // datagrams the server read, by its own count
	Reads       float64 // read system calls (statsbridge_ingest_udp_reads_total)
	CPUStat     float64 // seconds of CPU, utime+stime of /proc/PID/stat (10ms ticks)
	CPUSched    float64 // seconds of CPU, the threads' /proc/PID/task/*/schedstat
	PeakRSS     int64   // VmHWM, bytes
	Check       string  // ok, n/a (why), or what did not check out
}

var resultColumns = []string{"mode", "server", "shape", "rep", "lines_per_datagram", "offered_dgram_s", "seconds",
	"sent", "kernel_drops", "server_drops", "lines", "datagrams", "reads", "cpu_stat_s", "cpu_sched_s", "peak_rss", "check"}

func (r Result) fields() []string {
	f := func(v float64) string { return strconv.FormatFloat(v, 'g', 8, 64) }
	return []string{r.Mode, r.Server, r.Shape, strconv.Itoa(r.Rep), strconv.Itoa(r.LinesPerDG), f(r.Offered), f(r.Seconds),
		strconv.FormatInt(r.Sent, 10), strconv.FormatInt(r.KernelDrops, 10), f(r.ServerDrops), f(r.Lines), f(r.Datagrams),
		f(r.Reads), f(r.CPUStat), f(r.CPUSched), strconv.FormatInt(r.PeakRSS, 10), r.Check}
}

func parseResult(fields []string) (Result, error) {
	if len(fields) != len(resultColumns) {
		return Result{}, fmt.Errorf("%d columns, want %d", len(fields), len(resultColumns))
	}
	var r Result
	var errs []error
	num := func(s string) float64 {
		v, err := strconv.ParseFloat(s, 64)
		errs = append(errs, err)
		return v
	}
	r.Mode, r.Server, r.Shape = fields[0], fields[1], fields[2]
	r.Rep, r.LinesPerDG = int(num(fields[3])), int(num(fields[4]))
	r.Offered, r.Seconds, r.Sent = num(fields[5]), num(fields[6]), int64(num(fields[7]))
	r.KernelDrops, r.ServerDrops, r.Lines = int64(num(fields[8])), num(fields[9]), num(fields[10])
	r.Datagrams, r.Reads, r.CPUStat, r.CPUSched = num(fields[11]), num(fields[12]), num(fields[13]), num(fields[14])
	r.PeakRSS, r.Check = int64(num(fields[15])), fields[16]
	return r, errors.Join(errs...)
}

// Derived figures.
func (r Result) sentLines() float64      { return float64(r.Sent) * float64(r.LinesPerDG) }
func (r Result) linesPerSec() float64    { return r.Lines / r.Seconds }
func (r Result) loss() float64           { return 1 - r.Lines/r.sentLines() }
func (r Result) cpuPerLine() float64     { return r.CPUSched / r.Lines * 1e9 }     // ns
func (r Result) cpuPerDG() float64       { return r.CPUSched / r.Datagrams * 1e9 } // ns
func (r Result) readsPerDG() float64     { return r.Reads / r.Datagrams }
func (r Result) cpuStatPerDG() float64   { return r.CPUStat / r.Datagrams * 1e9 }
func (r Result) cores() float64          { return r.CPUSched / r.Seconds }
func (r Result) peakRSSMiB() float64     { return float64(r.PeakRSS) / (1 << 20) }
func (r Result) offeredLines() float64   { return r.Offered * float64(r.LinesPerDG) }
func (r Result) kernelDropFrac() float64 { return float64(r.KernelDrops) / float64(r.Sent) }

func (r Result) summary() string {
	if r.Mode == "capacity" {
		return fmt.Sprintf("%-8s %-22s %-8s rep %d: %.0f lines in %.3fs = %.0f lines/s, %.0f ns CPU/line, %.0f ns CPU/datagram, peak RSS %.0f MiB, kernel drops %d: %s",
			r.Mode, r.Server, r.Shape, r.Rep, r.Lines, r.Seconds, r.linesPerSec(), r.cpuPerLine(), r.cpuPerDG(), r.peakRSSMiB(), r.KernelDrops, r.Check)
	}
	return fmt.Sprintf("%-8s %-22s %-8s rep %d: %.0f dgram/s offered, %.0f lines/s processed, loss %.2f%%, kernel drops %d, %.0f ns CPU/datagram (stat %.0f), %.2f reads/datagram, peak RSS %.0f MiB: %s",
		r.Mode, r.Server, r.Shape, r.Rep, r.Offered, r.linesPerSec(), 100*r.loss(), r.KernelDrops, r.cpuPerDG(), r.cpuStatPerDG(), r.readsPerDG(), r.peakRSSMiB(), r.Check)
}

// recorder appends results to a TSV file.
type recorder struct {
	f *os.File
}

func newRecorder(path string) (*recorder, error) {
	if path == "" {
		return &recorder{}, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	if st, _ := f.Stat(); st.Size() == 0 {
		fmt.Fprintln(f, strings.Join(resultColumns, "\t"))
	}
	return &recorder{f: f}, nil
}

func (r *recorder) write(res Result) {
	if r.f != nil {
		fmt.Fprintln(r.f, strings.Join(res.fields(), "\t"))
	}
}

func (r *recorder) close() {
	if r.f != nil {
		r.f.Close()
	}
}

func readResults(path string) ([]Result, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Result
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		if n == 1 || strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		r, err := parseResult(strings.Split(sc.Text(), "\t"))
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		out = append(out, r)
	}
	return out, sc.Err()
}

// settle lets a new server finish starting before its CPU is counted.
const settle = 300 * time.Millisecond

// measureRate sends d at rate datagrams a second for dur to a new server,
// and measures what it took the server to process them.
func measureRate(sp serverSpec, o ServerOptions, d *Datagrams, rate float64, dur, tick time.Duration, senders, burst int, profile string) (Result, error) {
	o.Pprof = profile != "" && sp.kind == statsbridge
	s, err := startServer(sp.kind, sp.bin, o)
	if err != nil {
		return Result{}, err
	}
	defer s.kill()
	time.Sleep(settle)
	r := Result{Mode: "rate", Server: sp.label, LinesPerDG: d.Lines, Offered: rate, Seconds: dur.Seconds()}
	udp0 := udpSockets(s.udpPort)
	cpu0, err := processCPU(s.pid())
	if err != nil {
		return r, err
	}
	var sent Sent
	var mu sync.Mutex
	var wg sync.WaitGroup
	if o.Pprof {
		path := fmt.Sprintf("%s-%s-%d-lines-%.0f.pprof", profile, sp.label, d.Lines, rate)
		wg.Go(func() {
			if err := s.profile(dur, path); err != nil {
				fmt.Fprintln(os.Stderr, "bench:", err)
			}
		})
	}
	for range senders {
		snd, err := newSender(s.udpPort, d)
		if err != nil {
			return r, err
		}
		wg.Go(func() {
			defer snd.close()
			got := snd.paced(d, rate/float64(senders), dur, tick, burst)
			mu.Lock()
			sent.add(got)
			mu.Unlock()
		})
	}
	wg.Wait()
	r.Sent = sent.Datagrams
	t, udp := waitProcessed(s, udp0, r.Sent, d.Lines, sent.Counts)
	cpu1, err := processCPU(s.pid())
	if err != nil {
		return r, err
	}
	r.fill(s, t, udp.Drops-udp0.Drops, cpu1.sub(cpu0))
	r.Check = check(s, r, sent.Counts, sent.Errors)
	return r, nil
}

// waitProcessed waits until the server has counted every line that was
// not dropped, and its counters show them, or until its counts stop
// moving.
func waitProcessed(s *server, udp0 UDPSockets, sent int64, lines int, counts float64) (Totals, UDPSockets) {
	var t Totals
	var udp UDPSockets
	last, still := -1.0, 0
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		udp = udpSockets(s.udpPort)
		var err error
		if t, err = s.totals(); err != nil {
			continue
		}
		lost := float64(udp.Drops-udp0.Drops) + t.Dropped
		if t.Lines+lost*float64(lines) >= float64(sent)*float64(lines) && (lost > 0 || t.Counters >= counts) {
			break
		}
		if t.Lines+t.Counters == last {
			if still++; still == 100 { // 2s without progress
				break
			}
		} else {
			last, still = t.Lines+t.Counters, 0
		}
	}
	return t, udp
}

func (r *Result) fill(s *server, t Totals, kernelDrops int64, cpu CPU) {
	r.KernelDrops = kernelDrops
	r.ServerDrops = t.Dropped
	r.Lines, r.Datagrams = t.Lines, t.Datagrams
	r.Reads = t.Reads
	r.CPUStat, r.CPUSched = cpu.Stat.Seconds(), cpu.Sched.Seconds()
	r.PeakRSS = peakRSS(s.pid())
}

// check holds what the server says it processed to what was sent: every
// line not dropped; and, with nothing dropped, every counter increment in
// /metrics and (statsbridge) at the carbon listener after the last flush.
// counts and sendErrors are of everything the server was sent. It stops
// the server.
func check(s *server, r Result, counts float64, sendErrors int64) string {
	var problems []string
	lost := float64(r.KernelDrops) + r.ServerDrops
	if want := (float64(r.Sent) - lost) * float64(r.LinesPerDG); r.Lines != want {
		problems = append(problems, fmt.Sprintf("lines %.0f, want %.0f", r.Lines, want))
	}
	final, err := s.totals()
	if err != nil {
		problems = append(problems, err.Error())
	}
	if err := s.stop(); err != nil {
		problems = append(problems, err.Error())
	}
	if lost > 0 || sendErrors > 0 {
		if len(problems) == 0 {
			return fmt.Sprintf("n/a (%.0f datagrams lost, %d send errors)", lost, sendErrors)
		}
		return strings.Join(problems, "; ")
	}
	if final.Counters != counts {
		problems = append(problems, fmt.Sprintf("/metrics counters %.0f, want %.0f", final.Counters, counts))
	}
	if s.carbon != nil {
		var got float64
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if _, got = s.carbon.got(); got == counts {
				break
			}
		}
		if got != counts {
			problems = append(problems, fmt.Sprintf("carbon counters %.0f, want %.0f", got, counts))
		}
	}
	if len(problems) > 0 {
		return strings.Join(problems, "; ")
	}
	return "ok"
}

// measureCapacity stops a new server (SIGSTOP), fills its socket with
// datagrams, lets it go and times how long it takes to process them, cycles
// times: one core drains a socket faster than one generator core fills
// it.
func measureCapacity(sp serverSpec, o ServerOptions, d *Datagrams, cycles, fill, readBuf int) (Result, error) {
	s, err := startServer(sp.kind, sp.bin, o)
	if err != nil {
		return Result{}, err
	}
	defer s.kill()
	time.Sleep(settle)
	r := Result{Mode: "capacity", Server: sp.label, LinesPerDG: d.Lines}
	snd, err := newSender(s.udpPort, d)
	if err != nil {
		return r, err
	}
	defer snd.close()
	// What the probe for the fill sent is processed before the first
	// cycle, and counted only in the totals the checks expect.
	var all Sent
	if fill == 0 {
		var probe Sent
		if fill, probe, err = probeFill(s, snd, d, readBuf); err != nil {
			return r, err
		}
		all.add(probe)
	}
	udp0 := udpSockets(s.udpPort)
	base, _ := waitProcessed(s, udp0, all.Datagrams, d.Lines, all.Counts)
	t := base
	var cpu CPU
	var drain time.Duration
	for range cycles {
		if err := pause(s); err != nil {
			return r, err
		}
		got := snd.burst(d, int64(fill))
		all.add(got)
		r.Sent += got.Datagrams
		cpu0, _ := processCPU(s.pid())
		start := time.Now()
		s.cmd.Process.Signal(syscall.SIGCONT)
		for udpSockets(s.udpPort).Queued > 0 {
			time.Sleep(time.Millisecond)
		}
		t, _ = waitProcessed(s, udp0, all.Datagrams, d.Lines, all.Counts)
		drain += time.Since(start)
		cpu1, _ := processCPU(s.pid())
		cpu.Stat += cpu1.Stat - cpu0.Stat
		cpu.Sched += cpu1.Sched - cpu0.Sched
	}
	r.Seconds = drain.Seconds()
	r.fill(s, t, udpSockets(s.udpPort).Drops-udp0.Drops, cpu)
	r.Lines -= base.Lines
	r.Datagrams -= base.Datagrams
	r.Reads -= base.Reads
	r.ServerDrops -= base.Dropped
	r.Check = check(s, r, all.Counts, all.Errors)
	return r, nil
}

// pause stops the server and waits until the kernel says it is stopped.
func pause(s *server) error {
	if err := s.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		return err
	}
	for range 1000 {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.pid()))
		if err != nil {
			return err
		}
		if state := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))[0]; state == "T" {
			return nil
		}
		time.Sleep(time.Millisecond)
	}
	return errors.New("the server did not stop on SIGSTOP")
}

// probeFill finds how many datagrams fill half of the server's socket
// buffer: it sends a few to the stopped server and reads how much of the
// buffer they take in the kernel's accounting (/proc/net/udp rx_queue).
// The buffer is what the server was granted: twice read_buffer, capped at
// twice net.core.rmem_max for a server that does not force it
// (statsd_exporter), as the kernel counts its bookkeeping.
func probeFill(s *server, snd *sender, d *Datagrams, readBuf int) (int, Sent, error) {
	if err := pause(s); err != nil {
		return 0, Sent{}, err
	}
	defer s.cmd.Process.Signal(syscall.SIGCONT)
	q0 := udpSockets(s.udpPort).Queued
	sent := snd.burst(d, 64)
	per := float64(udpSockets(s.udpPort).Queued-q0) / float64(sent.Datagrams)
	if per <= 0 {
		return 0, sent, errors.New("probing the socket buffer: nothing queued")
	}
	limit := 2 * readBuf
	if s.kind != statsbridge || os.Geteuid() != 0 {
		if b, err := os.ReadFile("/proc/sys/net/core/rmem_max"); err == nil {
			if max, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && 2*max < limit {
				limit = 2 * max
			}
		}
	}
	return int(math.Floor(float64(limit) / 2 / per)), sent, nil
}
