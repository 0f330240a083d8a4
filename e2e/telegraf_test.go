package e2e

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/influxdata/line-protocol/v2/lineprotocol"
)

// telegrafCorpus is one StatsD client's traffic, interval by interval; each
// string is one datagram. Every name starts with "tg." so that statsbridge's
// own metrics can be told apart. No series holds more than Telegraf's
// percentile_limit (1000) values in an interval, copies of sampled values
// included: past it, Telegraf's percentiles are a random sample.
var telegrafCorpus = [][]string{
	{
		// counters: integers, sample rates, zero, signs
		"tg.hits:1|c", "tg.hits:2|c",
		"tg.zero:0|c",
		"tg.sampled:1|c|@0.5", "tg.sampled:1|c|@0.1",
		"tg.thirds:1|c|@0.3", "tg.thirds:1|c|@0.3", "tg.thirds:1|c|@0.3",
		"tg.frac:1.5|c", "tg.frac:1.5|c",
		"tg.neg:-3|c", "tg.neg:+5|c",
		// gauges, absolute and relative
		"tg.temp:21.5|g",
		"tg.level:10|g", "tg.level:-3|g", "tg.level:+0.5|g",
		// sets
		"tg.users:alice|s", "tg.users:bob|s", "tg.users:alice|s",
		// timers, plain and sampled (int(1/0.3) = 3 copies)
		"tg.api.time:12|ms", "tg.api.time:7.5|ms", "tg.api.time:20|ms", "tg.api.time:3.25|ms",
		"tg.api.time:16|ms", "tg.api.time:9|ms", "tg.api.time:11.125|ms",
		"tg.sampled.time:100|ms|@0.5", "tg.sampled.time:300|ms|@0.1", "tg.sampled.time:40|ms|@0.3", "tg.sampled.time:55|ms",
		// histograms and distributions
		"tg.size:512|h", "tg.size:2048|h|@0.25", "tg.size:1000|h",
		"tg.dist:5|d",
		// tags: DogStatsD, bare, Influx-style, Graphite-style, odd keys
		"tg.tagged:1|c|#env:prod,region:eu-west", "tg.tagged:1|c|#env:dev",
		"tg.bare:1|c|#canary",
		"tg.influx,env=dev,zone=eu:4|c",
		"tg.semi;env=dev:4|c",
		"tg.dash:1|g|#my-tag:x",
		"tg.mt:1|c|#metric_type:custom",
		// names: whitespace, odd bytes, a colon
		"tg.sp ace.x:1|g",
		"tg.odd/name-é+x@y.z:2|g",
		"tg.col:on:5|g",
		// DogStatsD's container section; two lines in one datagram
		"tg.cont:1|c|c:abc123",
		"tg.multi:1|c\ntg.multi:2|c",
	},
	{
		// Only these are written: the others are idle.
		"tg.hits:5|c",
		"tg.level:+2|g",
		"tg.api.time:1|ms",
		"tg.users:carol|s",
	},
	{}, // nothing: nothing is written
}

// telegrafDifferences are the differences from Telegraf left on purpose
// (README, "From Telegraf's statsd input"). A point or field listed here
// must differ as said; one that no longer differs fails too, so the list
// stays true.
var telegrafDifferences = []struct {
	interval int
	key      string // measurement and tags, as lineKey writes them
	field    string // the field that differs, or "" for a point only one side has
	only     string // for a whole point: "statsbridge" or "telegraf", the side that has it
	why      string
}{
	{0, "tg_thirds,metric_type=counter", "value", "",
		"Telegraf truncates each line's value/rate to an integer (3+3+3); statsbridge rounds the interval's total (10)"},
	{0, "tg_frac,metric_type=counter", "value", "",
		"Telegraf truncates each fractional counter line (1+1); statsbridge rounds the interval's total (3)"},
	{0, "tg_dist,metric_type=histogram", "", "statsbridge",
		"Telegraf drops d lines unless datadog_distributions is on; statsbridge writes them as histograms"},
	{0, "tg_semi;env=dev,metric_type=counter", "", "telegraf",
		"Telegraf keeps a Graphite-style ;tag in the measurement"},
	{0, "tg_semi,env=dev,metric_type=counter", "", "statsbridge",
		"statsbridge reads Graphite-style ;tags as tags"},
	{0, "tg_dash,metric_type=gauge,my-tag=x", "", "telegraf",
		"Telegraf keeps tag keys as sent"},
	{0, "tg_dash,metric_type=gauge,my_tag=x", "", "statsbridge",
		"statsbridge's tag keys are label names: every byte outside [a-zA-Z0-9_] is _"},
	{0, "tg_col:on,metric_type=gauge", "", "statsbridge",
		"Telegraf refuses a name with a ':'; statsbridge takes the value after the last ':' (Prosody's names hold ':')"},
	{1, "tg_level,metric_type=gauge", "value", "",
		"Telegraf forgets a gauge after each interval (delete_gauges), so +2 starts from 0; statsbridge keeps it (9.5)"},
}

