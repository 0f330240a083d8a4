package e2e

import (
	"bufio"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/statsbridge/statsbridge/config"
)

// TestSystemdUnitVerifiesAndIsHardened: systemd-analyze verify finds
// nothing wrong with examples/systemd/statsbridge.service (its ExecStart
// pointed at the binary under test), its offline security review rates it
// at most 2.0 of 10, and it keeps the hardening it promises.
func TestSystemdUnitVerifiesAndIsHardened(t *testing.T) {
	analyze := need(t, "systemd-analyze")
	unit, err := os.ReadFile("../examples/systemd/statsbridge.service")
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string][]string{}
	for _, line := range strings.Split(string(unit), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			settings[k] = append(settings[k], v)
		}
	}
	for key, want := range map[string]string{
		"DynamicUser": "yes", "ProtectSystem": "strict", "StateDirectory": "statsbridge",
		"CapabilityBoundingSet": "", "AmbientCapabilities": "", "NoNewPrivileges": "yes",
		"ExecReload": "/bin/kill -HUP $MAINPID",
	} {
		if got := settings[key]; len(got) != 1 || got[0] != want {
			t.Errorf("%s=%q, want %q", key, got, want)
		}
	}
	exec0 := strings.Fields(settings["ExecStart"][0])
	if exec0[0] != "/usr/local/bin/statsbridge" || exec0[1] != "run" {
		t.Errorf("ExecStart=%v", exec0)
	}
	// verify wants ExecStart's binary to exist.
	path := filepath.Join(t.TempDir(), "statsbridge.service")
	write(t, path, strings.ReplaceAll(string(unit), "/usr/local/bin/statsbridge", statsbridgeBin))
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, path) || strings.Contains(line, "statsbridge.service") {
			t.Errorf("systemd-analyze verify: %s", line)
		}
	}
	out, err = exec.Command(analyze, "security", "--offline=yes", "--threshold=20", path).CombinedOutput()
	if err != nil {
		t.Errorf("systemd-analyze security rates the unit above 2.0: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "Overall exposure level for statsbridge.service") {
		t.Errorf("no rating:\n%s", out)
	}
}

// TestSysctlFileGrantsTheReadBuffer: the sysctl.d file beside the unit
// raises a real kernel setting, net.core.rmem_max, at least to the
// read_buffer statsbridge asks for by default.
func TestSysctlFileGrantsTheReadBuffer(t *testing.T) {
	f, err := os.Open("../examples/systemd/60-statsbridge.conf")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	found := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok {
			t.Errorf("%q is not key = value", line)
			continue
		}
		if _, err := os.Stat("/proc/sys/" + strings.ReplaceAll(k, ".", "/")); err != nil {
			t.Errorf("%s is no kernel setting here: %v", k, err)
		}
		if k == "net.core.rmem_max" {
			found = true
			n, err := strconv.ParseInt(v, 10, 64)
			if want := int64(config.Default().Statsd.ReadBuffer); err != nil || n < want {
				t.Errorf("net.core.rmem_max = %s, want at least the default read_buffer, %d", v, want)
			}
		}
	}
	if !found {
		t.Error("the file does not set net.core.rmem_max")
	}
}

// TestReleaseBuild: build.sh release cross-builds static binaries for
// linux/amd64 and linux/arm64, named with the version, and SHA256SUMS
// holds the sum of each.
func TestReleaseBuild(t *testing.T) {
	dir := t.TempDir()
	build := exec.Command("../build.sh", "release", dir)
	build.Env = append(os.Environ(), "VERSION=v9.9.9-test")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build.sh release: %v\n%s", err, out)
	}
	sums, err := os.ReadFile(filepath.Join(dir, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(sums)), "\n") {
		sum, name, ok := strings.Cut(line, "  ")
		if !ok {
			t.Fatalf("SHA256SUMS line %q is not sha256sum's", line)
		}
		listed[name] = sum
	}
	for arch, machine := range map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64} {
		name := "statsbridge-v9.9.9-test-linux-" + arch
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		sum := sha256.Sum256(data)
		if listed[name] != hex.EncodeToString(sum[:]) {
			t.Errorf("%s: SHA256SUMS says %q, the file's sum is %x", name, listed[name], sum)
		}
		f, err := elf.Open(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if f.Machine != machine {
			t.Errorf("%s is for %v", name, f.Machine)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("%s is dynamically linked", name)
			}
		}
		f.Close()
	}
	if len(listed) != 2 {
		t.Errorf("SHA256SUMS lists %v", listed)
	}
}

// TestGoInstallPath: the README's go install
// github.com/statsbridge/statsbridge@latest names the module's main
// package, so the binary it installs is called statsbridge.
func TestGoInstallPath(t *testing.T) {
	out, err := exec.Command("go", "list", "-C", "..", "-f", "{{.Name}} {{.ImportPath}} {{.Module.Path}}", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(out)); got != "main github.com/statsbridge/statsbridge github.com/statsbridge/statsbridge" {
		t.Errorf("go list: %q", got)
	}
	readme, _ := os.ReadFile("../README.md")
	if !strings.Contains(string(readme), "go install github.com/statsbridge/statsbridge@latest") {
		t.Error("the README does not say how to install from source")
	}
}
