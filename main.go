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
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	"github.com/xrash/smetrics"

	"github.com/statsbridge/statsbridge/config"
)

// version is set at build time (see build.sh).
var version = "dev"

// buildVersion is the version build.sh set, or else the module's version
// that `go install github.com/statsbridge/statsbridge@v1.2.3` records.
func buildVersion() string {
	if version != "dev" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return version
}

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

// flagSpec is one command-line flag: its name, what it does, and the
// default --help shows (from the embedded defaults).
type flagSpec struct {
	name, usage, def string
	repeatable       bool
}

// flagEnv names a flag's environment variable: STATSBRIDGE_ and the flag in
// upper case with '.' and '-' as '_'.
func flagEnv(flag string) string {
	return "STATSBRIDGE_" + strings.NewReplacer(".", "_", "-", "_").Replace(strings.ToUpper(flag))
}

// globalFlags mean the same to every command.
func globalFlags() []flagSpec {
	d := config.Default()
	return []flagSpec{
		{name: "config", usage: "read the configuration from `FILE`; relative paths in it are read from its directory", def: "the embedded defaults"},
		{name: "log.level", usage: "log at `LEVEL`: debug (also each new name and what it maps to), info, warn or error", def: d.LogLevel},
		{name: "log.format", usage: "write the log as `FORMAT`: text or json", def: d.LogFormat},
	}
}

// relayFlags lay the common settings over the file, for run and for
// check-config (which checks what run would use).
func relayFlags() []flagSpec {
	d := config.Default()
	return []flagSpec{
		{name: "statsd.udp", usage: "listen for StatsD on UDP `ADDRS` (comma-separated; empty: off)", def: strings.Join(d.Statsd.UDP, ",")},
		{name: "statsd.tcp", usage: "listen for StatsD on TCP `ADDRS` (comma-separated; empty: off)", def: strings.Join(d.Statsd.TCP, ",")},
		{name: "http.listen", usage: "serve /metrics, /healthz and the admin endpoints on `ADDR` (empty: off)", def: d.HTTP.Listen},
		{name: "http.allow", usage: "let these `CIDRS` (comma-separated) scrape /metrics", def: strings.Join(d.HTTP.Allow, ",")},
		{name: "flush-interval", usage: "push every `DURATION`", def: d.Statsd.FlushInterval.D().String()},
		{name: "graphite", usage: "push to carbon at `ADDR` (repeatable)", def: "none", repeatable: true},
		{name: "influx", usage: "push to InfluxDB write `URL` (repeatable)", def: "none", repeatable: true},
		{name: "remote-write", usage: "push to Prometheus remote-write `URL` (repeatable)", def: "none", repeatable: true},
	}
}

// tapCommandFlags are every flag statsbridge tap takes: the global ones,
// http.listen (where the relay is), and its own.
func tapCommandFlags() [][]flagSpec {
	var listen []flagSpec
	for _, f := range relayFlags() {
		if f.name == "http.listen" {
			listen = append(listen, f)
		}
	}
	return [][]flagSpec{globalFlags(), listen, tapFlags()}
}

// tapFlags choose what statsbridge tap shows.
func tapFlags() []flagSpec {
	return []flagSpec{
		{name: "match", usage: "show only names (as sent, or their family) that match the `GLOB` (* any run of characters, ? one)", def: "all"},
		{name: "regexp", usage: "show only names (as sent, or their family) that match the `REGEXP`", def: "all"},
	}
}

// cliFlags turns specs into urfave/cli flags. The environment variables
// are read by commandLine rather than by the library, so that a flag given
// on the command line wins over its variable wherever it stands.
func cliFlags(specs ...[]flagSpec) []cli.Flag {
	var out []cli.Flag
	for _, s := range slices.Concat(specs...) {
		usage := fmt.Sprintf("%s (default: %s) [$%s]", s.usage, s.def, flagEnv(s.name))
		if s.repeatable {
			out = append(out, &cli.StringSliceFlag{Name: s.name, Usage: usage})
		} else {
			out = append(out, &cli.StringFlag{Name: s.name, Usage: usage})
		}
	}
	return out
}

// runner runs statsbridge on a configuration until ctx is done.
type runner func(ctx context.Context, cfg config.Config, logger *slog.Logger, h hooks) error

