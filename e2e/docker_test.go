package e2e

// No Docker engine runs where these tests run, so the Dockerfile is tested
// in parts: its instructions are read and held to what the classic builder
// takes; its build context (the files .dockerignore leaves) builds with
// build.sh as its build stage runs it; the binary is static; and the
// configuration and environment it bakes in start, listen on every
// interface, and answer its HEALTHCHECK.

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// instruction is one Dockerfile instruction, its continuation lines joined.
type instruction struct {
	Cmd   string   // upper case: FROM, RUN, COPY ...
	Flags []string // --from=build, --chown=...
	Args  string   // the rest, as written
	Line  int
}

// dockerfile is a parsed Dockerfile: parser directives and instructions.
type dockerfile struct {
	Directives   map[string]string
	Instructions []instruction
}

func readDockerfile(t *testing.T) dockerfile {
	t.Helper()
	b, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := dockerfile{Directives: map[string]string{}}
	directive := regexp.MustCompile(`^#\s*([a-zA-Z]+)\s*=\s*(\S+)\s*$`)
	lines := strings.Split(string(b), "\n")
	inDirectives := true
	for i := 0; i < len(lines); i++ {
		line := strings.TrimSpace(lines[i])
		if inDirectives {
			if m := directive.FindStringSubmatch(line); m != nil {
				df.Directives[strings.ToLower(m[1])] = m[2]
				continue
			}
			inDirectives = false
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		start := i + 1
		for strings.HasSuffix(line, `\`) && i+1 < len(lines) {
			i++
			next := strings.TrimSpace(lines[i])
			if strings.HasPrefix(next, "#") {
				continue // a comment inside a continuation is dropped
			}
			line = strings.TrimSuffix(line, `\`) + " " + next
		}
		cmd, rest, _ := strings.Cut(line, " ")
		in := instruction{Cmd: strings.ToUpper(cmd), Line: start}
		rest = strings.TrimSpace(rest)
		for strings.HasPrefix(rest, "--") {
			flag, after, _ := strings.Cut(rest, " ")
			in.Flags = append(in.Flags, flag)
			rest = strings.TrimSpace(after)
		}
		in.Args = rest
		df.Instructions = append(df.Instructions, in)
	}
	return df
}

// final is the instructions of the last stage.
func (df dockerfile) final() []instruction {
	last := 0
	for i, in := range df.Instructions {
		if in.Cmd == "FROM" {
			last = i
		}
	}
	return df.Instructions[last:]
}

func (df dockerfile) find(cmd string) []instruction {
	var out []instruction
	for _, in := range df.final() {
		if in.Cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

// imageEnv is the final stage's ENV, as a map.
func (df dockerfile) imageEnv(t *testing.T) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, in := range df.find("ENV") {
		for _, kv := range strings.Fields(in.Args) {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				t.Fatalf("line %d: ENV %q: write ENV KEY=VALUE", in.Line, in.Args)
			}
			env[k] = strings.Trim(v, `"`)
		}
	}
	return env
}

// execForm reads a JSON exec form (["a", "b"]) without a shell.
func execForm(t *testing.T, in instruction, args string) []string {
	t.Helper()
	m := regexp.MustCompile(`^\[(.*)\]$`).FindStringSubmatch(strings.TrimSpace(args))
	if m == nil {
		t.Fatalf("line %d: %s %s is not in exec form: the image has no shell", in.Line, in.Cmd, args)
	}
	var out []string
	for _, part := range strings.Split(m[1], ",") {
		out = append(out, strings.Trim(strings.TrimSpace(part), `"`))
	}
	return out
}

// TestDockerfileBuildsWithTheClassicBuilder: nothing in the Dockerfile
// needs BuildKit (a syntax directive, heredocs, RUN --mount, COPY --chmod
// or --link), it builds with build.sh, and its image runs as a non-root
// user with a HEALTHCHECK that needs no shell.
func TestDockerfileBuildsWithTheClassicBuilder(t *testing.T) {
	df := readDockerfile(t)
	for name := range df.Directives {
		if name != "escape" {
			t.Errorf("parser directive %q: the classic builder knows only escape", name)
		}
	}
	classicFlags := map[string][]string{"COPY": {"--from", "--chown"}, "ADD": {"--chown"}, "FROM": {"--platform"},
		"HEALTHCHECK": {"--interval", "--timeout", "--start-period", "--retries"}}
	for _, in := range df.Instructions {
		if strings.Contains(in.Args, "<<") {
			t.Errorf("line %d: a heredoc (%s %s) needs BuildKit", in.Line, in.Cmd, in.Args)
		}
		for _, f := range in.Flags {
			name, _, _ := strings.Cut(f, "=")
			ok := false
			for _, allowed := range classicFlags[in.Cmd] {
				ok = ok || name == allowed
			}
			if !ok {
				t.Errorf("line %d: %s %s: the classic builder does not take it", in.Line, in.Cmd, f)
			}
		}
	}
	var built bool
	for _, in := range df.Instructions {
		built = built || in.Cmd == "RUN" && regexp.MustCompile(`(^|\s)\./build\.sh /out/statsbridge(\s|$)`).MatchString(in.Args)
	}
	if !built {
		t.Error("the build stage does not run ./build.sh /out/statsbridge")
	}
	if e := df.find("EXPOSE"); len(e) != 1 || e[0].Args != "8125/udp 8125/tcp 9102/tcp" {
		t.Errorf("EXPOSE %v, want 8125/udp 8125/tcp 9102/tcp", e)
	}
	if u := df.find("USER"); len(u) == 0 || strings.HasPrefix(u[len(u)-1].Args, "root") || strings.HasPrefix(u[len(u)-1].Args, "0") {
		t.Errorf("the image does not run as a non-root user: %v", u)
	}
	hc := df.find("HEALTHCHECK")
	if len(hc) != 1 || !strings.HasPrefix(hc[0].Args, "CMD ") {
		t.Fatalf("HEALTHCHECK %v, want one HEALTHCHECK ... CMD [...]", hc)
	}
	argv := execForm(t, hc[0], strings.TrimPrefix(hc[0].Args, "CMD "))
	entry := execForm(t, df.find("ENTRYPOINT")[0], df.find("ENTRYPOINT")[0].Args)
	if len(argv) != 2 || argv[0] != entry[0] || argv[1] != "healthcheck" {
		t.Errorf("HEALTHCHECK CMD %q, want [%q healthcheck]", argv, entry[0])
	}
	f, err := elf.Open(statsbridgeBin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("build.sh made a dynamically linked binary; the image has no libc")
		}
	}
}

