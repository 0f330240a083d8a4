package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/statsbridge/statsbridge/config"
)

// healthcheckCommand asks a running statsbridge whether it is up: a GET of
// /healthz on the HTTP listener its configuration names. A container image
// has no curl, so its HEALTHCHECK runs this.
func healthcheckCommand(stdout io.Writer) *cli.Command {
	return &cli.Command{
		Name:  "healthcheck",
		Usage: "exit 0 if the statsbridge of this configuration answers on /healthz, 1 if not",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Usage: "the running statsbridge's configuration `FILE` (default: the embedded defaults)", EnvVars: []string{flagEnv("config")}},
			&cli.StringFlag{Name: "http.listen", Usage: "its HTTP listener `ADDR`, as given to it", EnvVars: []string{flagEnv("http.listen")}},
			&cli.DurationFlag{Name: "timeout", Usage: "give up after `DURATION`", Value: 5 * time.Second},
		},
		Action: func(c *cli.Context) error {
			cfg := config.Default()
			if path := c.String("config"); path != "" {
				var err error
				if cfg, err = config.Load(path); err != nil {
					return cli.Exit(err.Error(), 1)
				}
			}
			if c.IsSet("http.listen") {
				cfg.HTTP.Listen = c.String("http.listen")
			}
			u, err := healthzURL(cfg.HTTP.Listen)
			if err != nil {
				return cli.Exit("statsbridge healthcheck: "+err.Error(), 1)
			}
			if err := getHealthz(c.Context, u, c.Duration("timeout")); err != nil {
				return cli.Exit("statsbridge healthcheck: "+err.Error(), 1)
			}
			fmt.Fprintln(stdout, "ok")
			return nil
		},
	}
}

// healthzURL is where the HTTP listener at listen answers /healthz. A
// listener on every interface is reached on loopback.
func healthzURL(listen string) (string, error) {
	if listen == "" {
		return "", fmt.Errorf("the HTTP listener is off (http.listen = \"\"): nothing answers /healthz")
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("http.listen %q: %v", listen, err)
	}
	switch ip := net.ParseIP(host); {
	case host == "", ip != nil && ip.Equal(net.IPv4zero):
		host = "127.0.0.1"
	case ip != nil && ip.Equal(net.IPv6unspecified):
		host = "::1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/healthz", nil
}

func getHealthz(ctx context.Context, u string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	// No proxy from the environment: the listener is on this machine.
	resp, err := (&http.Client{Transport: &http.Transport{}}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %s", u, resp.Status)
	}
	return nil
}
