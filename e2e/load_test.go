package e2e

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// BenchmarkWholeProcessUDP blasts UDP datagrams at the running binary for a
// few seconds and reports what it processed: lines per second, and the
// datagrams the kernel dropped because statsbridge did not keep up. The
// sender shares the machine with statsbridge, so the figures are those of
// this machine under both. BENCHMARKS.md has them:
//
//	go test -run '^$' -bench WholeProcessUDP -benchtime 1x ./e2e/
func BenchmarkWholeProcessUDP(b *testing.B) {
	shapes := []struct {
		name  string
		lines func(i int) []string // the lines of datagram i
	}{
		// Prosody sends one line per datagram.
		{"prosody_1_line_per_datagram", func(i int) []string {
			return []string{fmt.Sprintf("prosody.prosody_mod_c2s.connections.host%d.c2s.ipv4:%d|g", i%50, i%7)}
		}},
		// Batching clients pack lines into each datagram (up to ~1400 bytes).
		{"etsy_20_lines_per_datagram", func(i int) []string {
			out := make([]string, 20)
			for j := range out {
				out[j] = fmt.Sprintf("app.req.%d:1|c|#route:r%d", (i+j)%200, j)
			}
			return out
		}},
	}
	for _, sh := range shapes {
		b.Run(sh.name, func(b *testing.B) {
			for b.Loop() {
				blast(b, sh.lines)
			}
		})
	}
}

func blast(b *testing.B, lines func(int) []string) {
	r := startRelay(b, `
[statsd]
udp = ["127.0.0.1:0"]
tcp = []
flush_interval = "10s"
read_buffer = "8MiB"
[http]
listen = "127.0.0.1:0"
`)
	const sent = 200
	datagrams := make([][]byte, sent)
	perDatagram := 0
	for i := range datagrams {
		l := lines(i)
		perDatagram = len(l)
		datagrams[i] = []byte(strings.Join(l, "\n"))
	}
	const senders, duration = 2, 3 * time.Second
	var wg sync.WaitGroup
	var mu sync.Mutex
	total := 0
	start := time.Now()
	for s := 0; s < senders; s++ {
		wg.Go(func() {
			c, err := net.Dial("udp", r.UDP)
			if err != nil {
				b.Error(err)
				return
			}
			defer c.Close()
			n := 0
			for time.Since(start) < duration {
				for _, d := range datagrams {
					c.Write(d)
				}
				n += len(datagrams)
			}
			mu.Lock()
			total += n
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	// Let statsbridge read what the socket still holds.
	var processed, drops float64
	for prev := -1.0; ; prev = processed {
		time.Sleep(300 * time.Millisecond)
		body := r.scrape(b)
		processed = metricValue(body, "statsbridge_ingest_lines_total")
		drops = metricValue(body, "statsbridge_ingest_udp_kernel_drops_total")
		if processed == prev {
			break
		}
	}
	r.stop(b)
	b.ReportMetric(processed/elapsed.Seconds(), "lines/s")
	b.ReportMetric(float64(total*perDatagram)/elapsed.Seconds(), "sent-lines/s")
	b.ReportMetric(100*drops/float64(total), "%dropped-datagrams")
}

func metricValue(body, series string) float64 {
	v, _ := sample(body, series)
	f, _ := strconv.ParseFloat(v, 64)
	return f
}
