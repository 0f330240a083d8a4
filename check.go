package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"

	"github.com/urfave/cli/v2"

	"github.com/statsbridge/statsbridge/config"
	"github.com/statsbridge/statsbridge/ingest"
	"github.com/statsbridge/statsbridge/model"
	"github.com/statsbridge/statsbridge/model/prosody"
	"github.com/statsbridge/statsbridge/tap"
)

// checkConfig checks a configuration as run would use it: the file, with the
// flags laid over it, and its mapping. With --names it then dry-runs the
// mapping on the names read from stdin.
func checkConfig(c *cli.Context, stdout io.Writer) error {
	cl := commandLine{c}
	path, _ := cl.lookup("config")
	flagGiven := len(cl.given("config")) > 0
	switch {
	case c.NArg() > 1:
		return cli.Exit(fmt.Sprintf("statsbridge check-config: unexpected argument %q (flags go before FILE)", c.Args().Get(1)), 2)
	case c.NArg() == 1 && flagGiven && c.Args().First() != path:
		return cli.Exit("statsbridge check-config: two files given, --config and FILE: give one", 2)
	case c.NArg() == 1:
		path = c.Args().First()
	case path == "":
		return cli.Exit("usage: statsbridge check-config FILE (or --config FILE)", 2)
	}
	cfg, err := loadConfig(cl, path)
	if err != nil {
		return cli.Exit(err.Error(), 1)
	}
	mappers, observers, err := newMappers(cfg, prosody.NewState())
	if err != nil {
		return cli.Exit(err.Error(), 1)
	}
	fmt.Fprintf(stdout, "%s: ok\n", path)
	if c.Bool("names") {
		opts := modelOptions(cfg)
		opts.Mappers, opts.Observers = mappers, observers
		return explainNames(c.App.Reader, stdout, cfg, model.New(opts))
	}
	return nil
}

// explainNames prints, for each StatsD line or bare name read from in, what
// the model would make of it. A bare name is read as a counter.
func explainNames(in io.Reader, out io.Writer, cfg config.Config, m *model.Model) error {
	parser := ingest.Parser{Dialect: dialect(cfg)}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), int(cfg.Statsd.MaxLine)+2)
	w := bufio.NewWriter(out)
	defer w.Flush()
	var smp ingest.Sample
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		reason := parser.Parse(line, &smp)
		if reason == ingest.ReasonMissingType && !bytes.ContainsRune(line, '|') {
			reason = parser.Parse(append(bytes.Clone(line), ":1|c"...), &smp)
		}
		if reason != ingest.ReasonNone {
			fmt.Fprintf(w, "%s -> bad line (%s)\n", line, reason)
			continue
		}
		fmt.Fprintln(w, tap.Describe(&smp, m.Explain(&smp), 1).String())
	}
	if err := sc.Err(); err != nil {
		return cli.Exit("statsbridge check-config: reading names: "+err.Error(), 1)
	}
	return nil
}
