package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v2"

	"github.com/statsbridge/statsbridge/sinks/tlstest"
)

// grafanaDashboard is what the tests read of a Grafana dashboard: its
// template variables and its panels' queries.
type grafanaDashboard struct {
	Title      string `json:"title"`
	Templating struct {
		List []struct {
			Name       string `json:"name"`
			Type       string `json:"type"`
			Definition string `json:"definition"`
			IncludeAll bool   `json:"includeAll"`
			AllValue   string `json:"allValue"`
		} `json:"list"`
	} `json:"templating"`
	Panels []grafanaPanel `json:"panels"`
}

type grafanaPanel struct {
	Title   string         `json:"title"`
	Type    string         `json:"type"`
	Panels  []grafanaPanel `json:"panels"` // a collapsed row's
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
}

func readDashboard(t *testing.T, name string) grafanaDashboard {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("../examples/grafana", name))
	if err != nil {
		t.Fatal(err)
	}
	var d grafanaDashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return d
}

// panelQuery is one query of one panel.
type panelQuery struct{ panel, ref, expr string }

func (d grafanaDashboard) queries() []panelQuery {
	var out []panelQuery
	var walk func(ps []grafanaPanel)
	walk = func(ps []grafanaPanel) {
		for _, p := range ps {
			walk(p.Panels)
			for _, tg := range p.Targets {
				out = append(out, panelQuery{p.Title, tg.RefID, tg.Expr})
			}
		}
	}
	walk(d.Panels)
	return out
}

// grafanaIntervals stand for Grafana's built-in variables at a query.
var grafanaIntervals = strings.NewReplacer("$__rate_interval", "1m", "$__interval", "15s", "$__range", "1h")

// promQuery runs an instant query and returns its result, or the error
// Prometheus answered.
func promQuery(p *prometheus, expr string) ([]json.RawMessage, error) {
	resp, err := http.Get(p.URL + "/api/v1/query?" + url.Values{"query": {expr}}.Encode())
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var out struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, fmt.Errorf("%s", body)
	}
	if out.Status != "success" {
		return nil, fmt.Errorf("%s", out.Error)
	}
	return out.Data.Result, nil
}

// labelValues answers a Grafana label_values(selector, label) variable.
func labelValues(t *testing.T, p *prometheus, definition string) []string {
	t.Helper()
	m := regexp.MustCompile(`^label_values\((.*),\s*(\w+)\)$`).FindStringSubmatch(definition)
	if m == nil {
		t.Fatalf("variable %q is not label_values(selector, label)", definition)
	}
	resp, err := http.Get(p.URL + "/api/v1/series?" + url.Values{"match[]": {m[1]}}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Data []map[string]string `json:"data"`
	}
	json.NewDecoder(resp.Body).Decode(&out)
	seen := map[string]bool{}
	var values []string
	for _, s := range out.Data {
		if v := s[m[2]]; v != "" && !seen[v] {
			seen[v] = true
			values = append(values, v)
		}
	}
	return values
}

// checkDashboard runs every variable and every panel query of a dashboard
// against p, as Grafana would with every variable at All, and fails for
// each that returns nothing.
func checkDashboard(t *testing.T, p *prometheus, d grafanaDashboard) {
	t.Helper()
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		def := v.Definition
		for name, value := range vars {
			def = strings.ReplaceAll(def, "$"+name, value)
		}
		values := labelValues(t, p, def)
		if len(values) == 0 {
			t.Errorf("%s: variable $%s (%s) has no values", d.Title, v.Name, def)
		}
		vars[v.Name] = v.AllValue
		if !v.IncludeAll && len(values) > 0 {
			vars[v.Name] = regexp.QuoteMeta(values[0])
		}
	}
	queries := d.queries()
	if len(queries) == 0 {
		t.Fatalf("%s has no queries", d.Title)
	}
	for _, q := range queries {
		expr := grafanaIntervals.Replace(q.expr)
		for name, value := range vars {
			expr = strings.ReplaceAll(expr, "$"+name, value)
		}
		if strings.Contains(expr, "$") {
			t.Errorf("%s / %s (%s): a variable the test does not know: %s", d.Title, q.panel, q.ref, expr)
			continue
		}
		result, err := promQuery(p, expr)
		switch {
		case err != nil:
			t.Errorf("%s / %s (%s): %v\n  %s", d.Title, q.panel, q.ref, err, expr)
		case len(result) == 0:
			t.Errorf("%s / %s (%s) returns no data\n  %s", d.Title, q.panel, q.ref, expr)
		}
	}
}

