package e2e

// Real backends, started on loopback the way ../shared/peers/start-*.sh do
// (see its README for every quirk these settings avoid).

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// server is a backend process that is stopped when its test ends. It can
// be stopped and started again on the same data and port.
type server struct {
	name   string
	mk     func() *exec.Cmd
	ready  func() bool
	cmd    *exec.Cmd
	log    *logBuffer
	exited chan struct{}
}

func startServer(t testing.TB, name string, mk func() *exec.Cmd, ready func() bool) *server {
	t.Helper()
	s := &server{name: name, mk: mk, ready: ready, log: &logBuffer{}}
	s.start(t)
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("%s log:\n%s", name, s.log.String())
		}
	})
	return s
}

func (s *server) start(t testing.TB) {
	t.Helper()
	s.cmd = s.mk()
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", s.name, err)
	}
	exited := make(chan struct{})
	s.exited = exited
	go func() { s.cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(20 * time.Second)
	for !s.ready() {
		select {
		case <-exited:
			t.Fatalf("%s exited at start:\n%s", s.name, s.log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after 20s:\n%s", s.name, s.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop ends the server with SIGTERM (each of them flushes and exits on it)
// and waits for it to exit.
func (s *server) stop() {
	select {
	case <-s.exited:
		return
	default:
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(15 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
}

func tcpReady(addr string) func() bool {
	return func() bool {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	}
}

func httpReady(u string, status int) func() bool {
	return func() bool {
		resp, err := http.Get(u)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == status
	}
}

// carbon is a carbon-cache writing whisper files with one archive of 1s
// slots, so that a 1s flush interval keeps every point.
type carbon struct {
	*server
	Addr    string
	whisper string
}

func startCarbon(t testing.TB) *carbon {
	t.Helper()
	bin := need(t, "carbon-cache")
	dir := t.TempDir()
	port := freePort(t)
	for _, d := range []string{"conf", "storage/whisper", "storage/lists", "log"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	conf := fmt.Sprintf(`[cache]
STORAGE_DIR = %[1]s/storage/
LOCAL_DATA_DIR = %[1]s/storage/whisper/
WHITELISTS_DIR = %[1]s/storage/lists/
CONF_DIR = %[1]s/conf/
LOG_DIR = %[1]s/log/
PID_DIR = %[1]s/
ENABLE_LOGROTATION = False
USER =
DATABASE = whisper
MAX_CACHE_SIZE = inf
MAX_UPDATES_PER_SECOND = inf
MAX_CREATES_PER_MINUTE = inf
CACHE_WRITE_STRATEGY = naive
WHISPER_AUTOFLUSH = True
LINE_RECEIVER_INTERFACE = 127.0.0.1
LINE_RECEIVER_PORT = %[2]d
ENABLE_UDP_LISTENER = False
PICKLE_RECEIVER_INTERFACE = 127.0.0.1
PICKLE_RECEIVER_PORT = 0
CACHE_QUERY_INTERFACE = 127.0.0.1
CACHE_QUERY_PORT = 0
CARBON_METRIC_INTERVAL = 0
ENABLE_TAGS = False
TAG_HASH_FILENAMES = True
LOG_UPDATES = False
LOG_CREATES = True
LOG_LISTENER_CONN_SUCCESS = False
`, dir, port)
	write(t, filepath.Join(dir, "conf/carbon.conf"), conf)
	write(t, filepath.Join(dir, "conf/storage-schemas.conf"), "[default]\npattern = .*\nretentions = 1s:1d\n")
	write(t, filepath.Join(dir, "conf/storage-aggregation.conf"), "[default]\npattern = .*\nxFilesFactor = 0\naggregationMethod = average\n")
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	mk := func() *exec.Cmd {
		return exec.Command(bin, "--config="+filepath.Join(dir, "conf/carbon.conf"), "--nodaemon",
			"--pidfile="+filepath.Join(dir, "carbon-cache.pid"), "start")
	}
	s := startServer(t, "carbon-cache", mk, tcpReady(addr))
	return &carbon{server: s, Addr: addr, whisper: filepath.Join(dir, "storage/whisper")}
}

// whisperPoint is one stored slot.
type whisperPoint struct {
	T int64
	V float64
}

// points reads a plain (untagged) metric's whisper file: every slot that
// holds a point of the last day, in time order. A missing file is no points.
func (c *carbon) points(t testing.TB, path string) []whisperPoint {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(c.whisper, strings.ReplaceAll(path, ".", "/")+".wsp"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return readWhisper(t, data)
}

// readWhisper decodes whisper's format: a 16-byte header (aggregation,
// max retention, xFilesFactor, archive count), 12 bytes per archive (offset,
// seconds per point, points), then 12-byte points (uint32 time, float64
// value), all big-endian. Only the first (finest) archive is read.
func readWhisper(t testing.TB, data []byte) []whisperPoint {
	t.Helper()
	be := binary.BigEndian
	if len(data) < 28 {
		t.Fatalf("whisper file too short: %d bytes", len(data))
	}
	offset := be.Uint32(data[16:])
	count := be.Uint32(data[24:])
	cutoff := time.Now().Add(-24 * time.Hour).Unix()
	var out []whisperPoint
	for i := uint32(0); i < count; i++ {
		p := data[offset+12*i:]
		ts := int64(be.Uint32(p))
		if ts > cutoff {
			out = append(out, whisperPoint{T: ts, V: math.Float64frombits(be.Uint64(p[4:]))})
		}
	}
	sortPoints(out)
	return out
}

func sortPoints(ps []whisperPoint) {
	for i := 1; i < len(ps); i++ {
		for j := i; j > 0 && ps[j].T < ps[j-1].T; j-- {
			ps[j], ps[j-1] = ps[j-1], ps[j]
		}
	}
}

// influxd is an InfluxDB 1.x server.
type influxd struct {
	*server
	URL string
}

func startInflux(t testing.TB) *influxd {
	t.Helper()
	bin := need(t, "influxd")
	dir := t.TempDir()
	port, rpc := freePort(t), freePort(t)
	conf := fmt.Sprintf(`reporting-disabled = true
bind-address = "127.0.0.1:%[2]d"
[meta]
  dir = "%[1]s/meta"
  logging-enabled = false
[data]
  dir = "%[1]s/data"
  wal-dir = "%[1]s/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:%[3]d"
  auth-enabled = false
  log-enabled = false
  pprof-enabled = false
[logging]
  level = "warn"
  suppress-logo = true
`, dir, rpc, port)
	write(t, filepath.Join(dir, "influxdb.conf"), conf)
	mk := func() *exec.Cmd {
		cmd := exec.Command(bin, "run", "-config", filepath.Join(dir, "influxdb.conf"), "-pidfile", filepath.Join(dir, "influxd.pid"))
		cmd.Env = filterEnv("INFLUXDB_")
		return cmd
	}
	u := fmt.Sprintf("http://127.0.0.1:%d", port)
	s := startServer(t, "influxd", mk, httpReady(u+"/ping", http.StatusNoContent))
	return &influxd{server: s, URL: u}
}

func (i *influxd) createDB(t testing.TB, name string) {
	t.Helper()
	resp, err := http.PostForm(i.URL+"/query", url.Values{"q": {"CREATE DATABASE " + name}})
	if err != nil {
		t.Fatal(err)
	}
	// influxd answers 200 before it runs the statement, and stops running
	// it when the client goes: read the whole answer, which says whether
	// the statement failed.
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || bytes.Contains(body, []byte(`"error"`)) {
		t.Fatalf("CREATE DATABASE %s: %d %s %v", name, resp.StatusCode, body, err)
	}
}

// query runs InfluxQL and returns the rows of the first series (times in
// milliseconds), or none. An error answer fails the test.
func (i *influxd) query(t testing.TB, db, q string) [][]any {
	t.Helper()
	rows, err := i.tryQuery(db, q)
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

// queryOptional is query for a database that may not exist yet: an error
// answer is no rows.
func (i *influxd) queryOptional(t testing.TB, db, q string) [][]any {
	rows, _ := i.tryQuery(db, q)
	return rows
}

func (i *influxd) tryQuery(db, q string) ([][]any, error) {
	u := i.URL + "/query?" + url.Values{"db": {db}, "q": {q}, "epoch": {"ms"}}.Encode()
	resp, err := http.Get(u)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out struct {
		Results []struct {
			Series []struct {
				Values [][]any `json:"values"`
			} `json:"series"`
			Error string `json:"error"`
		} `json:"results"`
	}
	body, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, fmt.Errorf("influx answer %q: %v", body, err)
	}
	if len(out.Results) == 0 || out.Results[0].Error != "" {
		return nil, fmt.Errorf("influx query %q: %s", q, body)
	}
	if len(out.Results[0].Series) == 0 {
		return nil, nil
	}
	return out.Results[0].Series[0].Values, nil
}

// prometheus is a Prometheus 2.x with the remote-write receiver on and no
// scrape jobs.
type prometheus struct {
	*server
	URL string
}

// startPrometheus starts one, with flags added to its command line
// ("--enable-feature=native-histograms").
func startPrometheus(t testing.TB, flags ...string) *prometheus {
	t.Helper()
	bin := need(t, "prometheus")
	dir := t.TempDir()
	port := freePort(t)
	write(t, filepath.Join(dir, "prometheus.yml"), "global:\n  scrape_interval: 15s\nscrape_configs: []\n")
	mk := func() *exec.Cmd {
		cmd := exec.Command(bin,
			"--config.file="+filepath.Join(dir, "prometheus.yml"),
			"--storage.tsdb.path="+filepath.Join(dir, "data"),
			"--storage.tsdb.retention.time=1d",
			fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port),
			"--web.enable-remote-write-receiver",
			"--log.level=warn")
		cmd.Args = append(cmd.Args, flags...)
		return cmd
	}
	u := fmt.Sprintf("http://127.0.0.1:%d", port)
	s := startServer(t, "prometheus", mk, httpReady(u+"/-/ready", http.StatusOK))
	return &prometheus{server: s, URL: u}
}

// promSample is one raw sample of a series.
type promSample struct {
	Labels map[string]string
	T      int64 // milliseconds
	V      string
}

// samples returns the raw samples of selector over the last window (a
// range-vector query: no lookback interpolation).
func (p *prometheus) samples(t testing.TB, selector string, window time.Duration) []promSample {
	t.Helper()
	return p.samplesUntil(t, selector, window, time.Now())
}

// samplesUntil returns the raw samples of selector over the window that
// ends at until.
func (p *prometheus) samplesUntil(t testing.TB, selector string, window time.Duration, until time.Time) []promSample {
	t.Helper()
	q := fmt.Sprintf("%s[%ds]", selector, int(window.Seconds()))
	u := p.URL + "/api/v1/query?" + url.Values{"query": {q}, "time": {strconv.FormatFloat(float64(until.UnixMilli())/1000, 'f', 3, 64)}}.Encode()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Values [][2]any          `json:"values"`
			} `json:"result"`
		} `json:"data"`
	}
	body, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(body, &out); err != nil || out.Status != "success" {
		t.Fatalf("prometheus query %q: %s", q, body)
	}
	var ss []promSample
	for _, r := range out.Data.Result {
		for _, v := range r.Values {
			ss = append(ss, promSample{Labels: r.Metric, T: int64(math.Round(v[0].(float64) * 1000)), V: v[1].(string)})
		}
	}
	return ss
}

func write(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// filterEnv is the environment without variables starting with prefix.
func filterEnv(prefix string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, prefix) {
			env = append(env, kv)
		}
	}
	return env
}
