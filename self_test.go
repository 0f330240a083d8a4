package main

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/statsbridge/statsbridge/config"
)

// TestSelfMetricsHaveDistinctGraphitePaths: carbon keeps one point per path
// and time slot, so two series written to one path overwrite each other.
// In every layout each self-metric series has a path of its own, under
// statsbridge's namespace where the layout writes StatsD keys, and one bad
// line makes the bad-lines counter of its reason 1.
func TestSelfMetricsHaveDistinctGraphitePaths(t *testing.T) {
	tests := []struct {
		name, layout string
		legacy       bool
		badType      string // the bad_type counter's path
		namespaced   func(path string) bool
	}{
		{"etsy", config.LayoutEtsy, true, "stats_counts.statsbridge.ingest_bad_lines.bad_type", func(p string) bool {
			return strings.HasPrefix(p, "stats.statsbridge.") || strings.HasPrefix(p, "stats_counts.statsbridge.") ||
				strings.HasPrefix(p, "stats.gauges.statsbridge.")
		}},
		{"etsy, new namespace", config.LayoutEtsy, false, "stats.counters.statsbridge.ingest_bad_lines.bad_type.count", func(p string) bool {
			return strings.HasPrefix(p, "stats.counters.statsbridge.") || strings.HasPrefix(p, "stats.gauges.statsbridge.")
		}},
		{"paths", config.LayoutPaths, false, "statsbridge.ingest_bad_lines.bad_type", func(p string) bool {
			return strings.HasPrefix(p, "statsbridge.")
		}},
		// The tags layout names series after their families: client_golang's
		// go_* and process_* keep the names dashboards know them by.
		{"tags", config.LayoutTags, false, "statsbridge_ingest_bad_lines;reason=bad_type", func(p string) bool {
			return strings.HasPrefix(p, "statsbridge_") || strings.HasPrefix(p, "go_") || strings.HasPrefix(p, "process_")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Two sinks, so that the per-sink series of two sinks must differ.
			carbons := []*fakeCarbon{newFakeCarbon(t), newFakeCarbon(t)}
			cfg := testConfig()
			for _, c := range carbons {
				g := config.DefaultGraphite()
				g.Address, g.Layout, g.LegacyNamespace = c.l.Addr().String(), tt.layout, tt.legacy
				cfg.Graphite = append(cfg.Graphite, g)
			}
			a, stop := startRun(t, cfg)
			udp, err := net.Dial("udp", a.udp)
			if err != nil {
				t.Fatal(err)
			}
			udp.Write([]byte("a:1|x"))
			udp.Close()
			deadline := time.Now().Add(5 * time.Second)
			for {
				_, body := get(t, "http://"+a.http+"/metrics")
				if strings.Contains(body, "\nstatsbridge_ingest_bad_lines_total{reason=\"bad_type\"} 1\n") {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("/metrics does not count the bad line:\n%s", body)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if err := stop(); err != nil { // one flush: the last
				t.Fatalf("run returned %v", err)
			}
			for i, c := range carbons {
				deadline := time.Now().Add(5 * time.Second)
				for c.sum(tt.badType) != 1 {
					if time.Now().After(deadline) {
						t.Fatalf("carbon %d: %s = %v, want 1", i, tt.badType, c.sum(tt.badType))
					}
					time.Sleep(20 * time.Millisecond)
				}
				c.mu.Lock()
				seen := map[string]int{}
				for _, line := range c.lines {
					path := strings.Fields(line)[0]
					seen[path]++
					if !tt.namespaced(path) {
						t.Errorf("carbon %d: %s is outside statsbridge's namespace", i, path)
					}
				}
				c.mu.Unlock()
				for path, n := range seen {
					if n > 1 {
						t.Errorf("carbon %d: %d series written to %s", i, n, path)
					}
				}
			}
		})
	}
}
