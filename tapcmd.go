package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/statsbridge/statsbridge/config"
	"github.com/statsbridge/statsbridge/tap"
)

// tapCommand connects to a running relay and shows what it receives: a
// live top view in a terminal, plain lines otherwise.
func tapCommand(c *cli.Context, stdout io.Writer) error {
	if err := refuseFlags(c, flagNames(tapCommandFlags()...)...); err != nil {
		return err
	}
	if c.NArg() > 0 {
		return cli.Exit(fmt.Sprintf("statsbridge tap: unexpected argument %q (see statsbridge tap --help)", c.Args().First()), 2)
	}
	cl := commandLine{c}
	cfg := config.Default()
	if path, _ := cl.lookup("config"); path != "" {
		var err error
		if cfg, err = config.Load(path); err != nil {
			return cli.Exit(err.Error(), 1)
		}
	}
	if v, ok := cl.lookup("http.listen"); ok {
		cfg.HTTP.Listen = v
	}
	target, err := tapURL(cfg.HTTP.Listen)
	if err != nil {
		return cli.Exit("statsbridge tap: "+err.Error(), 2)
	}
	match, _ := cl.lookup("match")
	expr, _ := cl.lookup("regexp")
	if _, err := tap.Filter(match, expr); err != nil {
		return cli.Exit("statsbridge tap: "+err.Error(), 2)
	}
	q := url.Values{}
	if match != "" {
		q.Set("match", match)
	}
	if expr != "" {
		q.Set("regexp", expr)
	}
	target.RawQuery = q.Encode()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	opts := tap.Options{URL: target.String(), Out: stdout}
	if f, ok := stdout.(*os.File); ok && isTerminal(f) {
		opts.Size = func() (int, int) { return terminalSize(f) }
	}
	if err := tap.Watch(ctx, opts); err != nil {
		return cli.Exit("statsbridge tap: "+config.Redact(err.Error()), 1)
	}
	return nil
}

// tapURL is the tap endpoint of a relay that listens on addr: a relay that
// listens on every interface is reached on loopback.
func tapURL(addr string) (*url.URL, error) {
	if addr == "" {
		return nil, fmt.Errorf("the relay serves no HTTP: http.listen is empty (give --http.listen ADDR or --config FILE)")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("http.listen %q is not a host:port address", addr)
	}
	switch ip := net.ParseIP(host); {
	case host == "" || (ip != nil && ip.IsUnspecified() && ip.To4() != nil):
		host = "127.0.0.1"
	case ip != nil && ip.IsUnspecified():
		host = "::1"
	}
	return &url.URL{Scheme: "http", Host: net.JoinHostPort(host, port), Path: "/-/tap"}, nil
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
	return err == nil
}

func terminalSize(f *os.File) (width, height int) {
	ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
	if err != nil || ws.Col == 0 || ws.Row == 0 {
		return 80, 24
	}
	return int(ws.Col), int(ws.Row)
}
