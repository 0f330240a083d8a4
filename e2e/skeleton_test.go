package e2e

import (
	"fmt"
	"strconv"
	"testing"
	"time"
)

// TestCountersAndGaugesReachEveryBackend sends counters and gauges over UDP
// and TCP, checks /metrics live, stops statsbridge with SIGTERM right after a
// last increment, and reads exact totals back from carbon's whisper files,
// InfluxDB and Prometheus.
func TestCountersAndGaugesReachEveryBackend(t *testing.T) {
	carbon := startCarbon(t)
	influx := startInflux(t)
	influx.createDB(t, "statsd")
	prom := startPrometheus(t)

	name := uniqueName("e2e")
	r := startRelay(t, fmt.Sprintf(`
shutdown_timeout = "20s"
[statsd]
udp = ["127.0.0.1:0"]
tcp = ["127.0.0.1:0"]
flush_interval = "1s"
[http]
listen = "127.0.0.1:0"
[[graphite]]
address = %[1]q
layout = "paths"
prefix = "paths."
[[graphite]]
address = %[1]q
layout = "etsy"
[[influx]]
url = "%[2]s/write?db=statsd"
[[remote_write]]
url = "%[3]s/api/v1/write"
`, carbon.Addr, influx.URL, prom.URL))

	hits, temp := name+"_hits_total", name+"_temp"
	waitScrape := func(wantHits, wantTemp string) {
		eventually(t, 5*time.Second, "/metrics shows the samples", func() (bool, string) {
			body := r.scrape(t)
			h, _ := sample(body, hits)
			g, _ := sample(body, temp)
			return h == wantHits && g == wantTemp, fmt.Sprintf("%s=%q %s=%q", hits, h, temp, g)
		})
	}
	// Gauges keep the last value, so each step waits for the one before.
	r.sendTCP(t, name+".hits:4|c\n"+name+".temp:10|g\n")
	waitScrape("4", "10")
	r.sendUDP(t, name+".hits:1|c\n"+name+".hits:2|c", name+".temp:21.5|g")
	waitScrape("7", "21.5")

	// Let a flush reach Prometheus, then stop right after one more increment:
	// the final flush must carry it.
	eventually(t, 10*time.Second, "a flush reached prometheus", func() (bool, string) {
		ss := prom.samples(t, hits, time.Minute)
		return len(ss) > 0 && ss[len(ss)-1].V == "7", fmt.Sprint(ss)
	})
	r.sendUDP(t, name+".hits:3|c")
	r.stop(t)

	const wantTotal = 10.0
	t.Run("prometheus", func(t *testing.T) {
		ss := prom.samples(t, hits, time.Minute)
		if len(ss) == 0 || ss[len(ss)-1].V != "10" {
			t.Fatalf("%s samples %v: want the last to be 10", hits, ss)
		}
		for i := 1; i < len(ss); i++ {
			if ss[i].T <= ss[i-1].T {
				t.Errorf("timestamps not increasing: %v", ss)
			}
		}
		gs := prom.samples(t, temp, time.Minute)
		if len(gs) == 0 || gs[len(gs)-1].V != "21.5" {
			t.Fatalf("%s samples %v: want the last to be 21.5", temp, gs)
		}
	})
	t.Run("influxdb", func(t *testing.T) {
		rows := influx.query(t, "statsd", fmt.Sprintf(`SELECT sum("value") FROM "%s_hits"`, name))
		if len(rows) != 1 || rows[0][1] != wantTotal {
			t.Fatalf("sum of %s_hits: %v, want %v", name, rows, wantTotal)
		}
		rows = influx.query(t, "statsd", fmt.Sprintf(`SELECT last("value") FROM "%s_temp"`, name))
		if len(rows) != 1 || rows[0][1] != 21.5 {
			t.Fatalf("last of %s_temp: %v, want 21.5", name, rows)
		}
	})
	t.Run("carbon", func(t *testing.T) {
		for _, path := range []string{"paths." + name + ".hits", "stats_counts." + name + ".hits"} {
			eventually(t, 10*time.Second, "carbon stored "+path, func() (bool, string) {
				ps := carbon.points(t, path)
				sum := 0.0
				for _, p := range ps {
					sum += p.V
				}
				return sum == wantTotal, fmt.Sprintf("points %v sum to %v, want %v", ps, sum, wantTotal)
			})
		}
		for _, path := range []string{"paths." + name + ".temp", "stats.gauges." + name + ".temp"} {
			eventually(t, 10*time.Second, "carbon stored "+path, func() (bool, string) {
				ps := carbon.points(t, path)
				return len(ps) > 0 && ps[len(ps)-1].V == 21.5, fmt.Sprintf("points %v", ps)
			})
		}
		// Rates are per second of the time each interval really covered
		// (the shutdown flush covers a fraction of one).
		ps := carbon.points(t, "stats."+name+".hits")
		positive := 0
		for _, p := range ps {
			if p.V < 0 {
				t.Errorf("negative rate point %v", p)
			}
			if p.V > 0 {
				positive++
			}
		}
		if positive == 0 {
			t.Errorf("no positive stats.%s.hits rate points: %v", name, ps)
		}
		t.Logf("carbon %s.hits: %s", name, formatPoints(carbon.points(t, "paths."+name+".hits")))
	})
}

func formatPoints(ps []whisperPoint) string {
	s := ""
	for _, p := range ps {
		s += strconv.FormatInt(p.T, 10) + "=" + strconv.FormatFloat(p.V, 'g', -1, 64) + " "
	}
	return s
}
