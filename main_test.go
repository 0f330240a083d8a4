package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/statsbridge/statsbridge/config"
)

// runCLI runs the command line with a runner that only records the
// configuration it was given.
func runCLI(t *testing.T, args ...string) (cfg config.Config, ran bool, stdout string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	app := newApp(&out, &errOut, func(_ context.Context, c config.Config, _ *slog.Logger, _ hooks) error {
		cfg, ran = c, true
		return nil
	})
	err = app.Run(append([]string{"statsbridge"}, args...))
	return cfg, ran, out.String(), err
}

func TestCommandLine(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "sb.toml")
	os.WriteFile(file, []byte("[statsd]\nudp = [\"127.0.0.1:9125\"]\nflush_interval = \"5s\"\n[[graphite]]\naddress = \"carbon:2003\"\n"), 0o644)

	tests := []struct {
		name  string
		args  []string
		env   map[string]string
		check func(t *testing.T, c config.Config)
	}{
		{"no arguments runs the embedded defaults", nil, nil, func(t *testing.T, c config.Config) {
			if !reflect.DeepEqual(c, config.Default()) {
				t.Errorf("got %+v", c)
			}
		}},
		{"run is the same", []string{"run"}, nil, func(t *testing.T, c config.Config) {
			if !reflect.DeepEqual(c, config.Default()) {
				t.Errorf("got %+v", c)
			}
		}},
		{"flags without the word run", []string{"--statsd.tcp=", "--flush-interval", "2s", "--graphite", "a:1", "--graphite", "b:2"}, nil,
			func(t *testing.T, c config.Config) {
				if len(c.Statsd.TCP) != 0 {
					t.Errorf("--statsd.tcp= left TCP on: %v", c.Statsd.TCP)
				}
				if c.Statsd.FlushInterval.D() != 2*time.Second {
					t.Errorf("flush interval %v", c.Statsd.FlushInterval)
				}
				if len(c.Graphite) != 2 || c.Graphite[1].Address != "b:2" || c.Graphite[1].Layout != config.LayoutEtsy {
					t.Errorf("graphite sinks %+v", c.Graphite)
				}
			}},
		{"a flag overrides the file and adds to its sinks", []string{"run", "--config", file, "--statsd.udp", "0.0.0.0:8125,[::]:8125", "--influx", "http://i:8086/write?db=s"}, nil,
			func(t *testing.T, c config.Config) {
				if !reflect.DeepEqual(c.Statsd.UDP, []string{"0.0.0.0:8125", "[::]:8125"}) {
					t.Errorf("udp %v", c.Statsd.UDP)
				}
				if c.Statsd.FlushInterval.D() != 5*time.Second || len(c.Graphite) != 1 || len(c.Influx) != 1 {
					t.Errorf("file values lost: %+v", c)
				}
			}},
		{"environment variables", nil, map[string]string{
			"STATSBRIDGE_STATSD_UDP": "127.0.0.1:7000", "STATSBRIDGE_HTTP_LISTEN": "", "STATSBRIDGE_REMOTE_WRITE": "http://p:9090/api/v1/write",
		}, func(t *testing.T, c config.Config) {
			if !reflect.DeepEqual(c.Statsd.UDP, []string{"127.0.0.1:7000"}) || c.HTTP.Listen != "" || len(c.RemoteWrite) != 1 {
				t.Errorf("got udp %v, http %q, remote_write %v", c.Statsd.UDP, c.HTTP.Listen, c.RemoteWrite)
			}
			if c.RemoteWrite[0].Counters != config.CountersCumulative {
				t.Errorf("remote-write counters %q", c.RemoteWrite[0].Counters)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			cfg, ran, _, err := runCLI(t, tt.args...)
			if err != nil || !ran {
				t.Fatalf("ran=%v err=%v", ran, err)
			}
			tt.check(t, cfg)
		})
	}
}