func newApp(stdout, stderr io.Writer, runFn runner) *cli.App {
	runAction := func(c *cli.Context) error { return runCommand(c, stderr, runFn) }
	app := &cli.App{
		Name:      "statsbridge",
		Usage:     "a StatsD relay to Graphite, InfluxDB and Prometheus",
		UsageText: "statsbridge [flags] [command [flags] [arguments]]\n\nEvery flag may stand before the command or after it.",
		// --version and the version command print "statsbridge version
		// <version> (<Go version>)", as statsbridge_build_info tells them.
		Version:   buildVersion() + " (" + runtime.Version() + ")",
		Reader:    os.Stdin,
		Writer:    stdout,
		ErrWriter: stderr,
		Flags:     cliFlags(globalFlags(), relayFlags()),
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return unknownCommand(c, c.Args().First())
			}
			return runAction(c)
		},
		OnUsageError: usageError,
		// main reports errors and exits; the library would exit inside Run.
		ExitErrHandler: func(*cli.Context, error) {},
		Commands: []*cli.Command{
			{
				Name:         "run",
				Usage:        "run the relay (the default command)",
				Flags:        cliFlags(globalFlags(), relayFlags()),
				Action:       runAction,
				OnUsageError: usageError,
			},
			{
				Name:  "check-config",
				Usage: "check a configuration (with the flags run would lay over it) and exit",
				Description: "With --names, read StatsD lines or names from stdin, one a line, and print what each would become:\n" +
					"family, labels and type, and the mapping rule or Prosody catalog entry that decided (a name without\n" +
					"a type is read as a counter).",
				ArgsUsage:    "[FILE]",
				Flags:        append(cliFlags(globalFlags(), relayFlags()), &cli.BoolFlag{Name: "names", Usage: "dry-run the mapping of the names on stdin"}),
				Action:       func(c *cli.Context) error { return checkConfig(c, stdout) },
				OnUsageError: usageError,
			},
			{
				Name:  "tap",
				Usage: "show what a running statsbridge receives and what each name becomes",
				Description: "Connects to the relay's HTTP port (http.listen of --config, or --http.listen), which must allow this\n" +
					"address in http.admin_allow. In a terminal it shows a live top view: names by rate, bad lines, refused\n" +
					"series, and each sink's state; otherwise it prints a line for each name as it arrives.",
				Flags:        cliFlags(tapCommandFlags()...),
				Action:       func(c *cli.Context) error { return tapCommand(c, stdout) },
				OnUsageError: usageError,
			},
			healthcheckCommand(stdout),
			{
				Name:  "version",
				Usage: "print the version",
				Action: func(c *cli.Context) error {
					if err := refuseFlags(c); err != nil {
						return err
					}
					cli.ShowVersion(c)
					return nil
				},
			},
		},
	}
	return app
}

// commandLine reads flags wherever they were given: before the command, after
// it, or in the environment. The command line wins over the environment;
// after the command wins over before it; a repeatable flag adds up.
type commandLine struct{ c *cli.Context }

// given returns the contexts in which the flag was written on the command
// line, outermost first.
func (cl commandLine) given(name string) []*cli.Context {
	var out []*cli.Context
	for _, ctx := range cl.c.Lineage() {
		if ctx.Command != nil && slices.Contains(ctx.LocalFlagNames(), name) {
			out = append([]*cli.Context{ctx}, out...)
		}
	}
	return out
}

// lookup returns a flag's value and whether it was set at all.
func (cl commandLine) lookup(name string) (string, bool) {
	if given := cl.given(name); len(given) > 0 {
		return given[len(given)-1].String(name), true
	}
	return os.LookupEnv(flagEnv(name))
}

// list returns every value of a repeatable flag.
func (cl commandLine) list(name string) []string {
	given := cl.given(name)
	if len(given) == 0 {
		if env, ok := os.LookupEnv(flagEnv(name)); ok {
			return splitList(env)
		}
		return nil
	}
	var out []string
	for _, ctx := range given {
		out = append(out, ctx.StringSlice(name)...)
	}
	return out
}

// refuseFlags refuses any flag given on the command line, before the command
// or after it, that the command does not take (a run flag given to tap, say):
// a flag is never silently ignored.
func refuseFlags(c *cli.Context, takes ...string) error {
	for _, ctx := range c.Lineage() {
		if ctx.Command == nil {
			continue
		}
		for _, name := range ctx.LocalFlagNames() {
			if !slices.Contains(takes, name) {
				return cli.Exit(fmt.Sprintf("statsbridge %s does not take --%s (see statsbridge %s --help)", c.Command.Name, name, c.Command.Name), 2)
			}
		}
	}
	return nil
}

func flagNames(specs ...[]flagSpec) []string {
	var out []string
	for _, s := range slices.Concat(specs...) {
		out = append(out, s.name)
	}
	return out
}

// usageError turns a parse error into an exit with a suggestion for a
// mistyped flag.
func usageError(c *cli.Context, err error, _ bool) error {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		flags := c.App.Flags
		if c.Command != nil && c.Command.Name != "" && c.Command.Name != c.App.Name {
			flags = c.Command.Flags
		}
		var names []string
		for _, f := range flags {
			names = append(names, f.Names()...)
		}
		name = strings.TrimLeft(name, "-")
		msg = fmt.Sprintf("unknown flag --%s", name)
		if s := closest(name, names); s != "" {
			msg += fmt.Sprintf("; did you mean --%s?", s)
		}
	}
	return cli.Exit("statsbridge: "+msg+" (see statsbridge --help)", 2)
}