// TestTelegrafShapeMatchesTelegraf sends one corpus to statsbridge (an
// influx sink in its default shape, to a capture server) and to Telegraf's
// own statsd input and influx serializer (oracle/telegraf), interval by
// interval, and compares every point's measurement, tags, field names,
// field types and values.
func TestTelegrafShapeMatchesTelegraf(t *testing.T) {
	oracle := startTelegrafOracle(t)
	capture := startInfluxCapture(t)
	const every = 2 * time.Second
	r := startRelay(t, fmt.Sprintf(`
[statsd]
udp = ["127.0.0.1:0"]
tcp = []
flush_interval = "2s"
percentiles = [90]
[http]
listen = "127.0.0.1:0"
[[influx]]
url = "%s/write?db=statsd"
`, capture.URL))

	// Each interval's datagrams are sent a moment after a flush boundary,
	// so that they all land in one interval; its points carry its start.
	stamps := make([]int64, len(telegrafCorpus))
	want := make([]map[string]lpPoint, len(telegrafCorpus))
	for i, datagrams := range telegrafCorpus {
		start := time.Now().Truncate(every).Add(every)
		time.Sleep(time.Until(start.Add(300 * time.Millisecond)))
		stamps[i] = start.UnixMilli()
		r.sendUDP(t, datagrams...)
		want[i] = oracle.interval(t, datagrams)
	}
	// The last interval ends at the next boundary, or at the shutdown flush.
	time.Sleep(time.Until(time.Now().Truncate(every).Add(every + 300*time.Millisecond)))
	r.stop(t)

	got := make([]map[string]lpPoint, len(telegrafCorpus))
	for i := range got {
		got[i] = map[string]lpPoint{}
	}
	var outside []string
	for _, p := range capture.points(t) {
		if !strings.HasPrefix(p.key, "tg") {
			continue // statsbridge's own metrics
		}
		if i := stampIndex(stamps, p.ts); i >= 0 {
			got[i][p.key] = p
		} else {
			outside = append(outside, fmt.Sprintf("%s at %d", p.key, p.ts))
		}
	}
	if len(outside) > 0 {
		// Telegraf writes nothing for an interval that received nothing.
		t.Errorf("%d points in none of the corpus' intervals %v (idle series written, or an interval split by a stalled machine), such as %q",
			len(outside), stamps, outside[:min(3, len(outside))])
	}

	used := make([]bool, len(telegrafDifferences))
	allowed := func(interval int, key, field, only string) bool {
		for j, d := range telegrafDifferences {
			if d.interval == interval && d.key == key && d.field == field && d.only == only {
				used[j] = true
				return true
			}
		}
		return false
	}
	compared := 0
	for i := range telegrafCorpus {
		for _, key := range lpKeys(got[i], want[i]) {
			g, inGot := got[i][key]
			w, inWant := want[i][key]
			switch {
			case !inWant:
				if !allowed(i, key, "", "statsbridge") {
					t.Errorf("interval %d: statsbridge wrote %s, Telegraf did not", i, g)
				}
				continue
			case !inGot:
				if !allowed(i, key, "", "telegraf") {
					t.Errorf("interval %d: Telegraf wrote %s, statsbridge did not", i, w)
				}
				continue
			}
			compared++
			for _, f := range lpKeys(g.fields, w.fields) {
				gv, gok := g.fields[f]
				wv, wok := w.fields[f]
				if gok && wok && lpSame(gv, wv) {
					continue
				}
				if !allowed(i, key, f, "") {
					t.Errorf("interval %d: %s field %s: statsbridge %s, Telegraf %s", i, key, f, lpDescribe(gv, gok), lpDescribe(wv, wok))
				}
			}
		}
	}
	for j, d := range telegrafDifferences {
		if !used[j] {
			t.Errorf("allowed difference no longer seen (interval %d, %s %s): %s", d.interval, d.key, d.field, d.why)
		}
	}
	if compared < 20 {
		t.Errorf("only %d points compared: the corpus did not get through", compared)
	}
	t.Logf("%d points identical in measurement, tags, field names, types and values; %d differences allowed on purpose",
		compared, len(telegrafDifferences))
}