func TestCommandLineErrors(t *testing.T) {
	dir := t.TempDir()
	typo := filepath.Join(dir, "typo.toml")
	os.WriteFile(typo, []byte("[statsd]\nflush_intervall = \"1s\"\n"), 0o644)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"check-config names a typo'd key", []string{"check-config", typo}, "typo.toml:2: statsd.flush_intervall: unknown key"},
		{"run refuses a typo'd key", []string{"--config", typo}, "statsd.flush_intervall"},
		{"missing file", []string{"--config", filepath.Join(dir, "nope.toml")}, "nope.toml"},
		{"bad flag value", []string{"--flush-interval", "soon"}, "--flush-interval"},
		{"bad sink address", []string{"--graphite", "carbon"}, "graphite[0].address"},
		{"stray argument", []string{"run", "extra"}, "unexpected argument"},
		{"check-config without a file", []string{"check-config"}, "usage"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, ran, _, err := runCLI(t, tt.args...)
			if ran {
				t.Fatal("started despite the error")
			}
			var exit cli.ExitCoder
			if !errors.As(err, &exit) || exit.ExitCode() == 0 {
				t.Fatalf("error %v: want a non-zero exit", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

func TestCheckConfigAcceptsTheExample(t *testing.T) {
	_, _, out, err := runCLI(t, "check-config", "config.example.toml")
	if err != nil || !strings.Contains(out, "ok") {
		t.Errorf("out %q, err %v", out, err)
	}
}

func TestVersion(t *testing.T) {
	_, _, out, err := runCLI(t, "version")
	if err != nil || out != "statsbridge version "+version+" ("+runtime.Version()+")\n" {
		t.Errorf("out %q, err %v", out, err)
	}
}

// TestErrorsHideSecrets: what statsbridge prints when it stops on an error
// never shows a URL's password, a secret query parameter, or a secret
// value from the configuration.
func TestErrorsHideSecrets(t *testing.T) {
	dir := t.TempDir()
	file := func(name, toml string) string {
		path := filepath.Join(dir, name)
		os.WriteFile(path, []byte(toml), 0o644)
		return path
	}
	badInflux := file("bad-influx.toml", "[[influx]]\nurl = \"htp://admin:UrlPass1@influx:8086/write?db=s&p=QueryP1\"\ntoken = \"Token1xyz\"\n")
	badRemoteWrite := file("bad-rw.toml", "[[remote_write]]\nurl = \"http//rw:RwPass1@prom:9090/api/v1/write?access_token=Access1\"\n")
	good := file("good.toml", "[[influx]]\nurl = \"http://admin:UrlPass1@influx:8086/write?db=s&p=QueryP1\"\ntoken = \"Token1xyz\"\n"+
		"[[remote_write]]\nurl = \"http://prom:9090/api/v1/write\"\nbearer_token = \"Bearer1xyz\"\nheaders = { X-Api-Key = \"Header1xyz\" }\n")
	secrets := []string{"UrlPass1", "QueryP1", "Token1xyz", "RwPass1", "Access1", "Bearer1xyz", "Header1xyz"}
	failing := func(context.Context, config.Config, *slog.Logger, hooks) error {
		return errors.New(`influx[0]: Post "http://admin:UrlPass1@influx:8086/write?db=s&p=QueryP1": ` +
			`the server said: Authorization: Token Token1xyz; Authorization: Bearer Bearer1xyz; X-Api-Key: Header1xyz`)
	}
	tests := []struct {
		name  string
		args  []string
		runFn runner
		want  string // what shows the error was the one meant
	}{
		{"check-config of a bad URL", []string{"check-config", badInflux}, nil, "influx[0].url"},
		{"check-config of a URL without its scheme", []string{"check-config", badRemoteWrite}, nil, "remote_write[0].url"},
		{"run with a bad URL in the file", []string{"--config", badInflux}, nil, "influx[0].url"},
		{"run with a bad URL on the command line", []string{"--influx", "htp://admin:UrlPass1@influx:8086/write?db=s&p=QueryP1"}, nil, "influx[0].url"},
		{"run failing with secrets in its error", []string{"--config", good}, failing, "the server said"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runFn := tt.runFn
			if runFn == nil {
				runFn = func(context.Context, config.Config, *slog.Logger, hooks) error { t.Error("started"); return nil }
			}
			var stdout, stderr bytes.Buffer
			if code := statsbridge(append([]string{"statsbridge"}, tt.args...), &stdout, &stderr, runFn); code == 0 {
				t.Fatalf("exit code 0; stderr:\n%s", stderr.String())
			}
			out := stdout.String() + stderr.String()
			if !strings.Contains(out, tt.want) {
				t.Errorf("output does not mention %q:\n%s", tt.want, out)
			}
			for _, s := range secrets {
				if strings.Contains(out, s) {
					t.Errorf("output shows %q:\n%s", s, out)
				}
			}
		})
	}
}

// TestLogsHideSecrets: no log line carries a URL's password, a secret
// query parameter or a secret of the configuration, whatever part of the
// line holds it.
func TestLogsHideSecrets(t *testing.T) {
	const u = "http://admin:UrlPass1@influx:8086/write?db=s&p=QueryP1&access_token=Access1"
	secrets := []string{"UrlPass1", "QueryP1", "Access1", "Token1xyz"}
	cfg, err := config.Parse([]byte("[[influx]]\nurl = \"http://influx:8086/write?db=s\"\ntoken = \"Token1xyz\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	parsed, _ := url.Parse(u)
	tests := []struct {
		name string
		log  func(l *slog.Logger)
	}{
		{"the message", func(l *slog.Logger) { l.Info("posting to " + u) }},
		{"a string", func(l *slog.Logger) { l.Warn("delivery failed", "answer", "HTTP 401 for "+u) }},
		{"an error", func(l *slog.Logger) { l.Warn("delivery failed", "err", fmt.Errorf("Post %q: refused", u)) }},
		{"a Stringer", func(l *slog.Logger) { l.Info("target", "url", parsed) }},
		{"a list", func(l *slog.Logger) { l.Info("targets", "urls", []string{"x", u}) }},
		{"bytes", func(l *slog.Logger) { l.Info("answer", "body", []byte(u)) }},
		{"a group", func(l *slog.Logger) { l.Info("sink", slog.Group("target", "url", u)) }},
		{"attributes given beforehand", func(l *slog.Logger) { l.With("url", u).WithGroup("g").Info("sink", "err", errors.New(u)) }},
		{"a lower level", func(l *slog.Logger) { l.Debug("read", "url", u) }},
		{"a configured secret echoed by a backend", func(l *slog.Logger) {
			l.Error("refused", "answer", "HTTP 401 at influx:8086: bad Authorization: Token Token1xyz")
		}},
		{"the standard logger (the HTTP server's errors)", func(l *slog.Logger) {
			slog.NewLogLogger(l.Handler(), slog.LevelError).Printf("http: TLS handshake error from %s", u)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			tt.log(newLogger(&b, "debug", "text", cfg.Redactor().Redact))
			if !strings.Contains(b.String(), "influx:8086") {
				t.Fatalf("nothing logged:\n%s", b.String())
			}
			for _, s := range secrets {
				if strings.Contains(b.String(), s) {
					t.Errorf("the log shows %q:\n%s", s, b.String())
				}
			}
		})
	}
}

// TestFlagPositions: a flag means the same before the command, after it, or
// without one; and given where it means nothing, it is refused, never
// silently ignored.
func TestFlagPositions(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "sb.toml")
	os.WriteFile(file, []byte("[statsd]\nflush_interval = \"5s\"\n"), 0o644)
	fromFile := func(c config.Config) bool { return c.Statsd.FlushInterval.D() == 5*time.Second }
	tests := []struct {
		name string
		args []string
		env  map[string]string
		ok   func(c config.Config) bool
	}{
		{"before run", []string{"--config", file, "run"}, nil, fromFile},
		{"after run", []string{"run", "--config", file}, nil, fromFile},
		{"without a command", []string{"--config", file}, nil, fromFile},
		{"in the environment", []string{"run"}, map[string]string{"STATSBRIDGE_CONFIG": file}, fromFile},
		{"the command line wins over the environment, before the command too", []string{"--config", file, "run"},
			map[string]string{"STATSBRIDGE_CONFIG": filepath.Join(dir, "absent.toml")}, fromFile},
		{"after the command wins over before it", []string{"--flush-interval", "3s", "run", "--flush-interval", "2s"}, nil,
			func(c config.Config) bool { return c.Statsd.FlushInterval.D() == 2*time.Second }},
		{"a repeatable flag adds up across positions", []string{"--graphite", "a:1", "run", "--graphite", "b:2"}, nil,
			func(c config.Config) bool { return len(c.Graphite) == 2 }},
		{"an empty value before the command turns a listener off", []string{"--statsd.tcp=", "run"}, nil,
			func(c config.Config) bool { return len(c.Statsd.TCP) == 0 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			cfg, ran, _, err := runCLI(t, tt.args...)
			if err != nil || !ran {
				t.Fatalf("ran=%v err=%v", ran, err)
			}
			if !tt.ok(cfg) {
				t.Errorf("the flag was not applied: flush_interval %v, graphite %v, tcp %v", cfg.Statsd.FlushInterval, cfg.Graphite, cfg.Statsd.TCP)
			}
		})
	}
}

// TestHelpShowsDefaultsAndEnvironment: --help names every flag with its
// default and its environment variable, and help works as a command.
func TestHelpShowsDefaultsAndEnvironment(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"help"}, {"help", "run"}, {"run", "--help"}, {"check-config", "--help"}} {
		_, ran, out, err := runCLI(t, args...)
		if err != nil || ran {
			t.Fatalf("%v: ran=%v err=%v", args, ran, err)
		}
		for _, f := range append(globalFlags(), relayFlags()...) {
			line := ""
			for _, l := range strings.Split(out, "\n") {
				if strings.Contains(l, "--"+f.name+" ") {
					line = l
				}
			}
			if line == "" || !strings.Contains(line, "(default: "+f.def+")") || !strings.Contains(line, "[$"+flagEnv(f.name)+"]") {
				t.Errorf("%v: the line of --%s lacks its default %q or $%s: %q", args, f.name, f.def, flagEnv(f.name), line)
			}
		}
	}
}

// TestMistakesGetSuggestions: a mistyped command or flag is refused with
// what was probably meant; a word that is nothing like one gets none.
func TestMistakesGetSuggestions(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"rnu"}, `no command "rnu"; did you mean "run"?`},
		{[]string{"chek-config", "x.toml"}, `did you mean "check-config"?`},
		{[]string{"--confg", "x.toml"}, "unknown flag --confg; did you mean --config?"},
		{[]string{"run", "--flush-intervall", "1s"}, "did you mean --flush-interval?"},
		{[]string{"tap", "--mach", "x*"}, "did you mean --match?"},
		{[]string{"xyzzy"}, `no command "xyzzy" (see`},
	}
	for _, tt := range tests {
		_, ran, _, err := runCLI(t, tt.args...)
		var exit cli.ExitCoder
		if ran || !errors.As(err, &exit) || exit.ExitCode() != 2 {
			t.Errorf("%v: ran=%v err=%v, want exit code 2", tt.args, ran, err)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: %q does not say %q", tt.args, err, tt.want)
		}
	}
}