// unknownCommand refuses an argument where a command was expected, with
// the command it was probably meant to be.
func unknownCommand(c *cli.Context, arg string) error {
	var names []string
	for _, cmd := range c.App.Commands {
		names = append(names, cmd.Names()...)
	}
	msg := fmt.Sprintf("statsbridge: no command %q", arg)
	if s := closest(arg, names); s != "" {
		msg += fmt.Sprintf("; did you mean %q?", s)
	}
	return cli.Exit(msg+" (see statsbridge --help)", 2)
}

// closest returns the candidate nearest to a mistyped word, or "" when
// none is near enough to be what was meant: close by Jaro-Winkler (as
// urfave/cli measures), or the same letters in another order (Jaro-Winkler
// scores a transposition in a short word low: "rnu").
func closest(word string, candidates []string) string {
	best, bestScore := "", 0.8
	for _, c := range candidates {
		if sameLetters(word, c) {
			return c
		}
		if score := smetrics.JaroWinkler(word, c, 0.7, 4); score > bestScore {
			best, bestScore = c, score
		}
	}
	return best
}

func sameLetters(a, b string) bool {
	x, y := []rune(a), []rune(b)
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(x, y)
}

// runCommand loads the configuration, applies the flags and runs until
// SIGTERM or SIGINT. A second signal exits at once.
func runCommand(c *cli.Context, stderr io.Writer, runFn runner) error {
	if c.NArg() > 0 {
		return cli.Exit(fmt.Sprintf("statsbridge: unexpected argument %q (flags go before arguments; see statsbridge --help)", c.Args().First()), 2)
	}
	cl := commandLine{c}
	path, _ := cl.lookup("config")
	cfg, err := loadConfig(cl, path)
	if err != nil {
		return cli.Exit(err.Error(), 1)
	}
	logs := newLogOutput(stderr)
	logs.apply(cfg)
	logger := logs.logger()

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
	reloads := make(chan reloadRequest)
	go watchHangups(ctx, hup, reloads)
	h := hooks{
		reloads: reloads,
		reread:  func() (config.Config, error) { return loadConfig(cl, path) },
		logs:    logs,
	}
	if err := runFn(ctx, cfg, logger, h); err != nil {
		return cli.Exit(logs.redact("statsbridge: "+err.Error()), 1)
	}
	return nil
}

// loadConfig reads the file, if any, and lays the flags over it.
func loadConfig(cl commandLine, path string) (config.Config, error) {
	cfg := config.Default()
	if path != "" {
		var err error
		if cfg, err = config.Load(path); err != nil {
			return cfg, err
		}
	}
	return cfg, applyFlags(cl, &cfg)
}

// watchHangups asks for a reload on every SIGHUP until ctx is done.
func watchHangups(ctx context.Context, hup <-chan os.Signal, reloads chan<- reloadRequest) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		select {
		case reloads <- reloadRequest{source: "SIGHUP"}:
		case <-ctx.Done():
			return
		}
	}
}

// applyFlags lays the command line over the file. A flag given an empty
// value turns its listener off.
func applyFlags(cl commandLine, cfg *config.Config) error {
	set := func(flag string, apply func(string)) {
		if v, ok := cl.lookup(flag); ok {
			apply(v)
		}
	}
	set("statsd.udp", func(v string) { cfg.Statsd.UDP = splitList(v) })
	set("statsd.tcp", func(v string) { cfg.Statsd.TCP = splitList(v) })
	set("http.allow", func(v string) { cfg.HTTP.Allow = splitList(v) })
	set("http.listen", func(v string) { cfg.HTTP.Listen = v })
	set("log.level", func(v string) { cfg.LogLevel = v })
	set("log.format", func(v string) { cfg.LogFormat = v })
	var flushErr error
	set("flush-interval", func(v string) {
		d, err := time.ParseDuration(v)
		if err != nil {
			flushErr = fmt.Errorf("--flush-interval: %q is not a duration such as \"10s\"", v)
		}
		cfg.Statsd.FlushInterval = config.Duration(d)
	})
	if flushErr != nil {
		return flushErr
	}
	for _, addr := range cl.list("graphite") {
		g := config.DefaultGraphite()
		g.Address = addr
		cfg.Graphite = append(cfg.Graphite, g)
	}
	for _, u := range cl.list("influx") {
		in := config.DefaultInflux()
		in.URL = u
		cfg.Influx = append(cfg.Influx, in)
	}
	for _, u := range cl.list("remote-write") {
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