func stampIndex(xs []int64, x int64) int {
	for i, v := range xs {
		if v == x {
			return i
		}
	}
	return -1
}

func lpKeys[V any](a, b map[string]V) []string {
	seen := map[string]bool{}
	var keys []string
	for _, m := range []map[string]V{a, b} {
		for k := range m {
			if !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
	}
	sort.Strings(keys)
	return keys
}

// lpSame: the same type and the same value (floats bit for bit).
func lpSame(a, b lineprotocol.Value) bool {
	if a.Kind() != b.Kind() {
		return false
	}
	if a.Kind() == lineprotocol.Float {
		return math.Float64bits(a.FloatV()) == math.Float64bits(b.FloatV())
	}
	return a.Equal(b)
}

func lpDescribe(v lineprotocol.Value, ok bool) string {
	if !ok {
		return "(absent)"
	}
	return fmt.Sprintf("%s %v", v.Kind(), v.Interface())
}

// lpPoint is one decoded line-protocol point.
type lpPoint struct {
	key    string // measurement, then tags sorted by key: "m,k=v,k2=v2"
	fields map[string]lineprotocol.Value
	ts     int64
}

func (p lpPoint) String() string {
	var fs []string
	for _, f := range lpKeys(p.fields, nil) {
		fs = append(fs, f+"="+lpDescribe(p.fields[f], true))
	}
	return p.key + " " + strings.Join(fs, ",")
}

// decodeLineProtocol decodes line protocol with timestamps in precision.
func decodeLineProtocol(t testing.TB, data []byte, precision lineprotocol.Precision) []lpPoint {
	t.Helper()
	dec := lineprotocol.NewDecoderWithBytes(data)
	var out []lpPoint
	for dec.Next() {
		m, err := dec.Measurement()
		if err != nil {
			t.Fatalf("decoding %q: %v", data, err)
		}
		key := string(m)
		var tags []string
		for {
			k, v, err := dec.NextTag()
			if err != nil {
				t.Fatalf("decoding %q: %v", data, err)
			}
			if k == nil {
				break
			}
			tags = append(tags, string(k)+"="+string(v))
		}
		sort.Strings(tags)
		for _, tag := range tags {
			key += "," + tag
		}
		p := lpPoint{key: key, fields: map[string]lineprotocol.Value{}}
		for {
			k, v, err := dec.NextField()
			if err != nil {
				t.Fatalf("decoding %q: %v", data, err)
			}
			if k == nil {
				break
			}
			p.fields[string(k)] = v
		}
		ts, err := dec.Time(precision, time.Time{})
		if err != nil {
			t.Fatalf("decoding %q: %v", data, err)
		}
		p.ts = ts.UnixMilli()
		out = append(out, p)
	}
	return out
}

// telegrafOracle is oracle/telegraf running: Telegraf's statsd input and
// influx serializer.
type telegrafOracle struct {
	stdin io.WriteCloser
	out   *bufio.Reader
	log   *logBuffer
}

// telegrafOracleBin finds the oracle test.sh builds.
func telegrafOracleBin(t testing.TB) string {
	t.Helper()
	path := os.Getenv("STATSBRIDGE_TELEGRAF_ORACLE")
	if path == "" {
		path, _ = filepath.Abs(filepath.Join("oracle", "telegraf", "telegraf-oracle"))
	}
	if _, err := os.Stat(path); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("the Telegraf oracle %s is missing, and CI=true: test.sh must build it", path)
		}
		t.Skipf("the Telegraf oracle %s is missing (./test.sh builds it)", path)
	}
	return path
}