// TestFlagsThatMeanNothingAreRefused: a flag given to a command it means
// nothing to, before the command or after it, is refused loudly.
func TestFlagsThatMeanNothingAreRefused(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--graphite", "carbon:2003", "tap"}, "tap does not take --graphite"},
		{[]string{"--config", "x.toml", "version"}, "version does not take --config"},
		{[]string{"tap", "--statsd.udp", "x"}, "unknown flag --statsd.udp"},
		{[]string{"check-config", "x.toml", "--names"}, `unexpected argument "--names" (flags go before FILE)`},
		{[]string{"run", "extra"}, "unexpected argument"},
	}
	for _, tt := range tests {
		_, ran, _, err := runCLI(t, tt.args...)
		if ran || err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: ran=%v err=%v, want it refused with %q", tt.args, ran, err, tt.want)
		}
	}
	// In the environment, where it was not given for this command, it is
	// no mistake.
	t.Setenv("STATSBRIDGE_GRAPHITE", "carbon:2003")
	if _, _, out, err := runCLI(t, "version"); err != nil || !strings.Contains(out, version) {
		t.Errorf("version with STATSBRIDGE_GRAPHITE set: %q, %v", out, err)
	}
}

// TestCheckConfigFlagPositions: check-config reads the file from its
// argument or from --config wherever it stands, and checks the flags run
// would lay over it.
func TestCheckConfigFlagPositions(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.toml")
	os.WriteFile(good, []byte("[statsd]\nflush_interval = \"5s\"\n"), 0o644)
	tests := []struct {
		args []string
		ok   bool
		want string
	}{
		{[]string{"check-config", good}, true, good + ": ok"},
		{[]string{"--config", good, "check-config"}, true, good + ": ok"},
		{[]string{"check-config", "--config", good}, true, good + ": ok"},
		{[]string{"--config", good, "check-config", good}, true, good + ": ok"},
		{[]string{"--config", good, "check-config", filepath.Join(dir, "other.toml")}, false, "two files"},
		{[]string{"--flush-interval", "soon", "check-config", good}, false, "--flush-interval"},
		{[]string{"check-config", "--graphite", "carbon", good}, false, "graphite[0].address"},
	}
	for _, tt := range tests {
		_, _, out, err := runCLI(t, tt.args...)
		switch {
		case tt.ok && (err != nil || !strings.Contains(out, tt.want)):
			t.Errorf("%v: out %q, err %v; want %q", tt.args, out, err, tt.want)
		case !tt.ok && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%v: err %v, want one saying %q", tt.args, err, tt.want)
		}
	}
}

