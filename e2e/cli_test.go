package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runBinary starts statsbridge with args and env, waits for its start-up
// line, stops it with SIGTERM and returns everything it wrote.
func runBinary(t *testing.T, env []string, args ...string) string {
	t.Helper()
	log := &logBuffer{}
	cmd := exec.Command(statsbridgeBin, args...)
	cmd.Env = append(filterEnv("STATSBRIDGE_"), env...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(log.String(), "statsbridge started") {
		select {
		case err := <-exited:
			t.Fatalf("statsbridge %v exited at start (%v):\n%s", args, err, log.String())
		default:
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("statsbridge %v did not start:\n%s", args, log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("statsbridge %v: %v\n%s", args, err, log.String())
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("statsbridge %v did not stop", args)
	}
	return log.String()
}

// TestFlagPositions: the real binary reads --config (and every flag)
// before the command, after it, without one, and from the environment;
// the command line wins over the environment.
func TestFlagPositions(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "statsbridge.toml")
	port := freePort(t)
	write(t, file, fmt.Sprintf("[statsd]\nudp = [\"127.0.0.1:%d\"]\ntcp = []\n[http]\nlisten = \"127.0.0.1:0\"\n", port))
	fromFile := fmt.Sprintf(`statsd="udp 127.0.0.1:%d"`, port)
	tests := []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"before the command", nil, []string{"--config", file, "run"}, fromFile},
		{"after the command", nil, []string{"run", "--config", file}, fromFile},
		{"without a command", nil, []string{"--config", file}, fromFile},
		{"in the environment", []string{"STATSBRIDGE_CONFIG=" + file}, []string{"run"}, fromFile},
		{"on the command line over the environment", []string{"STATSBRIDGE_CONFIG=" + filepath.Join(dir, "absent.toml")},
			[]string{"--config", file, "run"}, fromFile},
		{"a flag over the file, before the command", nil, []string{"--flush-interval", "3s", "--config", file, "run"}, "flush_interval=3s"},
		{"a flag over the file, after the command", nil, []string{"--config", file, "run", "--flush-interval", "3s"}, "flush_interval=3s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if out := runBinary(t, tt.env, tt.args...); !strings.Contains(out, tt.want) {
				t.Errorf("the start-up line does not say %s:\n%s", tt.want, out)
			}
		})
	}
}

// TestFlagsRefusedWhereTheyMeanNothing: a flag a command cannot use, and a
// mistyped one, make the binary exit 2 with a message; none is ignored.
func TestFlagsRefusedWhereTheyMeanNothing(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--graphite", "127.0.0.1:2003", "tap"}, "tap does not take --graphite"},
		{[]string{"--confg", "x.toml", "run"}, "did you mean --config?"},
		{[]string{"rnu"}, `did you mean "run"?`},
		{[]string{"check-config", "x.toml", "--names"}, "flags go before FILE"},
	}
	for _, tt := range tests {
		out, err := exec.Command(statsbridgeBin, tt.args...).CombinedOutput()
		exit, ok := err.(*exec.ExitError)
		if !ok || exit.ExitCode() != 2 || !strings.Contains(string(out), tt.want) {
			t.Errorf("statsbridge %v: %v, %q; want exit 2 saying %q", tt.args, err, out, tt.want)
		}
	}
}

// TestVersionAndHelp: --version and the version command print the version
// and Go's; help works as a command and --help shows the defaults and
// environment variables.
func TestVersionAndHelp(t *testing.T) {
	want := regexp.MustCompile(`^statsbridge version \S+ \(` + regexp.QuoteMeta(runtime.Version()) + `\)\n$`)
	for _, args := range [][]string{{"--version"}, {"version"}} {
		out, err := exec.Command(statsbridgeBin, args...).Output()
		if err != nil || !want.Match(out) {
			t.Errorf("statsbridge %v: %q, %v", args, out, err)
		}
	}
	for _, args := range [][]string{{"help"}, {"--help"}} {
		out, err := exec.Command(statsbridgeBin, args...).Output()
		if err != nil || !strings.Contains(string(out), "--statsd.udp ADDRS") ||
			!strings.Contains(string(out), "(default: 127.0.0.1:8125) [$STATSBRIDGE_STATSD_UDP]") {
			t.Errorf("statsbridge %v: %v\n%s", args, err, out)
		}
	}
}

// TestJSONLog: --log.format json makes every log line a JSON object, the
// start-up line included.
func TestJSONLog(t *testing.T) {
	out := runBinary(t, nil, "run", "--log.format", "json", "--statsd.udp", "127.0.0.1:0", "--statsd.tcp=", "--http.listen", "127.0.0.1:0")
	started := false
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("not a JSON line: %q", line)
			continue
		}
		if rec["msg"] == "statsbridge started" && rec["level"] == "INFO" && rec["http"] != nil {
			started = true
		}
	}
	if !started {
		t.Errorf("no JSON start-up line:\n%s", out)
	}
}

// TestRelativePathsFromTheConfigFile: the mapping file named in a
// configuration is found next to it, wherever statsbridge starts.
func TestRelativePathsFromTheConfigFile(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "mapping.yml"), "mappings:\n- match: rel.*\n  name: relative_ok\n")
	write(t, filepath.Join(dir, "statsbridge.toml"), "[mapping]\nfile = \"mapping.yml\"\n")
	cmd := exec.Command(statsbridgeBin, "check-config", "--names", filepath.Join(dir, "statsbridge.toml"))
	cmd.Dir = os.TempDir()
	cmd.Stdin = strings.NewReader("rel.x:1|g\n")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), `rel.x|g -> relative_ok gauge (mapping file: match "rel.*")`) {
		t.Errorf("check-config from another directory: %v\n%s", err, out)
	}
}
