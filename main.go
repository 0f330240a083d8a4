// Command statsbridge receives StatsD, keeps it as OpenMetrics metric
// families, and pushes them to Graphite, InfluxDB and Prometheus
// remote-write, and serves them on /metrics.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/statsbridge/statsbridge/config"
	"github.com/statsbridge/statsbridge/model/prosody"
)

// version is set at build time (see build.sh).
var version = "dev"

func main() {
	os.Exit(statsbridge(os.Args, os.Stdout, os.Stderr, run))
}

// statsbridge runs the command line and returns the exit code, writing
// the error that ends it, if any, to stderr with the credentials of the
// URLs it quotes hidden. Once the configuration is read, runCommand hides
// its secret values too.
func statsbridge(args []string, stdout, stderr io.Writer, runFn runner) int {
	err := newApp(stdout, stderr, runFn).Run(args)
	if err == nil {
		return 0
	}
	var exit cli.ExitCoder
	if errors.As(err, &exit) {
		if msg := exit.Error(); msg != "" {
			fmt.Fprintln(stderr, config.Redact(msg))
		}
		return exit.ExitCode()
	}
	fmt.Fprintln(stderr, "statsbridge:", config.Redact(err.Error()))
	return 1
}

// flagEnv names a flag's environment variable: STATSBRIDGE_ and the flag in
// upper case with '.' and '-' as '_'.
func flagEnv(flag string) []string {
	return []string{"STATSBRIDGE_" + strings.NewReplacer(".", "_", "-", "_").Replace(strings.ToUpper(flag))}
}

func runFlags() []cli.Flag {
	str := func(name, usage string) *cli.StringFlag {
		return &cli.StringFlag{Name: name, Usage: usage, EnvVars: flagEnv(name)}
	}
	many := func(name, usage string) *cli.StringSliceFlag {
		return &cli.StringSliceFlag{Name: name, Usage: usage, EnvVars: flagEnv(name)}
	}
	return []cli.Flag{
		str("config", "read configuration from `FILE` (default: the embedded defaults)"),
		str("statsd.udp", "listen for StatsD on UDP `ADDRS` (comma-separated; empty: off)"),
		str("statsd.tcp", "listen for StatsD on TCP `ADDRS` (comma-separated; empty: off)"),
		str("http.listen", "serve /metrics and /healthz on `ADDR` (empty: off)"),
		str("http.allow", "let these `CIDRS` (comma-separated) scrape /metrics"),
		str("flush-interval", "push every `DURATION`"),
		str("log.level", "log at `LEVEL`: debug, info, warn or error"),
		many("graphite", "push to carbon at `ADDR` (repeatable)"),
		many("influx", "push to InfluxDB write `URL` (repeatable)"),
		many("remote-write", "push to Prometheus remote-write `URL` (repeatable)"),
	}
}

// runner runs statsbridge on a configuration until ctx is done.
type runner func(ctx context.Context, cfg config.Config, logger *slog.Logger, h hooks) error

func newApp(stdout, stderr io.Writer, runFn runner) *cli.App {
	action := func(c *cli.Context) error { return runCommand(c, stderr, runFn) }
	return &cli.App{
		Name:            "statsbridge",
		Usage:           "a StatsD relay to Graphite, InfluxDB and Prometheus",
		Version:         version,
		Writer:          stdout,
		ErrWriter:       stderr,
		HideVersion:     true,
		Flags:           runFlags(),
		Action:          action,
		HideHelpCommand: true,
		// main reports errors and exits; the library would exit inside Run.
		ExitErrHandler: func(*cli.Context, error) {},
		Commands: []*cli.Command{
			{
				Name:   "run",
				Usage:  "run the relay (the default command)",
				Flags:  runFlags(),
				Action: action,
			},
			{
				Name:      "check-config",
				Usage:     "check a configuration file and exit",
				ArgsUsage: "FILE",
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return cli.Exit("usage: statsbridge check-config FILE", 2)
					}
					cfg, err := config.Load(c.Args().First())
					if err != nil {
						return cli.Exit(err.Error(), 1)
					}
					if _, _, err := newMappers(cfg, prosody.NewState()); err != nil {
						return cli.Exit(err.Error(), 1)
					}
					fmt.Fprintf(stdout, "%s: ok\n", c.Args().First())
					return nil
				},
			},
			healthcheckCommand(stdout),
			{
				Name:  "version",
				Usage: "print the version",
				Action: func(c *cli.Context) error {
					fmt.Fprintf(stdout, "statsbridge %s\n", version)
					return nil
				},
			},
		},
	}
}

