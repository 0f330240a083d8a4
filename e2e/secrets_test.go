package e2e

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestForwardedForAcrossHeaderLines: behind a trusted proxy that appends
// its own X-Forwarded-For line (as HAProxy does), a client cannot claim an
// allowed address by sending a line of its own first.
func TestForwardedForAcrossHeaderLines(t *testing.T) {
	r := startRelay(t, `
[statsd]
udp = ["127.0.0.1:0"]
tcp = []
[http]
listen = "127.0.0.1:0"
allow = ["192.0.2.0/24"]
trusted_proxies = ["127.0.0.1"]
`)
	tests := []struct {
		name  string
		lines []string // X-Forwarded-For header lines, in order
		want  int
	}{
		{"an allowed client via the proxy", []string{"192.0.2.7"}, http.StatusOK},
		{"a client claiming an allowed address on a line of its own", []string{"192.0.2.7", "203.0.113.9"}, http.StatusForbidden},
		{"a client claiming an allowed address left of its own", []string{"192.0.2.7, 203.0.113.9"}, http.StatusForbidden},
		{"an allowed client with a spoofed line of its own", []string{"203.0.113.9", "192.0.2.7"}, http.StatusOK},
		{"the proxy could not name the client", []string{"192.0.2.7", "unknown"}, http.StatusForbidden},
	}
	answered := 0
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, "http://"+r.HTTP+"/metrics", nil)
			for _, line := range tt.lines {
				req.Header.Add("X-Forwarded-For", line)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("X-Forwarded-For lines %q: status %d, want %d", tt.lines, resp.StatusCode, tt.want)
			} else {
				answered++
			}
		})
	}
	report(t, figures{scenario: "X-Forwarded-For over several header lines, via a trusted proxy", sent: float64(len(tests)),
		delivered: float64(answered), unit: "requests", peakRSS: r.peakRSS(t),
		notes: "lost: requests answered against the rule (a spoofed address let in, or an allowed one refused)"})
	r.stop(t)
}

// planted are the secrets TestSecretsNeverReachTheLogs puts in every slot
// that can carry one. Each is unique, so that finding it anywhere in the
// output is a leak.
var planted = map[string]string{
	"influx url password":        "InfluxUrlPass7q",
	"influx url p=":              "InfluxQueryP7q",
	"influx token":               "InfluxToken7q",
	"influx password":            "InfluxPassword7q",
	"influx token_file":          "InfluxTokenFile7q",
	"influx password_file":       "InfluxPasswordFile7q",
	"remote_write url password":  "RwUrlPass7q",
	"remote_write access_token=": "RwAccessToken7q",
	"remote_write api_key=":      "RwApiKey7q",
	"remote_write header":        "RwHeader7q",
	"remote_write header (env)":  "RwEnvHeader7q",
	"remote_write bearer_token":  "RwBearer7q",
	"remote_write bearer file":   "RwBearerFile7q",
	"prosody metrics_url":        "ProsodyUrlPass7q",
	"prosody metrics_url token=": "ProsodyToken7q",
}