// TestCheckConfigExplainsNames: with --names, check-config prints what each
// name read from stdin would become, and what decided.
func TestCheckConfigExplainsNames(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "mapping.yml"), []byte(`mappings:
- match: app.*.hits
  name: app_hits_total
  labels:
    app: $1
- match: noise.*
  action: drop
  name: dropped
`), 0o644)
	file := filepath.Join(dir, "sb.toml")
	os.WriteFile(file, []byte("[mapping]\nfile = \"mapping.yml\"\n[limits]\nmax_labels = 3\n"), 0o644)
	names := strings.Join([]string{
		"prosody.prosody_mod_c2s.connections.localhost.c2s.ipv4:2|g",
		"app.web.hits",
		"noise.x:1|c",
		"api.latency:12|ms|#env:prod",
		"wide:1|c|#a:1,b:2,c:3,d:4",
		"# a comment",
		"x:1|q",
	}, "\n")
	var out, errOut bytes.Buffer
	app := newApp(&out, &errOut, func(context.Context, config.Config, *slog.Logger, hooks) error { t.Error("ran"); return nil })
	app.Reader = strings.NewReader(names)
	if err := app.Run([]string{"statsbridge", "check-config", "--names", file}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	want := []string{
		file + ": ok",
		`prosody.prosody_mod_c2s.connections.localhost.c2s.ipv4|g -> prosody_mod_c2s__connections{host="localhost",type="c2s",ip_family="ipv4"} gauge (prosody catalog: prosody_mod_c2s__connections)`,
		`app.web.hits|c -> app_hits{app="web"} counter (mapping file: match "app.*.hits")`,
		`noise.x|c -> refused (mapping_drop):`,
		`api.latency|ms|#env:prod -> api_latency{env="prod"} summary (default mapping`,
		`wide|c|#a:1,b:2,c:3,d:4 -> refused (max_labels): wide{a="1",b="2",c="3",d="4"} counter`,
		`x:1|q -> bad line (bad_type)`,
	}
	if len(lines) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(want), out.String())
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("line %d:\n got %s\nwant %s...", i, lines[i], w)
		}
	}
}