// TestDockerBuildContextBuilds: the files .dockerignore sends to the
// builder are enough for the build stage, run as it runs there, and leave
// out the repository, the tests and their data.
func TestDockerBuildContextBuilds(t *testing.T) {
	df := readDockerfile(t)
	ignore := readDockerignore(t)
	out, err := exec.Command("git", "-C", "..", "ls-files", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	ctx := t.TempDir()
	sent := map[string]bool{}
	for _, path := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if ignore.excludes(path) {
			continue
		}
		if _, err := os.Stat(filepath.Join("..", path)); err != nil {
			continue // deleted in the work tree
		}
		sent[path] = true
		copyFile(t, filepath.Join("..", path), filepath.Join(ctx, path))
	}
	for _, kept := range []string{".git", "e2e/relay_test.go", "testdata/prosody/capture.jsonl", "model/prosody/testdata/upstream/prosody-trunk.json", "README.md"} {
		if sent[kept] || !ignore.excludes(kept) {
			t.Errorf("%s is sent to the builder", kept)
		}
	}
	for _, in := range df.Instructions {
		if in.Cmd != "COPY" || strings.Contains(strings.Join(in.Flags, " "), "--from") {
			continue
		}
		fields := strings.Fields(in.Args)
		for _, src := range fields[:len(fields)-1] {
			if src == "." {
				continue
			}
			if !sent[src] {
				t.Errorf("line %d: COPY %s: .dockerignore leaves it out of the context", in.Line, src)
			}
		}
	}
	bin := filepath.Join(t.TempDir(), "statsbridge")
	build := exec.Command("./build.sh", bin)
	build.Dir = ctx
	build.Env = append(os.Environ(), "VERSION=context-test")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("the build stage in the build context: %v\n%s", err, out)
	}
	if out, _ := exec.Command(bin, "version").Output(); !strings.HasPrefix(string(out), "statsbridge version context-test ") {
		t.Errorf("version %q: VERSION did not reach the binary", out)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(from)
	os.MkdirAll(filepath.Dir(to), 0o755)
	if err := os.WriteFile(to, data, fi.Mode().Perm()); err != nil {
		t.Fatal(err)
	}
}

// dockerignore is .dockerignore's patterns, read as Docker reads them: a
// pattern excludes a path that it matches or that lies in a directory it
// matches, ** matches any number of directories, and the last pattern that
// matches decides (a "!" pattern puts a path back).
type dockerignore []struct {
	re     *regexp.Regexp
	negate bool
}