// TestSecretsNeverReachTheLogs plants a secret in every credential slot
// and looks for each in everything statsbridge writes: the start line,
// failed deliveries (to a closed port, and to a backend that echoes the
// request's URL and headers in its answer), a SIGHUP with a bad file, and
// check-config of that file.
func TestSecretsNeverReachTheLogs(t *testing.T) {
	dir := t.TempDir()
	secretFile := func(name, value string) string {
		path := filepath.Join(dir, name)
		write(t, path, value+"\n")
		return path
	}
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b strings.Builder
		fmt.Fprintf(&b, "refused %s\n", r.URL)
		r.Header.Write(&b)
		http.Error(w, b.String(), http.StatusUnauthorized)
	}))
	defer echo.Close()
	closed := freePort(t)
	t.Setenv("STATSBRIDGE_E2E_HEADER", planted["remote_write header (env)"])

	config := func(influxScheme string) string {
		return fmt.Sprintf(`
shutdown_timeout = "1s"
[statsd]
udp = ["127.0.0.1:0"]
tcp = []
flush_interval = "200ms"
[http]
listen = "127.0.0.1:0"
[prosody]
metrics_url = "http://prosody:%s@127.0.0.1:%d/metrics?token=%s"

[[influx]]
url = "%s://admin:%s@127.0.0.1:%d/write?db=statsd&p=%s"
token = %q
username = "u"
password = %q
max_retry_age = "0s"

[[influx]]
url = "%s/write?db=statsd"
token_file = %q

[[influx]]
url = "%s/write?db=statsd"
username = "u"
password_file = %q

[[remote_write]]
url = "http://rw:%s@127.0.0.1:%d/api/v1/write?access_token=%s"
headers = { X-Api-Key = %q }
bearer_token = %q

[[remote_write]]
url = "%s/api/v1/write?api_key=%s"
headers = { X-Scope-OrgID = "${STATSBRIDGE_E2E_HEADER}" }
bearer_token_file = %q
`,
			planted["prosody metrics_url"], closed, planted["prosody metrics_url token="],
			influxScheme, planted["influx url password"], closed, planted["influx url p="],
			planted["influx token"], planted["influx password"],
			echo.URL, secretFile("influx-token", planted["influx token_file"]),
			echo.URL, secretFile("influx-password", planted["influx password_file"]),
			planted["remote_write url password"], closed, planted["remote_write access_token="],
			planted["remote_write header"], planted["remote_write bearer_token"],
			echo.URL, planted["remote_write api_key="], secretFile("bearer", planted["remote_write bearer file"]))
	}
	leaked := map[string]bool{}
	leaks := func(what, output string) {
		t.Helper()
		for slot, secret := range planted {
			if strings.Contains(output, secret) {
				leaked[slot] = true
				t.Errorf("%s shows the %s (%s):\n%s", what, slot, secret, output)
			}
		}
		for _, slot := range []string{"influx password", "influx password_file"} {
			basic := base64.StdEncoding.EncodeToString([]byte("u:" + planted[slot]))
			if strings.Contains(output, basic) {
				t.Errorf("%s shows the %s in basic authentication (%s):\n%s", what, slot, basic, output)
			}
		}
	}

	r := startRelay(t, config("http"))
	r.sendUDP(t, "secrets.test:1|c")
	for _, want := range []string{
		`sink=influx[0] err=`, `sink=remote_write[0] err=`, // refused connections
		// the echoing backend's answers
		`sink=influx[1] err="HTTP 401`, `sink=influx[2] err="HTTP 401`, `sink=remote_write[1] err="HTTP 401`,
	} {
		eventually(t, 10*time.Second, "the log has "+want, func() (bool, string) {
			return strings.Contains(r.log.String(), want), r.log.String()
		})
	}

	// A reload whose file is wrong next to the secrets: the influx URL's
	// scheme.
	write(t, filepath.Join(r.configDir, "statsbridge.toml"), config("htp"))
	r.cmd.Process.Signal(syscall.SIGHUP)
	eventually(t, 5*time.Second, "the bad file is refused", func() (bool, string) {
		return strings.Contains(r.log.String(), "nothing reloaded"), r.log.String()
	})
	rss := r.peakRSS(t)
	r.stop(t)
	log := r.log.String()
	for _, want := range []string{"p=xxxxx, influx http://", "access_token=xxxxx", "influx[0].url"} {
		if !strings.Contains(log, want) {
			t.Errorf("the log lacks %q: what is checked did not happen", want)
		}
	}
	leaks("the log", log)

	out, err := exec.Command(statsbridgeBin, "check-config", filepath.Join(r.configDir, "statsbridge.toml")).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "influx[0].url") {
		t.Fatalf("check-config of the bad file: %v\n%s", err, out)
	}
	leaks("check-config", string(out))
	report(t, figures{scenario: "secrets planted in every credential slot", sent: float64(len(planted)),
		delivered: float64(len(planted) - len(leaked)), unit: "secrets", peakRSS: rss,
		notes: "lost: secrets seen in the start line, failed deliveries, a bad reload or check-config"})
}