// syntheticFamilies are the dashboards' families whose modules Debian's
// prosody-modules (0.0~hg20230223) does not ship. Their panels are fed
// what the module would send, in the StatsD spelling of
// model/prosody/catalog.toml, checked against the modules' sources there
// (model/prosody/testdata/upstream/prosody-modules.json).
var syntheticFamilies = []struct {
	module string
	lines  []string
}{
	{"mod_measure_modules", []string{
		"prosody.prosody_module_status.localhost.c2s:0|g",
		"prosody.prosody_module_status.localhost.http_upload:2|g", // warn
		"prosody.prosody_module_status.:global.http:0|g",
	}},
	{"mod_measure_stanza_counts", []string{
		"prosody.prosody_mod_measure_stanza_counts.received.c2s.message:3|c",
		"prosody.prosody_mod_measure_stanza_counts.received.c2s.iq:5|c",
		"prosody.prosody_mod_measure_stanza_counts.sent.c2s.message:4|c",
	}},
}

// TestDashboardsOnRealProsody runs a real Prosody sending StatsD through
// statsbridge to a real Prometheus by remote-write, with the labels the
// README's quick start gives (job and instance), drives traffic through it
// (activity.py, and dashboard_traffic.py for what that does not make: an
// s2s peer authenticating with its certificate, smacks resumptions that
// succeed and fail, mod_http_upload), and runs every variable and panel
// query of examples/grafana against that Prometheus: each must return
// data. mod_mam's daily cleanup is made due at start; the families of
// modules Debian lacks are sent as those modules would (syntheticFamilies).
func TestDashboardsOnRealProsody(t *testing.T) {
	prosodyBin := need(t, "prosody")
	prosodyctl := need(t, "prosodyctl")
	python := need(t, "python3")
	prom := startPrometheus(t)

	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "data", "localhost"), 0o750)
	cert, key := writeCertificate(t, dir)
	peers := tlstest.NewCA(t, "xmpp-peers")
	peerCert, peerKey := tlstest.WriteKeyPair(t, dir, "remote.example", peers.Server(t, "remote.example"))
	c2s, s2s, httpPort := freePort(t), freePort(t), freePort(t)
	const hibernation = 2

	r := startRelay(t, fmt.Sprintf(`
[statsd]
udp = ["127.0.0.1:0"]
tcp = []
flush_interval = "1s"
[prosody]
hosts = ["localhost", "conference.localhost", "upload.localhost", "upload2.localhost"]
metrics_url = "http://127.0.0.1:%d/metrics"
[http]
listen = "127.0.0.1:0"
[[remote_write]]
url = "%s/api/v1/write"
external_labels = { job = "prosody", instance = "xmpp1.example.org:5280" }
`, httpPort, prom.URL))

	cfg := prosodyConfig(dir, dir, cert, key, c2s, s2s, httpPort, r.UDP)
	for old, new := range map[string]string{
		// mod_measure_active_users counts the logins mod_lastlog2 keeps.
		`"http_openmetrics";`: `"http_openmetrics"; "lastlog2"; "measure_active_users";`,
		// A hibernation that expires within the test.
		"smacks_hibernation_time = 30": fmt.Sprintf("smacks_hibernation_time = %d", hibernation),
		// Server certificates signed by the peers' CA are valid.
		"ssl = {": fmt.Sprintf("ssl = { cafile = %q;", peers.WriteCA(t, dir)),
	} {
		if !strings.Contains(cfg, old) {
			t.Fatalf("the Prosody configuration has no %q to change", old)
		}
		cfg = strings.Replace(cfg, old, new, 1)
	}
	// mod_http_upload refuses plain http: it is told it is behind HTTPS (a
	// reverse proxy), and the test uploads on the plain port.
	cfg += "Component \"upload2.localhost\" \"http_upload\"\n\thttp_external_url = \"https://upload2.localhost/\"\n"
	write(t, filepath.Join(dir, "prosody.cfg.lua"), cfg)
	// mod_cron runs a daily task whose last run is a day ago at its first
	// round: mod_mam's cleanup of expired messages.
	write(t, filepath.Join(dir, "data", "localhost", "cron.dat"), `return { ["mam/remove_expired_messages"] = 1; };`)
	for _, user := range []string{"alice", "bob"} {
		out, err := exec.Command(prosodyctl, "--config", filepath.Join(dir, "prosody.cfg.lua"), "register", user, "localhost", user+"pw").CombinedOutput()
		if err != nil {
			t.Fatalf("prosodyctl register %s: %v\n%s", user, err, out)
		}
	}
	startServer(t, "prosody", func() *exec.Cmd {
		return exec.Command(prosodyBin, "-F", "--config", filepath.Join(dir, "prosody.cfg.lua"))
	}, tcpReady(fmt.Sprintf("127.0.0.1:%d", c2s)))

	ports := []string{strconv.Itoa(c2s), strconv.Itoa(s2s), strconv.Itoa(httpPort)}
	if out, err := exec.Command(python, append([]string{"../testdata/prosody/tools/activity.py"}, append(ports, "3")...)...).CombinedOutput(); err != nil {
		t.Fatalf("activity.py: %v\n%s", err, out)
	}
	traffic := exec.Command(python, append(append([]string{"../testdata/prosody/tools/dashboard_traffic.py"}, ports...),
		peerCert, peerKey, "remote.example", strconv.Itoa(hibernation))...)
	if out, err := traffic.CombinedOutput(); err != nil {
		t.Fatalf("dashboard_traffic.py: %v\n%s", err, out)
	}

	for _, f := range syntheticFamilies {
		if _, err := os.Stat("/usr/lib/prosody/modules/" + f.module); err == nil {
			t.Errorf("%s is installed now: enable it in this test instead of sending its lines", f.module)
		}
		r.sendUDP(t, f.lines...)
	}
	// Families that arrive late: active users 15 s after start, a
	// resumption's age with the next statistics collection.
	for _, series := range []string{
		`prosody_mod_measure_active_users__active_users_30d{host="localhost"}`,
		`prosody_mod_smacks__resumption_age_seconds_count{host="localhost"}`,
		`prosody_mod_mam__cleanup_seconds_count{host="localhost"}`,
		`prosody_mod_s2s__authenticated_total{mechanism="EXTERNAL"}`,
		`prosody_module_status`,
	} {
		eventually(t, 30*time.Second, series+" in Prometheus", func() (bool, string) {
			ss := prom.samples(t, series, 5*time.Minute)
			return len(ss) > 0, fmt.Sprint(ss)
		})
	}
	// Let rate() over a minute see two samples of the newest series.
	time.Sleep(3 * time.Second)

	for _, name := range []string{"prosody.json", "statsbridge.json"} {
		t.Run(name, func(t *testing.T) { checkDashboard(t, prom, readDashboard(t, name)) })
	}
	r.stop(t)
}

