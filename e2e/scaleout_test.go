package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// startCarbonCRelay runs carbon-c-relay in front of the carbons, routing
// each metric to one of them by consistent hashing (carbon_ch, as
// carbon-relay.py's consistent-hashing does), and returns its address.
func startCarbonCRelay(t testing.TB, carbons ...*carbon) string {
	t.Helper()
	bin := need(t, "carbon-c-relay")
	dir := t.TempDir()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	var members []string
	for i, c := range carbons {
		// carbon_ch hashes on the instance name, so two carbons on one
		// address are told apart by theirs.
		members = append(members, fmt.Sprintf("    %s=cache%d", c.Addr, i))
	}
	conf := fmt.Sprintf("listen type linemode %s proto tcp;\n\ncluster carbons carbon_ch replication 1\n%s\n    ;\n\nmatch * send to carbons stop;\n",
		addr, strings.Join(members, "\n"))
	write(t, filepath.Join(dir, "relay.conf"), conf)
	mk := func() *exec.Cmd {
		// -s: a submission relay, without statistics of its own.
		return exec.Command(bin, "-f", filepath.Join(dir, "relay.conf"), "-s", "-w", "1")
	}
	startServer(t, "carbon-c-relay", mk, tcpReady(addr))
	return addr
}

// taggedPoints reads a tagged series' whisper file as carbon-cache names it
// (TAG_HASH_FILENAMES): _tagged/ and the sha256 of the name with its tags
// sorted, in two levels of three characters.
func (c *carbon) taggedPoints(t testing.TB, name string, tags map[string]string) []whisperPoint {
	t.Helper()
	var keys []string
	for k := range tags {
		keys = append(keys, k)
	}
	sortStrings(keys)
	normalized := name
	for _, k := range keys {
		normalized += ";" + k + "=" + tags[k]
	}
	sum := sha256.Sum256([]byte(normalized))
	h := hex.EncodeToString(sum[:])
	data, err := os.ReadFile(filepath.Join(c.whisper, "_tagged", h[:3], h[3:6], h+".wsp"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return readWhisper(t, data)
}

func sortStrings(ss []string) {
	for i := 1; i < len(ss); i++ {
		for j := i; j > 0 && ss[j] < ss[j-1]; j-- {
			ss[j], ss[j-1] = ss[j-1], ss[j]
		}
	}
}

// vmQuery runs an instant PromQL query against victoria-metrics and
// returns each result's value by the label named by.
func vmQuery(t testing.TB, vmURL, query, by string) map[string]string {
	t.Helper()
	if resp, err := http.Get(vmURL + "/internal/force_flush"); err == nil {
		resp.Body.Close()
	}
	resp, err := http.Get(vmURL + "/api/v1/query?" + url.Values{"query": {query}}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var out struct {
		Status string `json:"status"`
		Data   struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &out); err != nil || out.Status != "success" {
		t.Fatalf("query %q: %s", query, body)
	}
	got := map[string]string{}
	for _, r := range out.Data.Result {
		got[r.Metric[by]] = fmt.Sprint(r.Value[1])
	}
	return got
}

// TestScaleOutThroughClusteredBackends: three statsbridge relays, each
// with its own external_labels instance, feed a carbon-c-relay that
// consistent-hashes over two carbon-caches, and one victoria-metrics
// through remote-write and InfluxDB line protocol. Each relay gets its own
// share of the same counters; summed over the relays, every backend holds
// the exact totals, and carbon-c-relay spread the series over both caches,
// each series whole on one.
func TestScaleOutThroughClusteredBackends(t *testing.T) {
	carbons := []*carbon{startCarbon(t), startCarbon(t)}
	graphiteRelay := startCarbonCRelay(t, carbons...)
	vm := startVictoria(t)
	name := uniqueName("scale")
	const counters, relays = 8, 3

	var started []*relay
	for i := 1; i <= relays; i++ {
		r := startRelay(t, fmt.Sprintf(`
[statsd]
udp = ["127.0.0.1:0"]
tcp = []
flush_interval = "1s"
[http]
listen = "127.0.0.1:0"
[[graphite]]
address = %q
external_labels = { instance = "relay%d" }
[[remote_write]]
url = "%s/api/v1/write"
external_labels = { instance = "relay%d" }
[[influx]]
url = "%s/write?db=scale"
external_labels = { instance = "relay%d" }
`, graphiteRelay, i, vm.URL, i, vm.URL, i))
		// Relay i counts i·(k+1) for counter k, in i lines of k+1.
		var lines []string
		for k := 0; k < counters; k++ {
			for n := 0; n < i; n++ {
				lines = append(lines, fmt.Sprintf("%s.c%d:%d|c", name, k, k+1))
			}
		}
		r.sendUDP(t, lines...)
		started = append(started, r)
	}
	for _, r := range started {
		r.stop(t) // its final flush delivers what is left
	}
	// The totals: Σ over relays i of i·(k+1) = 6·(k+1).
	want := func(k int) string { return fmt.Sprint(6 * (k + 1)) }

	t.Run("remote-write: sum by over the relays' totals", func(t *testing.T) {
		q := fmt.Sprintf(`sum by (__name__) ({__name__=~"%s_c[0-9]+_total"})`, name)
		eventually(t, 20*time.Second, "victoria-metrics' sums", func() (bool, string) {
			got := vmQuery(t, vm.URL, q, "__name__")
			for k := 0; k < counters; k++ {
				if got[fmt.Sprintf("%s_c%d_total", name, k)] != want(k) {
					return false, fmt.Sprint(got)
				}
			}
			return true, ""
		})
		// And per relay, each its own share.
		got := vmQuery(t, vm.URL, fmt.Sprintf(`sum by (instance) (%s_c0_total)`, name), "instance")
		for i := 1; i <= relays; i++ {
			if got[fmt.Sprintf("relay%d", i)] != fmt.Sprint(i) {
				t.Errorf("relay%d's share: %v", i, got)
			}
		}
	})
	t.Run("InfluxDB line protocol: sum by over the relays' intervals", func(t *testing.T) {
		// Telegraf's shape writes each interval's count: summed over time,
		// then over the relays. (A function of time drops the name, so one
		// query per counter.)
		eventually(t, 20*time.Second, "victoria-metrics' sums", func() (bool, string) {
			for k := 0; k < counters; k++ {
				q := fmt.Sprintf(`sum(sum_over_time(%s_c%d_value{db="scale",metric_type="counter"}[10m]))`, name, k)
				if got := vmQuery(t, vm.URL, q, "")[""]; got != want(k) {
					return false, fmt.Sprintf("%s = %s, want %s", q, got, want(k))
				}
			}
			return true, ""
		})
	})
	t.Run("Graphite: both carbon-caches' whisper trees summed", func(t *testing.T) {
		held := make([]int, len(carbons))
		eventually(t, 20*time.Second, "the carbons' sums", func() (bool, string) {
			held = make([]int, len(carbons))
			var detail []string
			ok := true
			for k := 0; k < counters; k++ {
				path := fmt.Sprintf("stats_counts.%s.c%d", name, k)
				total := 0.0
				for i := 1; i <= relays; i++ {
					tags := map[string]string{"instance": fmt.Sprintf("relay%d", i)}
					on := 0
					for ci, c := range carbons {
						ps := c.taggedPoints(t, path, tags)
						if len(ps) > 0 {
							on++
							held[ci]++
						}
						for _, p := range ps {
							total += p.V
						}
					}
					if on > 1 {
						t.Fatalf("%s;instance=relay%d is on both carbons: not consistent hashing", path, i)
					}
				}
				if fmt.Sprint(total) != want(k) {
					ok = false
					detail = append(detail, fmt.Sprintf("%s: %v", path, total))
				}
			}
			return ok, strings.Join(detail, ", ")
		})
		for ci, n := range held {
			if n == 0 {
				t.Errorf("carbon %d holds none of the %d series: carbon-c-relay did not spread them", ci, counters*relays)
			}
		}
	})
}
