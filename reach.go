package main

import (
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/statsbridge/statsbridge/config"
	"github.com/statsbridge/statsbridge/sinks"
)

// How each push sink reaches its backend: TLS, a proxy, credentials.

// sinkTLS reads a sink's TLS files. A sink that checks no certificate is
// said so at start, as a warning: anyone on the path can read and change
// what it sends.
func sinkTLS(name string, t config.TLS, logger *slog.Logger) (*tls.Config, error) {
	c, err := sinks.NewTLSConfig(sinks.TLSFiles{CAFile: t.CAFile, CertFile: t.CertFile, KeyFile: t.KeyFile,
		ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify})
	if err != nil {
		return nil, fmt.Errorf("%s.tls: %w", name, err)
	}
	if t.InsecureSkipVerify {
		logger.Warn("tls.insecure_skip_verify is on: the backend's certificate is not checked, so anyone between statsbridge and it can read and change what is sent",
			"sink", name)
	}
	return c, nil
}

// graphiteTLS is a graphite sink's TLS configuration, or nil for plaintext.
func graphiteTLS(name string, t config.GraphiteTLS, logger *slog.Logger) (*tls.Config, error) {
	if !t.Enabled {
		return nil, nil
	}
	return sinkTLS(name, t.TLS, logger)
}

// httpClientOptions say how an HTTP sink's requests reach its backend.
func httpClientOptions(name string, timeout time.Duration, c config.HTTPClient, logger *slog.Logger) (sinks.ClientOptions, error) {
	o := sinks.ClientOptions{Timeout: timeout}
	if c.TLS != (config.TLS{}) {
		var err error
		if o.TLS, err = sinkTLS(name, c.TLS, logger); err != nil {
			return o, err
		}
	}
	if c.ProxyURL != "" {
		u, err := url.Parse(c.ProxyURL) // validated
		if err != nil {
			return o, fmt.Errorf("%s.proxy_url: %w", name, err)
		}
		o.Proxy = u
	}
	return o, nil
}

// remoteWriteHeaders are a remote-write sink's own headers and its
// credentials: a bearer token or basic authentication (validation allows
// one).
func remoteWriteHeaders(rw config.RemoteWrite) map[string]string {
	headers := map[string]string{}
	for k, v := range rw.Headers {
		headers[k] = v.Reveal()
	}
	if rw.BearerToken != "" {
		headers["Authorization"] = "Bearer " + rw.BearerToken.Reveal()
	}
	if rw.Username != "" {
		headers["Authorization"] = "Basic " + base64.StdEncoding.EncodeToString([]byte(rw.Username+":"+rw.Password.Reveal()))
	}
	return headers
}