// TestAlertRulesFireAndStayQuiet: promtool takes examples/prometheus's
// rules, its unit tests pass, and those tests show every alert both firing
// on series that call for it and quiet (no alert at an evaluation).
func TestAlertRulesFireAndStayQuiet(t *testing.T) {
	promtool := need(t, "promtool")
	for _, args := range [][]string{{"check", "rules", "alerts.yml"}, {"test", "rules", "alerts_test.yml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = "../examples/prometheus"
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	var tests struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string `yaml:"alertname"`
				ExpAlerts []any  `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	for path, into := range map[string]any{"alerts.yml": &rules, "alerts_test.yml": &tests} {
		b, err := os.ReadFile(filepath.Join("../examples/prometheus", path))
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(b, into); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				quiet[a.Alertname] = true
			}
		}
	}
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			n++
			if !fires[r.Alert] || !quiet[r.Alert] {
				t.Errorf("%s: tested firing %v, tested quiet %v", r.Alert, fires[r.Alert], quiet[r.Alert])
			}
		}
	}
	for _, want := range []string{"ProsodySilent", "ProsodyClientSessionsDropped", "ProsodyModuleWarning", "ProsodyModuleError",
		"ProsodySmacksResumptionsFailing", "ProsodyUploadsFailing", "StatsbridgeKernelDrops", "StatsbridgeSeriesRefused",
		"StatsbridgeSinkDown", "StatsbridgeSinkMisconfigured", "StatsbridgeSinkDroppingPoints"} {
		if !fires[want] {
			t.Errorf("no alert %s, or not tested", want)
		}
	}
	if n == 0 {
		t.Fatal("no alerts in alerts.yml")
	}
}
