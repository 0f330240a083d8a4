package e2e

// No Docker engine runs where these tests run, so the Dockerfile is tested
// in parts: its build step is build.sh (which built the binary under test),
// the binary is static, and the configuration it bakes in starts and serves.

import (
	"debug/elf"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

func readDockerfile(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestDockerfileBuildsWithBuildScript(t *testing.T) {
	df := readDockerfile(t)
	if !regexp.MustCompile(`(?m)^RUN \./build\.sh /out/statsbridge$`).MatchString(df) {
		t.Error("the build stage does not run ./build.sh")
	}
	if !regexp.MustCompile(`(?m)^EXPOSE 8125/udp 8125/tcp 9102/tcp$`).MatchString(df) {
		t.Error("EXPOSE is not 8125/udp 8125/tcp 9102/tcp")
	}
	if m := regexp.MustCompile(`(?m)^USER (\S+)`).FindStringSubmatch(df); m == nil || strings.HasPrefix(m[1], "root") || strings.HasPrefix(m[1], "0") {
		t.Errorf("the image does not run as a non-root user: %v", m)
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

// TestDockerConfigListensEverywhere starts the binary on the configuration
// the image bakes in (with the ports made free ones) and scrapes it.
func TestDockerConfigListensEverywhere(t *testing.T) {
	df := readDockerfile(t)
	m := regexp.MustCompile(`(?s)COPY <<'EOF' (\S+)\n(.*?)\nEOF\n`).FindStringSubmatch(df)
	if m == nil {
		t.Fatal("no configuration heredoc in the Dockerfile")
	}
	if !strings.Contains(df, `CMD ["run", "--config", "`+m[1]+`"]`) {
		t.Errorf("CMD does not use the baked-in %s", m[1])
	}
	cfg := strings.NewReplacer(":8125", ":0", ":9102", ":0").Replace(m[2])
	r := startRelay(t, cfg)
	for _, addr := range []string{r.UDP, r.TCP, r.HTTP} {
		if !strings.HasPrefix(addr, "0.0.0.0:") && !strings.HasPrefix(addr, "[::]:") {
			t.Errorf("listens on %s, not on every interface", addr)
		}
	}
	r.HTTP = strings.Replace(r.HTTP, "0.0.0.0", "127.0.0.1", 1)
	r.UDP = strings.Replace(r.UDP, "0.0.0.0", "127.0.0.1", 1)
	r.sendUDP(t, "docker.check:1|c")
	eventually(t, 5*time.Second, "a scrape through the allow-list", func() (bool, string) {
		body := r.scrape(t)
		v, _ := sample(body, "docker_check_total")
		return v == "1", body
	})
	r.stop(t)
}
