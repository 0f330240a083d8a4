package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// serverSpec is one server of the comparison: a kind, the binary that runs
// it and, for statsbridge, its read_cork.
type serverSpec struct {
	label string
	kind  string
	bin   string
	cork  string
}

// parseServers reads [label=]kind[:bin=PATH][:cork=DURATION],...
func parseServers(list string) ([]serverSpec, error) {
	var specs []serverSpec
	for _, item := range strings.Split(list, ",") {
		item = strings.TrimSpace(item)
		sp := serverSpec{label: item}
		if label, rest, ok := strings.Cut(item, "="); ok && !strings.Contains(label, ":") {
			sp.label, item = label, rest
		}
		parts := strings.Split(item, ":")
		sp.kind = parts[0]
		if sp.kind != statsbridge && sp.kind != statsdExporter {
			return nil, fmt.Errorf("server %q: the kind is statsbridge or statsd_exporter", item)
		}
		for _, opt := range parts[1:] {
			key, value, _ := strings.Cut(opt, "=")
			switch key {
			case "bin":
				sp.bin = value
			case "cork":
				if sp.kind != statsbridge {
					return nil, fmt.Errorf("server %q: only statsbridge has a read_cork", item)
				}
				sp.cork = value
			default:
				return nil, fmt.Errorf("server %q: unknown option %q", item, key)
			}
		}
		if !strings.Contains(item, ":cork=") && sp.kind == statsbridge {
			sp.cork = "1ms"
		}
		specs = append(specs, sp)
	}
	return specs, nil
}

// build makes the binary a spec without bin= runs: statsbridge from the
// repository's working tree (go build caches what did not change), and
// statsd_exporter with go install, once per version, into the cache.
func (sp *serverSpec) build(repo, cache, exporterVersion string) error {
	if sp.bin != "" {
		return nil
	}
	cache, err := filepath.Abs(cache)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return err
	}
	switch sp.kind {
	case statsbridge:
		sp.bin = filepath.Join(cache, "statsbridge")
		cmd := exec.Command("go", "build", "-o", sp.bin, ".")
		cmd.Dir = repo
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("building statsbridge in %s: %w", repo, err)
		}
	case statsdExporter:
		dir, err := filepath.Abs(filepath.Join(cache, "statsd_exporter-"+exporterVersion))
		if err != nil {
			return err
		}
		sp.bin = filepath.Join(dir, "statsd_exporter")
		if _, err := os.Stat(sp.bin); err == nil {
			return nil
		}
		cmd := exec.Command("go", "install", "github.com/prometheus/statsd_exporter@"+exporterVersion)
		cmd.Env = append(os.Environ(), "GOBIN="+dir)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("go install statsd_exporter@%s: %w", exporterVersion, err)
		}
	}
	return nil
}