func startTelegrafOracle(t testing.TB) *telegrafOracle {
	t.Helper()
	o := &telegrafOracle{log: &logBuffer{}}
	cmd := exec.Command(telegrafOracleBin(t))
	cmd.Stderr = o.log
	var err error
	if o.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	o.out = bufio.NewReader(stdout)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		o.stdin.Close()
		cmd.Wait()
		t.Logf("Telegraf's log:\n%s", o.log.String())
	})
	return o
}

// interval sends datagrams to Telegraf, gathers, and returns the points by key.
func (o *telegrafOracle) interval(t testing.TB, datagrams []string) map[string]lpPoint {
	t.Helper()
	points := map[string]lpPoint{}
	for _, p := range decodeLineProtocol(t, []byte(strings.Join(o.intervalLines(t, datagrams), "")), lineprotocol.Nanosecond) {
		points[p.key] = p
	}
	return points
}

// intervalLines sends datagrams to Telegraf, gathers, and returns the lines
// it wrote.
func (o *telegrafOracle) intervalLines(t testing.TB, datagrams []string) []string {
	t.Helper()
	var script strings.Builder
	for _, d := range datagrams {
		script.WriteString(strings.ReplaceAll(d, "\n", `\n`) + "\n")
	}
	script.WriteString("#gather\n")
	if _, err := io.WriteString(o.stdin, script.String()); err != nil {
		t.Fatalf("writing to the Telegraf oracle: %v\n%s", err, o.log.String())
	}
	var lines []string
	for {
		line, err := o.out.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the Telegraf oracle: %v\n%s", err, o.log.String())
		}
		if line == "#end\n" {
			return lines
		}
		if strings.HasPrefix(line, "#") {
			t.Logf("Telegraf: %s", line)
			continue
		}
		lines = append(lines, line)
	}
}

// influxCapture is an InfluxDB 1.x /write endpoint that keeps what it is
// sent, exactly as sent.
type influxCapture struct {
	*httptest.Server
	mu     sync.Mutex
	bodies [][]byte
}

func startInfluxCapture(t testing.TB) *influxCapture {
	t.Helper()
	c := &influxCapture{}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body = zr
		}
		data, err := io.ReadAll(body)
		if err != nil || r.URL.Path != "/write" || r.URL.Query().Get("precision") != "ms" {
			http.Error(w, fmt.Sprintf("unexpected write %s: %v", r.URL, err), http.StatusBadRequest)
			return
		}
		c.mu.Lock()
		c.bodies = append(c.bodies, data)
		c.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(c.Close)
	return c
}

func (c *influxCapture) points(t testing.TB) []lpPoint {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []lpPoint
	for _, b := range c.bodies {
		out = append(out, decodeLineProtocol(t, b, lineprotocol.Millisecond)...)
	}
	return out
}

