// Command bench measures statsbridge and statsd_exporter side by side, as
// processes on this machine: it pre-renders StatsD datagrams, sends them
// with sendmmsg at a steady rate (or pre-fills a stopped server's socket
// and times the drain), and reads the servers' CPU time, peak RSS and the
// kernel's drops from /proc. It checks what arrived through each server's
// /metrics and, for statsbridge, through a carbon listener of its own.
//
// Runs of the servers are interleaved, each in a fresh process, and
// repeated; -report prints the medians. BENCHMARKS.md gives the commands.
package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	var (
		servers   = flag.String("servers", "statsbridge,statsd_exporter", "servers to compare: `LIST` of [label=]kind[:bin=PATH][:cork=DURATION], kind statsbridge or statsd_exporter; cork= (empty) leaves read_cork out of the configuration")
		shapes    = flag.String("shapes", "prosody,batched", "traffic shapes: prosody (1 line per datagram), batched (20 lines per datagram) or N (N lines)")
		rates     = flag.String("rates", "10000,50000,100000,250000", "offered `RATES`, datagrams per second")
		duration  = flag.Duration("duration", 5*time.Second, "sending time of each rate run")
		reps      = flag.Int("reps", 3, "repetitions of every run")
		capacity  = flag.Int("capacity", 0, "instead of rates: fill-and-drain cycles per run, each pre-filling a stopped server's socket (0: rate runs)")
		fill      = flag.Int("fill", 0, "datagrams sent into the stopped server's socket per capacity cycle (0: what about half its read buffer holds)")
		series    = flag.Int("series", 100, "distinct names per type")
		mix       = flag.String("types", "c:60,g:20,ms:20", "StatsD type mix, type:weight,...")
		sampled   = flag.Float64("sampled", 0.1, "fraction of counter and timer lines sent with a sample rate (@0.5)")
		tags      = flag.Int("tags", 0, "DogStatsD tags per line")
		senders   = flag.Int("senders", 1, "sending sockets (each its own source port)")
		burst     = flag.Int("burst", 64, "most datagrams per sendmmsg call")
		tick      = flag.Duration("tick", 50*time.Microsecond, "the sender's sleep while ahead of its schedule")
		readBuf   = flag.Int("read-buffer", 8<<20, "SO_RCVBUF asked of every server, bytes")
		readers   = flag.Int("readers", 0, "statsbridge's readers (0: one per core)")
		flushIv   = flag.String("flush", "1s", "statsbridge's flush_interval")
		repo      = flag.String("repo", "..", "the statsbridge repository, built for bin-less statsbridge servers")
		cache     = flag.String("cache", defaultCache(), "where built servers are kept")
		out       = flag.String("out", "", "append each run's result to this TSV `FILE`")
		report    = flag.String("report", "", "print the medians of the runs in this TSV `FILE`, and exit")
		plotData  = flag.String("plot-data", "", "with -report: write gnuplot data files into this `DIR`")
		smoke     = flag.Bool("smoke", false, "a tiny run of everything, for CI: fails when a total does not check out")
		verbose   = flag.Bool("v", false, "print every run")
		profile   = flag.String("profile", "", "save a CPU profile of each statsbridge rate run as `PREFIX`-<server>-<lines>-lines-<rate>.pprof")
		nice      = flag.Int("nice", 0, "run the servers at this niceness (negative: ahead of other work on a shared machine; needs root)")
		cooldown  = flag.Duration("cooldown", 500*time.Millisecond, "pause between runs")
		exporterV = flag.String("statsd-exporter-version", "v0.31.0", "the statsd_exporter version go install builds")
	)
	flag.Parse()
	if *report != "" {
		if err := printReport(*report, *plotData); err != nil {
			fatal(err)
		}
		return
	}
	if *smoke {
		*shapes, *rates, *duration, *reps = "prosody,batched", "2000", 500*time.Millisecond, 1
		*cooldown = 0
	}
	specs, err := parseServers(*servers)
	if err != nil {
		fatal(err)
	}
	typeMix, err := parseMix(*mix)
	if err != nil {
		fatal(err)
	}
	var rateList []float64
	for _, r := range strings.Split(*rates, ",") {
		f, err := strconv.ParseFloat(strings.TrimSpace(r), 64)
		if err != nil || f <= 0 {
			fatal(fmt.Errorf("-rates: %q is not a rate", r))
		}
		rateList = append(rateList, f)
	}
	var shapeList []shape
	for _, s := range strings.Split(*shapes, ",") {
		sh, err := parseShape(s)
		if err != nil {
			fatal(err)
		}
		shapeList = append(shapeList, sh)
	}
	for i := range specs {
		if err := specs[i].build(*repo, *cache, *exporterV); err != nil {
			fatal(err)
		}
	}
	opts := func(sp serverSpec) ServerOptions {
		return ServerOptions{ReadBuffer: *readBuf, ReadCork: sp.cork, Readers: *readers, Flush: *flushIv, Nice: *nice}
	}

	rec, err := newRecorder(*out)
	if err != nil {
		fatal(err)
	}
	defer rec.close()
	var failed []string
	record := func(r Result) {
		rec.write(r)
		if *verbose || *smoke {
			fmt.Fprintln(os.Stderr, r.summary())
		}
		if r.Check != "ok" && !strings.HasPrefix(r.Check, "n/a") {
			failed = append(failed, r.summary())
		}
	}
	run := func(mode string) {
		for rep := range *reps {
			for _, sh := range shapeList {
				t := Traffic{Lines: sh.lines, Series: *series, Mix: typeMix, Sampled: *sampled, Tags: *tags}
				d := render(t, 4096, uint64(rep+1))
				points := rateList
				if mode == "capacity" {
					points = []float64{0}
				}
				for _, rate := range points {
					// Interleaved: each repetition starts with another server.
					for i := range specs {
						sp := specs[(i+rep)%len(specs)]
						var r Result
						var err error
						if mode == "capacity" {
							r, err = measureCapacity(sp, opts(sp), &d, *capacity, *fill, *readBuf)
						} else {
							r, err = measureRate(sp, opts(sp), &d, rate, *duration, *tick, *senders, *burst, *profile)
						}
						if err != nil {
							fatal(fmt.Errorf("%s: %w", sp.label, err))
						}
						r.Shape, r.Rep = sh.name, rep
						record(r)
						time.Sleep(*cooldown)
					}
				}
			}
		}
	}
	if *capacity > 0 {
		run("capacity")
	} else {
		run("rate")
	}
	if *smoke {
		*capacity = 1
		*fill = 2000
		run("capacity")
	}
	if len(failed) > 0 {
		fmt.Fprintln(os.Stderr, "totals that did not check out:")
		for _, f := range failed {
			fmt.Fprintln(os.Stderr, "  "+f)
		}
		os.Exit(1)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}

func defaultCache() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	return dir + "/statsbridge-bench"
}

// shape is a named traffic shape.
type shape struct {
	name  string
	lines int
}

func parseShape(s string) (shape, error) {
	switch s = strings.TrimSpace(s); s {
	case "prosody":
		return shape{s, 1}, nil
	case "batched":
		return shape{s, 20}, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return shape{}, fmt.Errorf("shape %q: prosody, batched or a number of lines", s)
	}
	return shape{fmt.Sprintf("%d-lines", n), n}, nil
}
