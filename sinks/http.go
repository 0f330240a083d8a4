package sinks

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Answer is what an HTTP backend said to a write.
type Answer struct {
	Status     int
	Body       string // the first KiB, for logs and classification
	RetryAfter time.Duration
}

func (a Answer) String() string {
	return fmt.Sprintf("HTTP %d %s", a.Status, strings.TrimSpace(a.Body))
}

// Post sends one write request. A network error is returned as is (and is
// retryable); any answer is returned for the sink to classify.
func Post(ctx context.Context, c *http.Client, url string, header http.Header, body []byte) (Answer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return Answer{}, &Failure{Outcome: Permanent, Err: err}
	}
	req.Header = header.Clone()
	resp, err := c.Do(req)
	if err != nil {
		return Answer{}, err
	}
	defer resp.Body.Close()
	text, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // lets the connection be reused
	return Answer{Status: resp.StatusCode, Body: string(text), RetryAfter: retryAfter(resp.Header.Get("Retry-After"))}, nil
}

// retryAfter reads Retry-After in seconds or as an HTTP date.
func retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64); err == nil && s > 0 {
		// Anything past a few days is capped later anyway; this keeps a
		// huge number from overflowing a Duration.
		return time.Duration(min(s, 1<<24)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}

// StatusError is an answer that is not a success.
type StatusError struct{ Answer }

func (e *StatusError) Error() string { return e.Answer.String() }

// Classify is the default reading of an answer: 2xx delivered; 400, 413
// and 422 refuse the content; 429 throttles; 5xx and 408 are the server's
// trouble; any other code (401, 403, 404 ...) says this sink is configured
// wrong. The policy decides what each means (see Policy.Decide).
func Classify(a Answer) error {
	f := &Failure{Err: &StatusError{a}, RetryAfter: a.RetryAfter}
	switch {
	case a.Status >= 200 && a.Status < 300:
		return nil
	case a.Status == http.StatusBadRequest, a.Status == http.StatusRequestEntityTooLarge,
		a.Status == http.StatusUnprocessableEntity:
		f.Outcome = Refused
	case a.Status == http.StatusTooManyRequests:
		f.Outcome = Throttled
	case a.Status >= 500, a.Status == http.StatusRequestTimeout:
		f.Outcome = ServerError
	default:
		f.Outcome = ConfigError
	}
	return f
}

// ClientOptions say how an HTTP sink reaches its backend.
type ClientOptions struct {
	// Timeout bounds every request.
	Timeout time.Duration
	// TLS is for an https:// backend; nil is Go's default.
	TLS *tls.Config
	// Proxy is an http, https or socks5 proxy; nil takes HTTPS_PROXY,
	// HTTP_PROXY and NO_PROXY from the environment.
	Proxy *url.URL
}

// NewHTTPClient returns a client for one sink.
func NewHTTPClient(o ClientOptions) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.ResponseHeaderTimeout = o.Timeout
	if o.TLS != nil {
		t.TLSClientConfig = o.TLS
	}
	if o.Proxy != nil {
		t.Proxy = http.ProxyURL(o.Proxy)
	}
	return &http.Client{Transport: t, Timeout: o.Timeout}
}
