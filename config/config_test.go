package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/statsbridge/statsbridge/sinks/tlstest"
)

func readExample(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../config.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// uncomment turns the example's "#key = value" and "#[[table]]" lines on.
func uncomment(example string) string {
	var out []string
	for _, line := range strings.Split(example, "\n") {
		if len(line) > 1 && line[0] == '#' && line[1] != ' ' {
			line = line[1:]
		}
		out = append(out, line)
	}
	return strings.Join(out, "\n")
}

func TestExampleIsTheEmbeddedDefault(t *testing.T) {
	got, err := Parse([]byte(readExample(t)))
	if err != nil {
		t.Fatal(err)
	}
	if want := Default(); !reflect.DeepEqual(got, want) {
		t.Errorf("config.example.toml parses to\n%+v\nbut Default() is\n%+v", got, want)
	}
}

func TestExampleSinksShowTheirDefaults(t *testing.T) {
	got, err := Parse([]byte(uncomment(readExample(t))))
	if err != nil {
		t.Fatal(err)
	}
	sinks := func(c Config) []any { return []any{c.Graphite, c.Influx, c.RemoteWrite} }
	want := []any{[]Graphite{DefaultGraphite()}, []Influx{DefaultInflux()}, []RemoteWrite{DefaultRemoteWrite()}}
	if !reflect.DeepEqual(sinks(got), want) {
		t.Errorf("the example's sinks, uncommented, parse to\n%+v\nbut the defaults are\n%+v", sinks(got), want)
	}
	if len(got.Prosody.Families) != 1 || got.Prosody.Families[0].Type != "gauge" {
		t.Errorf("the example's Prosody family: %+v", got.Prosody.Families)
	}
}

// TestEveryKeyIsDocumentedInTheExample: every key of Config stands in
// config.example.toml under its own table (commented out for the sinks), so
// that graphite's prefix is not taken for prosody's.
func TestEveryKeyIsDocumentedInTheExample(t *testing.T) {
	documented := exampleKeys(readExample(t))
	var walk func(typ reflect.Type, table string)
	walk = func(typ reflect.Type, table string) {
		for i := 0; i < typ.NumField(); i++ {
			f := typ.Field(i)
			if f.Anonymous {
				walk(f.Type, table)
				continue
			}
			key := tomlName(f)
			if table != "" {
				key = table + "." + key
			}
			if !documented[key] {
				t.Errorf("key %q is not in config.example.toml", key)
			}
			switch {
			case f.Type.Kind() == reflect.Struct && f.Type.NumMethod() == 0:
				walk(f.Type, key)
			case f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct:
				walk(f.Type.Elem(), key)
			}
		}
	}
	walk(reflect.TypeOf(Config{}), "")
}

// exampleKeys lists the keys the example sets or shows commented out, each
// with its table ("graphite.prefix"), and the tables themselves.
func exampleKeys(example string) map[string]bool {
	table := regexp.MustCompile(`^#?\[\[?([\w.]+)\]\]?$`)
	key := regexp.MustCompile(`^#?(\w+) = `)
	keys := map[string]bool{}
	current := ""
	for _, line := range strings.Split(example, "\n") {
		if m := table.FindStringSubmatch(line); m != nil {
			current = m[1]
			keys[current] = true
		} else if m := key.FindStringSubmatch(line); m != nil && current == "" {
			keys[m[1]] = true
		} else if m != nil {
			keys[current+"."+m[1]] = true
		}
	}
	return keys
}

func TestPartialFileKeepsDefaults(t *testing.T) {
	cfg, err := Parse([]byte(`
[statsd]
flush_interval = "1s"
[[graphite]]
address = "carbon:2003"
layout = "paths"
[[graphite]]
address = "carbon2:2003"
legacy_namespace = false
external_labels = { instance = "relay1" }
`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Statsd.FlushInterval.D() != time.Second {
		t.Errorf("flush_interval = %v", cfg.Statsd.FlushInterval)
	}
	if got := cfg.Statsd.UDP; !reflect.DeepEqual(got, []string{"127.0.0.1:8125"}) {
		t.Errorf("statsd.udp = %v, want the default", got)
	}
	g0, g1 := cfg.Graphite[0], cfg.Graphite[1]
	if g0.Layout != LayoutPaths || !g0.LegacyNamespace || g0.BatchSize != 1000 || g0.Timeout.D() != 10*time.Second {
		t.Errorf("graphite[0] = %+v: set keys or defaults lost", g0)
	}
	if g1.Layout != LayoutEtsy || g1.LegacyNamespace || g1.ExternalLabels["instance"] != "relay1" {
		t.Errorf("graphite[1] = %+v", g1)
	}
}

func TestErrorsNameKeyAndLine(t *testing.T) {
	tests := []struct {
		name string
		toml string
		want []string // substrings of the error: key and line
	}{
		{"typo'd key", "[statsd]\nudp = []\nflush_intervall = \"1s\"\n", []string{"statsd.flush_intervall", "line 3", "unknown key"}},
		{"typo'd table", "[stats]\nudp = []\n", []string{"stats", "line 1", "unknown key"}},
		{"typo'd key in the second sink", "[[graphite]]\naddress = \"a:1\"\n[[graphite]]\nadress = \"b:1\"\n",
			[]string{"graphite[1].adress", "line 4"}},
		{"wrong type", "[limits]\nmax_series = \"many\"\n", []string{"limits.max_series", "line 2"}},
		{"bad duration", "[statsd]\nflush_interval = \"often\"\n", []string{"statsd.flush_interval", "line 2", "duration"}},
		{"bad size", "[statsd]\nread_buffer = \"big\"\n", []string{"statsd.read_buffer", "line 2", "size"}},
		{"bad layout", "[[graphite]]\naddress = \"a:1\"\nlayout = \"flat\"\n", []string{"graphite[0].layout", "line 3", `"flat"`}},
		{"bad address", "[statsd]\n\ntcp = [\"localhost\"]\n", []string{"statsd.tcp[0]", "line 3"}},
		{"interval too short", "[statsd]\nflush_interval = \"10ms\"\n", []string{"statsd.flush_interval", "line 2"}},
		{"remote-write counters", "[[remote_write]]\nurl = \"http://p:9090/api/v1/write\"\ncounters = \"delta\"\n",
			[]string{"remote_write[0].counters", "line 3"}},
		{"influx url without db", "[[influx]]\nurl = \"http://i:8086/write\"\n", []string{"influx[0].url", "line 2", "db="}},
		{"influx 2.x url without org", "[[influx]]\nurl = \"http://i:8086/api/v2/write?bucket=b\"\n", []string{"influx[0].url", "line 2", "org="}},
		{"bad influx shape", "[[influx]]\nurl = \"http://i:8086/write?db=x\"\nshape = \"graphite\"\n",
			[]string{"influx[0].shape", "line 3", `"graphite"`}},
		{"telegraf shape with cumulative counters", "[[influx]]\nurl = \"http://i:8086/write?db=x\"\ncounters = \"cumulative\"\nshape = \"telegraf\"\n",
			[]string{"influx[0].shape", "line 4", "delta"}},
		{"prometheus shape with delta counters", "[[influx]]\nurl = \"http://i:8086/write?db=x\"\nshape = \"prometheus\"\n",
			[]string{"influx[0].shape", "line 3", "cumulative"}},
		{"bad allow", "[http]\nallow = [\"10.0.0.0/33\"]\n", []string{"http.allow", "line 2"}},
		{"bad le_format", "[http]\nle_format = \"1.0\"\n", []string{"http.le_format", "line 2", `"1.0"`}},
		{"bad remote-write le_format", "[[remote_write]]\nurl = \"http://p:9090/api/v1/write\"\nle_format = \"prometheus3\"\n",
			[]string{"remote_write[0].le_format", "line 3"}},
		{"bad external label", "[[graphite]]\naddress = \"a:1\"\nexternal_labels = { \"bad-name\" = \"x\" }\n",
			[]string{"graphite[0].external_labels", "line 3"}},
		{"external label le", "[[remote_write]]\nurl = \"http://p:9090/api/v1/write\"\nexternal_labels = { le = \"x\" }\n",
			[]string{"remote_write[0].external_labels", "line 3", "histogram"}},
		{"source_label quantile", "[statsd]\nsource_label = \"quantile\"\n", []string{"statsd.source_label", "line 2"}},
		{"source_label reserved", "[statsd]\nsource_label = \"__src\"\n", []string{"statsd.source_label", "line 2"}},
		{"syntax", "[statsd\nudp = []\n", []string{"line 1", "TOML syntax"}},
		{"negative line timeout", "[statsd]\ntcp_line_timeout = \"-1s\"\n", []string{"statsd.tcp_line_timeout", "line 2"}},
		{"read cork too long", "[statsd]\nread_cork = \"1s\"\n", []string{"statsd.read_cork", "line 2", "100ms"}},
		{"negative read cork", "[statsd]\nread_cork = \"-1ms\"\n", []string{"statsd.read_cork", "line 2"}},
		{"native bucket factor of 1 (no growth)", "[mapping]\nnative_histogram_bucket_factor = 1.0\n",
			[]string{"mapping.native_histogram_bucket_factor", "line 2", "more than 1"}},
		{"negative native bucket factor", "[mapping]\nnative_histogram_bucket_factor = -2.0\n",
			[]string{"mapping.native_histogram_bucket_factor", "line 2"}},
		{"native histograms without a bucket cap", "[mapping]\nnative_histogram_max_buckets = 0\n",
			[]string{"mapping.native_histogram_max_buckets", "line 2", "1 to 16384"}},
		{"negative per-source limit", "[statsd]\ntcp_max_connections_per_source = -1\n",
			[]string{"statsd.tcp_max_connections_per_source", "line 2"}},
		{"unknown unixgram group", "[statsd]\nunixgram_group = \"no-such-group-statsbridge\"\n",
			[]string{"statsd.unixgram_group", "line 2", "no-such-group-statsbridge"}},
		{"unset environment secret", "[[influx]]\nurl = \"http://i:8086/write?db=x\"\ntoken = \"${STATSBRIDGE_TEST_UNSET_TOKEN}\"\n",
			[]string{"influx[0].token", "line 3", "STATSBRIDGE_TEST_UNSET_TOKEN"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.toml))
			if err == nil {
				t.Fatal("no error")
			}
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("error %T %v is not Errors", err, err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// TestDefaultUnixgramSocketIsNotWorldWritable: without a word in the file,
// only the process's user and group may send to a unixgram socket.
func TestDefaultUnixgramSocketIsNotWorldWritable(t *testing.T) {
	cfg, err := Parse([]byte("[statsd]\nunixgram = [\"/run/statsbridge/statsd.sock\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if mode := cfg.Statsd.UnixgramMode.Mode(); mode&0o007 != 0 {
		t.Errorf("default unixgram_mode %04o lets every local user send", mode)
	}
}

func TestLoadNamesTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.toml")
	os.WriteFile(path, []byte("[http]\nlisten = 9102\n"), 0o644)
	_, err := Load(path)
	if err == nil || !strings.HasPrefix(err.Error(), path+":2: http.listen") {
		t.Errorf("error %v, want it to start with %s:2: http.listen", err, path)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.toml")); err == nil || !strings.Contains(err.Error(), "missing.toml") {
		t.Errorf("missing file: %v", err)
	}
}

func TestSecretsFromEnvironmentAndFile(t *testing.T) {
	t.Setenv("STATSBRIDGE_TEST_TOKEN", "s3cret")
	tokenFile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tokenFile, []byte("from-file\n"), 0o600)
	cfg, err := Parse([]byte(`
[[influx]]
url = "http://i:8086/write?db=x"
token = "${STATSBRIDGE_TEST_TOKEN}"
[[remote_write]]
url = "http://p:9090/api/v1/write"
bearer_token_file = "` + tokenFile + `"
headers = { "X-Scope-OrgID" = "${STATSBRIDGE_TEST_TOKEN}" }
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Influx[0].Token.Reveal(); got != "s3cret" {
		t.Errorf("token = %q", got)
	}
	if got := cfg.RemoteWrite[0].BearerToken.Reveal(); got != "from-file" {
		t.Errorf("bearer_token = %q", got)
	}
	if got := cfg.RemoteWrite[0].Headers["X-Scope-OrgID"].Reveal(); got != "s3cret" {
		t.Errorf("header = %q", got)
	}
	if s := cfg.Influx[0].Token.String(); strings.Contains(s, "s3cret") {
		t.Errorf("a secret prints its value: %q", s)
	}
}

// TestInfluxShapeFollowsCounters: with no shape, delta counters get
// Telegraf's statsd shape and cumulative ones Telegraf's prometheus shape.
func TestInfluxV2URLTakesOrgOrOrgID(t *testing.T) {
	for _, q := range []string{"org=my-org&bucket=b", "orgID=033a3f2c5ccaa000&bucket=b"} {
		if _, err := Parse([]byte("[[influx]]\nurl = \"http://i:8086/api/v2/write?" + q + "\"\n")); err != nil {
			t.Errorf("%s: %v", q, err)
		}
	}
}

func TestInfluxShapeFollowsCounters(t *testing.T) {
	tests := []struct{ toml, want string }{
		{"", ShapeTelegraf},
		{"counters = \"delta\"\n", ShapeTelegraf},
		{"counters = \"cumulative\"\n", ShapePrometheus},
		{"shape = \"etsy\"\ncounters = \"cumulative\"\n", ShapeEtsy},
		{"shape = \"etsy\"\n", ShapeEtsy},
	}
	for _, tt := range tests {
		cfg, err := Parse([]byte("[[influx]]\nurl = \"http://i:8086/write?db=x\"\n" + tt.toml))
		if err != nil {
			t.Fatalf("%q: %v", tt.toml, err)
		}
		if got := cfg.Influx[0].EffectiveShape(); got != tt.want {
			t.Errorf("%q: shape %q, want %q", tt.toml, got, tt.want)
		}
	}
}

func TestByteSize(t *testing.T) {
	tests := []struct {
		in   string
		want ByteSize
		ok   bool
	}{
		{"512", 512, true}, {"64KiB", 64 << 10, true}, {"8MiB", 8 << 20, true}, {"1GiB", 1 << 30, true},
		{"10MB", 10_000_000, true}, {"1.5KiB", 1536, true}, {"-1", 0, false}, {"lots", 0, false}, {"", 0, false},
	}
	for _, tt := range tests {
		var s ByteSize
		err := s.UnmarshalText([]byte(tt.in))
		if (err == nil) != tt.ok || (tt.ok && s != tt.want) {
			t.Errorf("%q: got %d, %v; want %d, ok=%v", tt.in, s, err, tt.want, tt.ok)
		}
	}
	for _, s := range []ByteSize{512, 64 << 10, 8 << 20, 3 << 30} {
		text, _ := s.MarshalText()
		var back ByteSize
		if err := back.UnmarshalText(text); err != nil || back != s {
			t.Errorf("%d -> %q -> %d, %v", s, text, back, err)
		}
	}
}

// TestRelativePathsAreReadFromTheFilesDirectory: a file's relative paths
// mean the same wherever statsbridge is started from.
func TestRelativePathsAreReadFromTheFilesDirectory(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "influx.token"), []byte("Token1xyz\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "influx.pass"), []byte("Pass1xyz\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "rw.token"), []byte("Bearer1xyz\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "rw.pass"), []byte("RwPass1xyz\n"), 0o600)
	ca := tlstest.NewCA(t, "relative")
	caFile := ca.WriteCA(t, dir)
	os.Mkdir(filepath.Join(dir, "tls"), 0o755)
	tlstest.WriteKeyPair(t, filepath.Join(dir, "tls"), "client", ca.Client(t, "statsbridge"))
	path := filepath.Join(dir, "statsbridge.toml")
	os.WriteFile(path, []byte(`
[statsd]
unixgram = ["run/statsd.sock"]
[mapping]
file = "mapping.yml"
[[graphite]]
address = "carbon:2003"
spool_dir = "spool"
[[influx]]
url = "http://influx:8086/write?db=s"
token_file = "influx.token"
[[influx]]
url = "http://influx:8086/write?db=t"
username = "u"
password_file = "./influx.pass"
spool_dir = "/var/lib/statsbridge"
[[remote_write]]
url = "http://prom:9090/api/v1/write"
bearer_token_file = "rw.token"
[[remote_write]]
url = "https://prom:9090/api/v1/write"
username = "u"
password_file = "rw.pass"
tls = { ca_file = "`+filepath.Base(caFile)+`", cert_file = "tls/client.crt", key_file = "tls/client.key" }
`), 0o644)
	t.Chdir(t.TempDir()) // somewhere else
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct{ key, got, want string }{
		{"statsd.unixgram", cfg.Statsd.Unixgram[0], filepath.Join(dir, "run/statsd.sock")},
		{"mapping.file", cfg.Mapping.File, filepath.Join(dir, "mapping.yml")},
		{"graphite[0].spool_dir", cfg.Graphite[0].SpoolDir, filepath.Join(dir, "spool")},
		{"influx[1].spool_dir (absolute)", cfg.Influx[1].SpoolDir, "/var/lib/statsbridge"},
		{"influx[0].token_file", cfg.Influx[0].Token.Reveal(), "Token1xyz"},
		{"influx[1].password_file", cfg.Influx[1].Password.Reveal(), "Pass1xyz"},
		{"remote_write[0].bearer_token_file", cfg.RemoteWrite[0].BearerToken.Reveal(), "Bearer1xyz"},
		{"remote_write[1].password_file", cfg.RemoteWrite[1].Password.Reveal(), "RwPass1xyz"},
		{"remote_write[1].tls.ca_file", cfg.RemoteWrite[1].TLS.CAFile, caFile},
		{"remote_write[1].tls.cert_file", cfg.RemoteWrite[1].TLS.CertFile, filepath.Join(dir, "tls/client.crt")},
		{"remote_write[1].tls.key_file", cfg.RemoteWrite[1].TLS.KeyFile, filepath.Join(dir, "tls/client.key")},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.key, c.got, c.want)
		}
	}
}