// runCommand loads the configuration, applies the flags and runs until
// SIGTERM or SIGINT. A second signal exits at once.
func runCommand(c *cli.Context, stderr io.Writer, runFn runner) error {
	if c.NArg() > 0 {
		return cli.Exit(fmt.Sprintf("unexpected argument %q (see statsbridge --help)", c.Args().First()), 2)
	}
	cfg, err := loadConfig(c)
	if err != nil {
		return cli.Exit(err.Error(), 1)
	}
	redactor := cfg.Redactor()
	logger := newLogger(stderr, cfg.LogLevel, redactor.Redact)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // the next signal is not caught: it ends the process at once
	}()
	// SIGHUP stays caught until run has returned: its default action would
	// end the process in the middle of a shutdown, before it spools.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	reloads := make(chan config.Config)
	go watchHangups(ctx, c, hup, reloads, logger)
	if err := runFn(ctx, cfg, logger, hooks{reloads: reloads}); err != nil {
		return cli.Exit(redactor.Redact("statsbridge: "+err.Error()), 1)
	}
	return nil
}

// loadConfig reads the file, if any, and lays the flags over it.
func loadConfig(c *cli.Context) (config.Config, error) {
	cfg := config.Default()
	if path := c.String("config"); path != "" {
		var err error
		if cfg, err = config.Load(path); err != nil {
			return cfg, err
		}
	}
	return cfg, applyFlags(c, &cfg)
}

// watchHangups re-reads the configuration on every SIGHUP until ctx is done.
// A file with errors is refused with its errors logged.
func watchHangups(ctx context.Context, c *cli.Context, hup <-chan os.Signal, reloads chan<- config.Config, logger *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		cfg, err := loadConfig(c)
		if err != nil {
			logger.Error("SIGHUP: the configuration has errors; nothing reloaded", "err", err.Error())
			continue
		}
		select {
		case reloads <- cfg:
		case <-ctx.Done():
			return
		}
	}
}

// applyFlags lays the command line over the file. A flag given an empty
// value turns its listener off.
func applyFlags(c *cli.Context, cfg *config.Config) error {
	list := func(flag string, dst *[]string) {
		if c.IsSet(flag) {
			*dst = splitList(c.String(flag))
		}
	}
	list("statsd.udp", &cfg.Statsd.UDP)
	list("statsd.tcp", &cfg.Statsd.TCP)
	list("http.allow", &cfg.HTTP.Allow)
	if c.IsSet("http.listen") {
		cfg.HTTP.Listen = c.String("http.listen")
	}
	if c.IsSet("log.level") {
		cfg.LogLevel = c.String("log.level")
	}
	if c.IsSet("flush-interval") {
		d, err := time.ParseDuration(c.String("flush-interval"))
		if err != nil {
			return fmt.Errorf("--flush-interval: %q is not a duration such as \"10s\"", c.String("flush-interval"))
		}
		cfg.Statsd.FlushInterval = config.Duration(d)
	}
	for _, addr := range c.StringSlice("graphite") {
		g := config.DefaultGraphite()
		g.Address = addr
		cfg.Graphite = append(cfg.Graphite, g)
	}
	for _, u := range c.StringSlice("influx") {
		in := config.DefaultInflux()
		in.URL = u
		cfg.Influx = append(cfg.Influx, in)
	}
	for _, u := range c.StringSlice("remote-write") {
		rw := config.DefaultRemoteWrite()
		rw.URL = u
		cfg.RemoteWrite = append(cfg.RemoteWrite, rw)
	}
	return cfg.Validate()
}

func splitList(s string) []string {
	out := []string{}
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}
