package sinks

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
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
		return Answer{}, &Permanent{Err: err}
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
	if s, err := strconv.Atoi(v); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}

// StatusError is an answer that is not a success.
type StatusError struct{ Answer }

func (e *StatusError) Error() string { return e.Answer.String() }

// Classify is the default reading of an answer: 2xx delivered; 400 and 413
// refuse the content (split the batch); 429 and 5xx are worth a retry, after
// Retry-After when given; other codes (401, 403, 404: configuration errors)
// are retried too, so that nothing is lost while an operator mends them.
func Classify(a Answer) error {
	switch {
	case a.Status >= 200 && a.Status < 300:
		return nil
	case a.Status == http.StatusBadRequest, a.Status == http.StatusRequestEntityTooLarge:
		return &Rejected{Err: &StatusError{a}}
	case a.RetryAfter > 0:
		return &RetryAfter{Err: &StatusError{a}, After: a.RetryAfter}
	default:
		return &StatusError{a}
	}
}

// NewHTTPClient returns a client whose every request is bounded by timeout.
func NewHTTPClient(timeout time.Duration) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.ResponseHeaderTimeout = timeout
	return &http.Client{Transport: t, Timeout: timeout}
}