// TestTelegrafDatabaseTakesStatsbridgesPoints: an InfluxDB 1.x database
// that Telegraf's statsd input filled (integer counters and sets) takes
// statsbridge's points for the same series with no field type conflict.
// statsbridge's earlier float-only shape, sent beside it to a database
// filled the same way, is refused: the check can tell.
func TestTelegrafDatabaseTakesStatsbridgesPoints(t *testing.T) {
	oracle := startTelegrafOracle(t)
	in := startInflux(t)
	// What Telegraf wrote, as its influx output sends it.
	var telegrafWrote bytes.Buffer
	for _, p := range oracle.intervalLines(t, telegrafCorpus[0]) {
		telegrafWrote.WriteString(p)
	}
	for _, db := range []string{"telegraf", "etsy"} {
		in.createDB(t, db)
		resp, err := http.Post(in.URL+"/write?db="+db+"&precision=ns", "text/plain", bytes.NewReader(telegrafWrote.Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("writing Telegraf's points to %s: %d %s", db, resp.StatusCode, body)
		}
	}

	r := startRelay(t, fmt.Sprintf(`
[statsd]
udp = ["127.0.0.1:0"]
tcp = []
flush_interval = "1s"
[http]
listen = "127.0.0.1:0"
[[influx]]
url = "%[1]s/write?db=telegraf"
[[influx]]
url = "%[1]s/write?db=etsy"
shape = "etsy"
`, in.URL))
	r.sendUDP(t, telegrafCorpus[0]...)

	// Every measurement Telegraf wrote gets a second point, from
	// statsbridge, but those only Telegraf writes (telegrafDifferences).
	measurements := map[string]bool{}
	for _, p := range decodeLineProtocol(t, telegrafWrote.Bytes(), lineprotocol.Nanosecond) {
		measurements[strings.SplitN(p.key, ",", 2)[0]] = true
	}
	for _, d := range telegrafDifferences {
		if d.only == "telegraf" && !strings.Contains(d.key, ",metric_type=gauge,my-tag") {
			delete(measurements, strings.SplitN(d.key, ",", 2)[0])
		}
	}
	for m := range measurements {
		eventually(t, 15*time.Second, "statsbridge's points stored beside Telegraf's in "+m, func() (bool, string) {
			rows := in.queryOptional(t, "telegraf", fmt.Sprintf(`SELECT count(*) FROM %q`, m))
			return influxCountAtLeast(rows, 2), fmt.Sprint(rows)
		})
	}
	// The etsy shape's floats: stored where Telegraf wrote nothing (a d
	// line), refused where it wrote integers.
	eventually(t, 15*time.Second, "the etsy shape's points reached its database", func() (bool, string) {
		rows := in.queryOptional(t, "etsy", `SELECT count(*) FROM "tg_dist"`)
		return influxCountAtLeast(rows, 1), fmt.Sprint(rows)
	})
	if rows := in.query(t, "etsy", `SELECT count("value") FROM "tg_hits"`); !influxCountAtLeast(rows, 1) || influxCountAtLeast(rows, 2) {
		t.Errorf("tg_hits in the etsy database: %v, want only Telegraf's point (the float refused)", rows)
	}
	if !strings.Contains(r.log.String(), `sink=influx[1] answer="HTTP 400 {\"error\":\"partial write: field type conflict`) {
		t.Errorf("no field type conflict logged for the etsy shape")
	}

	r.stop(t)
	if strings.Contains(r.log.String(), "sink=influx[0] answer=") {
		t.Errorf("the telegraf shape was refused beside Telegraf's points")
	}
	for m, want := range map[string]string{
		"tg_hits":     "[[value integer]]",
		"tg_users":    "[[value integer]]",
		"tg_temp":     "[[value float]]",
		"tg_api_time": "[[90_percentile float] [count integer] [lower float] [mean float] [median float] [stddev float] [sum float] [upper float]]",
	} {
		if got := in.query(t, "telegraf", fmt.Sprintf("SHOW FIELD KEYS FROM %q", m)); fmt.Sprint(got) != want {
			t.Errorf("%s fields %v, want %s", m, got, want)
		}
	}
}

// influxCountAtLeast reports whether every count in a SELECT count(*) row is at
// least n.
func influxCountAtLeast(rows [][]any, n float64) bool {
	if len(rows) != 1 || len(rows[0]) < 2 {
		return false
	}
	for _, v := range rows[0][1:] {
		if c, ok := v.(float64); !ok || c < n {
			return false
		}
	}
	return true
}

// TestInfluxV2WriteReachesVictoriaMetrics writes through InfluxDB 2.x's
// /api/v2/write (org, bucket, token) to victoria-metrics, which implements
// it (Debian has no InfluxDB 2.x), and reads the points back.
func TestInfluxV2WriteReachesVictoriaMetrics(t *testing.T) {
	vm := startVictoria(t)
	r := startRelay(t, fmt.Sprintf(`
[statsd]
udp = ["127.0.0.1:0"]
tcp = []
flush_interval = "1s"
[http]
listen = "127.0.0.1:0"
[[influx]]
url = "%s/api/v2/write?org=my-org&bucket=my-bucket"
token = "my-token"
external_labels = { instance = "relay1" }
`, vm.URL))
	name := uniqueName("tgv2")
	r.sendUDP(t, name+".hits:3|c|#env:prod", name+".api.time:100|ms|@0.5", name+".api.time:300|ms|@0.5")
	r.stop(t)

	want := map[string]string{
		name + `_hits_value{env="prod",instance="relay1",metric_type="counter"}`: "3",
		name + `_api_time_count{instance="relay1",metric_type="timing"}`:         "4",
		name + `_api_time_90_percentile{instance="relay1",metric_type="timing"}`: "300",
		name + `_api_time_mean{instance="relay1",metric_type="timing"}`:          "200",
		name + `_api_time_sum{instance="relay1",metric_type="timing"}`:           "800",
	}
	eventually(t, 15*time.Second, "victoria-metrics has the points", func() (bool, string) {
		got := vm.export(t, `{__name__=~"`+name+`.*"}`)
		for series, v := range want {
			if got[series] != v {
				return false, fmt.Sprintf("%s = %q, want %q; have %v", series, got[series], v, got)
			}
		}
		return true, ""
	})
}

// victoria is a victoria-metrics single node on loopback (see
// ../shared/peers/start-victoria-metrics.sh for its flags).
type victoria struct {
	*server
	URL string
}

func startVictoria(t testing.TB) *victoria {
	t.Helper()
	bin := need(t, "victoria-metrics")
	dir := t.TempDir()
	u := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	mk := func() *exec.Cmd {
		return exec.Command(bin, "-storageDataPath="+filepath.Join(dir, "data"), "-retentionPeriod=1",
			"-httpListenAddr="+strings.TrimPrefix(u, "http://"), "-search.latencyOffset=0s", "-search.disableCache",
			"-loggerLevel=WARN")
	}
	return &victoria{server: startServer(t, "victoria-metrics", mk, httpReady(u+"/health", http.StatusOK)), URL: u}
}

// export returns the newest value of every series matching selector, by
// its series text (name{labels sorted}). New series show up after a flush.
func (v *victoria) export(t testing.TB, selector string) map[string]string {
	t.Helper()
	if resp, err := http.Get(v.URL + "/internal/force_flush"); err == nil {
		resp.Body.Close()
	}
	resp, err := http.PostForm(v.URL+"/api/v1/export", map[string][]string{"match[]": {selector}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]string{}
	dec := json.NewDecoder(resp.Body)
	for {
		var line struct {
			Metric map[string]string `json:"metric"`
			Values []json.Number     `json:"values"`
		}
		if err := dec.Decode(&line); err != nil {
			break
		}
		var labels []string
		for k, val := range line.Metric {
			if k != "__name__" {
				labels = append(labels, fmt.Sprintf("%s=%q", k, val))
			}
		}
		sort.Strings(labels)
		if len(line.Values) > 0 {
			out[line.Metric["__name__"]+"{"+strings.Join(labels, ",")+"}"] = line.Values[len(line.Values)-1].String()
		}
	}
	return out
}

// prometheusDifferences are the differences from Telegraf's prometheus
// input left on purpose, by field ("" for every field of the point).
var prometheusDifferences = []struct {
	key, field, why string
}{
	{"tg_sampled_time_seconds", "count",
		"a count that a sample rate made fractional (@0.3): Telegraf's metric_version 1 reads 0, statsbridge writes it"},
	{"tg_sampled_time_seconds", "+Inf", "likewise, the buckets that hold it"},
	{"tg_sampled_time_seconds", "0.05", "likewise"},
	{"tg_sampled_time_seconds", "0.1", "likewise"},
	{"tg_sampled_time_seconds", "0.25", "likewise"},
	{"tg_sampled_time_seconds", "0.5", "likewise"},
	{"tg_sampled_time_seconds", "1", "likewise"},
	{"tg_sampled_time_seconds", "2.5", "likewise"},
	{"tg_sampled_time_seconds", "5", "likewise"},
	{"tg_sampled_time_seconds", "10", "likewise"},
}

// TestPrometheusShapeMatchesTelegraf: with cumulative counters an influx
// sink writes what Telegraf's prometheus input (metric_version 1) writes
// from a scrape of statsbridge's /metrics at the same moment.
func TestPrometheusShapeMatchesTelegraf(t *testing.T) {
	bin := telegrafOracleBin(t)
	capture := startInfluxCapture(t)
	const every = 2 * time.Second
	r := startRelay(t, fmt.Sprintf(`
[statsd]
udp = ["127.0.0.1:0"]
tcp = []
flush_interval = "2s"
[http]
listen = "127.0.0.1:0"
[[influx]]
url = "%s/write?db=statsd"
counters = "cumulative"
`, capture.URL))
	start := time.Now().Truncate(every).Add(every)
	time.Sleep(time.Until(start.Add(300 * time.Millisecond)))
	r.sendUDP(t, telegrafCorpus[0]...)

	// A scrape between two flushes shows what the first of them wrote.
	var flushed map[string]lpPoint
	var exposition []byte
	for try := 0; ; try++ {
		var stamp int64
		eventually(t, 10*time.Second, "a flush after the corpus", func() (bool, string) {
			flushed, stamp = capture.latestFlush(t, "tg")
			return stamp > start.UnixMilli(), fmt.Sprint(stamp)
		})
		exposition = scrapeAsTelegraf(t, r)
		// Cumulative points carry their flush's time: the next flush
		// collects at stamp+every.
		beforeNext := time.Now().Before(time.UnixMilli(stamp).Add(every - 200*time.Millisecond))
		if _, again := capture.latestFlush(t, "tg"); again == stamp && beforeNext {
			break
		}
		if try == 3 {
			t.Fatal("no scrape between two flushes in 4 tries")
		}
	}
	cmd := exec.Command(bin, "prometheus")
	cmd.Stdin = bytes.NewReader(exposition)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("the Telegraf oracle: %v\n%s", err, stderr.String())
	}
	want := map[string]lpPoint{}
	for _, p := range decodeLineProtocol(t, out, lineprotocol.Nanosecond) {
		if strings.HasPrefix(p.key, "tg") {
			want[p.key] = p
		}
	}

	used := make([]bool, len(prometheusDifferences))
	compared := 0
	for _, key := range lpKeys(flushed, want) {
		g, inGot := flushed[key]
		w, inWant := want[key]
		if !inGot || !inWant {
			t.Errorf("%s: statsbridge %v, Telegraf %v", key, inGot, inWant)
			continue
		}
		compared++
		for _, f := range lpKeys(g.fields, w.fields) {
			gv, gok := g.fields[f]
			wv, wok := w.fields[f]
			if gok && wok && lpSame(gv, wv) {
				continue
			}
			allowed := false
			for j, d := range prometheusDifferences {
				if d.key == key && d.field == f {
					used[j], allowed = true, true
				}
			}
			if !allowed {
				t.Errorf("%s field %s: statsbridge %s, Telegraf %s", key, f, lpDescribe(gv, gok), lpDescribe(wv, wok))
			}
		}
	}
	for j, d := range prometheusDifferences {
		if !used[j] {
			t.Errorf("allowed difference no longer seen (%s %s): %s", d.key, d.field, d.why)
		}
	}
	if compared < 20 {
		t.Errorf("only %d points compared", compared)
	}
	t.Logf("%d points identical; %d fields differ on purpose", compared, len(prometheusDifferences))
}

// scrapeAsTelegraf fetches /metrics with the Accept header of Telegraf's
// prometheus input.
func scrapeAsTelegraf(t testing.TB, r *relay) []byte {
	t.Helper()
	body, contentType := getMetrics(t, r.HTTP, "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,text/plain;version=0.0.4;q=0.3")
	if !strings.HasPrefix(contentType, "text/plain; version=0.0.4") {
		t.Fatalf("GET /metrics: %s %.200s", contentType, body)
	}
	return body
}

// latestFlush returns the points of the newest timestamp whose key starts
// with prefix, and that timestamp.
func (c *influxCapture) latestFlush(t testing.TB, prefix string) (map[string]lpPoint, int64) {
	t.Helper()
	var latest int64
	points := map[string]lpPoint{}
	for _, p := range c.points(t) {
		if !strings.HasPrefix(p.key, prefix) {
			continue
		}
		if p.ts > latest {
			latest, points = p.ts, map[string]lpPoint{}
		}
		if p.ts == latest {
			points[p.key] = p
		}
	}
	return points, latest
}