// TestJSONLogs: --log.format json writes one JSON object a line, with the
// secrets hidden as in text.
func TestJSONLogs(t *testing.T) {
	cfg, err := config.Parse([]byte("log_format = \"json\"\n[[influx]]\nurl = \"http://influx:8086/write?db=s\"\ntoken = \"Token1xyz\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	logs := newLogOutput(&b)
	logs.apply(cfg)
	logs.logger().With("sink", "influx[0]").Warn("refused", "answer", "bad token Token1xyz", "n", 3)
	var line map[string]any
	if err := json.Unmarshal(b.Bytes(), &line); err != nil {
		t.Fatalf("not a JSON line: %v\n%s", err, b.String())
	}
	if line["msg"] != "refused" || line["sink"] != "influx[0]" || line["n"] != 3.0 || strings.Contains(b.String(), "Token1xyz") {
		t.Errorf("got %s", b.String())
	}
}

// TestReloadedLogHidesNewAndOldSecrets: after a reload the log hides the
// new configuration's secrets, and still the old one's, with the loggers
// handed out before.
func TestReloadedLogHidesNewAndOldSecrets(t *testing.T) {
	parse := func(token string) config.Config {
		cfg, err := config.Parse([]byte("[[influx]]\nurl = \"http://influx:8086/write?db=s\"\ntoken = \"" + token + "\"\n"))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	var b bytes.Buffer
	logs := newLogOutput(&b)
	logs.apply(parse("OldToken1"))
	logger := logs.logger().With("sink", "influx[0]")
	logs.apply(parse("NewToken2"))
	logger.Warn("refused", "answer", "tokens OldToken1 and NewToken2")
	if strings.Contains(b.String(), "OldToken1") || strings.Contains(b.String(), "NewToken2") || !strings.Contains(b.String(), "refused") {
		t.Errorf("got %s", b.String())
	}
}