func readDockerignore(t *testing.T) dockerignore {
	t.Helper()
	b, err := os.ReadFile("../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	var out dockerignore
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		negate := strings.HasPrefix(line, "!")
		pattern := filepath.Clean(strings.TrimPrefix(strings.TrimPrefix(line, "!"), "/"))
		var re strings.Builder
		re.WriteString("^")
		for i := 0; i < len(pattern); i++ {
			switch c := pattern[i]; {
			case strings.HasPrefix(pattern[i:], "**/"):
				re.WriteString("(.*/)?")
				i += 2
			case strings.HasPrefix(pattern[i:], "**"):
				re.WriteString(".*")
				i++
			case c == '*':
				re.WriteString("[^/]*")
			case c == '?':
				re.WriteString("[^/]")
			default:
				re.WriteString(regexp.QuoteMeta(string(c)))
			}
		}
		re.WriteString("(/.*)?$")
		out = append(out, struct {
			re     *regexp.Regexp
			negate bool
		}{regexp.MustCompile(re.String()), negate})
	}
	return out
}

func (d dockerignore) excludes(path string) bool {
	excluded := false
	for _, p := range d {
		if p.re.MatchString(path) {
			excluded = !p.negate
		}
	}
	return excluded
}

// TestImageListensEverywhereAndAnswersItsHealthcheck starts the binary as
// the image runs it: its environment, its CMD, and its configuration file
// or a small one of a user's that sets no listener. Either way it listens
// on every interface, /metrics answers a private address, and the
// HEALTHCHECK passes while it runs and fails once it stopped.
func TestImageListensEverywhereAndAnswersItsHealthcheck(t *testing.T) {
	df := readDockerfile(t)
	env := df.imageEnv(t)
	var configSource string
	for _, in := range df.find("COPY") {
		if f := strings.Fields(in.Args); len(f) == 2 && f[1] == env["STATSBRIDGE_CONFIG"] {
			configSource = f[0]
		}
	}
	if configSource == "" {
		t.Fatalf("no COPY puts a file at STATSBRIDGE_CONFIG=%q", env["STATSBRIDGE_CONFIG"])
	}
	if cmd := df.find("CMD"); len(cmd) != 1 || cmd[0].Args != `["run"]` {
		t.Errorf("CMD %v, want [\"run\"]: the file comes from STATSBRIDGE_CONFIG", cmd)
	}
	imageConfig, err := os.ReadFile(filepath.Join("..", configSource))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ name, config string }{
		{"the image's file", string(imageConfig)},
		{"a user's small file", "shutdown_timeout = \"1s\"\n[[graphite]]\naddress = \"127.0.0.1:1\"\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			httpPort := freePort(t)
			for k, v := range env {
				// The image's ports, made free ones.
				v = strings.NewReplacer(":8125", ":0", ":9102", ":"+strconv.Itoa(httpPort)).Replace(v)
				t.Setenv(k, v)
			}
			r := startRelay(t, tt.config)
			for _, addr := range []string{r.UDP, r.TCP, r.HTTP} {
				if !strings.HasPrefix(addr, "0.0.0.0:") && !strings.HasPrefix(addr, "[::]:") {
					t.Errorf("listens on %s, not on every interface", addr)
				}
			}
			healthcheck := func() error {
				cmd := exec.Command(statsbridgeBin, "healthcheck")
				cmd.Env = append(os.Environ(), "STATSBRIDGE_CONFIG="+filepath.Join(r.configDir, "statsbridge.toml"))
				out, err := cmd.CombinedOutput()
				if err != nil {
					t.Logf("healthcheck: %v: %s", err, out)
				}
				return err
			}
			if err := healthcheck(); err != nil {
				t.Errorf("the HEALTHCHECK fails on a running statsbridge: %v", err)
			}
			r.UDP = strings.Replace(r.UDP, "0.0.0.0", "127.0.0.1", 1)
			r.HTTP = strings.Replace(r.HTTP, "0.0.0.0", "127.0.0.1", 1)
			r.sendUDP(t, "docker.check:1|c")
			eventually(t, 5*time.Second, "a scrape from loopback", func() (bool, string) {
				body := r.scrape(t)
				v, _ := sample(body, "docker_check_total")
				return v == "1", body
			})
			r.stop(t)
			if healthcheck() == nil {
				t.Error("the HEALTHCHECK passes with statsbridge stopped")
			}
		})
	}
}
