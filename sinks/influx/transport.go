package influx

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/statsbridge/statsbridge/cork"
	"github.com/statsbridge/statsbridge/sinks"
)

// TransportOptions say where and how to write.
type TransportOptions struct {
	// URL is a 1.x ".../write?db=..." or a 2.x ".../api/v2/write?org=...&bucket=...".
	URL      string
	Token    string // "Authorization: Token ..." (2.x, and 1.8+)
	Username string // 1.x basic authentication
	Password string
	Gzip     bool
	Timeout  time.Duration
	TLS      *tls.Config // for an https:// URL; nil is Go's default
	Proxy    *url.URL    // nil takes the proxy from the environment
	// CreateDatabase creates a missing 1.x database (CREATE DATABASE is
	// idempotent) rather than waiting for an operator to.
	CreateDatabase bool
}

// Transport posts batches of line protocol. It is safe for concurrent
// Sends: a sink may have several requests in flight.
type Transport struct {
	url      string
	header   http.Header
	gzip     bool
	client   *http.Client
	zips     sync.Pool // *gzipBuffer
	createDB string    // the database to create when missing, or ""
	queryURL string
	// v2 is InfluxDB 2.x's /api/v2/write, where a write is whole or
	// nothing: the documented 400 means no line was written.
	v2 bool
}

// NewTransport returns a transport for a validated URL.
func NewTransport(o TransportOptions) (*Transport, error) {
	u, err := url.Parse(o.URL)
	if err != nil {
		return nil, err
	}
	q := u.Query()
	q.Set("precision", "ms") // the encoder writes milliseconds; InfluxDB assumes ns
	u.RawQuery = q.Encode()
	h := http.Header{"Content-Type": {"text/plain; charset=utf-8"}}
	if o.Token != "" {
		h.Set("Authorization", "Token "+o.Token)
	}
	t := &Transport{url: u.String(), header: h, gzip: o.Gzip, client: sinks.NewHTTPClient(sinks.ClientOptions{Timeout: o.Timeout, TLS: o.TLS, Proxy: o.Proxy}),
		v2: strings.HasSuffix(u.Path, "/api/v2/write")}
	if o.CreateDatabase && strings.HasSuffix(u.Path, "/write") {
		t.createDB = q.Get("db")
		qu := *u
		qu.Path = strings.TrimSuffix(u.Path, "/write") + "/query"
		qu.RawQuery = ""
		t.queryURL = qu.String()
	}
	if o.Username != "" {
		req, _ := http.NewRequest(http.MethodPost, t.url, nil)
		req.SetBasicAuth(o.Username, o.Password)
		h.Set("Authorization", req.Header.Get("Authorization"))
	}
	if o.Gzip {
		h.Set("Content-Encoding", "gzip")
	}
	return t, nil
}

// gzipBuffer is a request body's gzip writer and the buffer it writes to,
// reused from request to request.
type gzipBuffer struct {
	buf bytes.Buffer
	w   *gzip.Writer
}

// Send implements sinks.Transport. From 1.x, a 400 that says "partial
// write" means InfluxDB stored the good lines and refused the rest: the
// batch is partly stored. 2.x's 400 refuses the whole batch, whatever its
// message says, so it is split to find the refused lines (writing a line
// again only overwrites it). A 404 is a missing database, a configuration error: the data
// waits until an operator creates it, or it is created with
// create_database.
func (t *Transport) Send(ctx context.Context, b cork.Batch) error {
	err := t.send(ctx, b)
	var st *sinks.StatusError
	if t.createDB != "" && errors.As(err, &st) && st.Status == http.StatusNotFound && strings.Contains(st.Body, "database not found") {
		if cerr := t.createDatabase(ctx); cerr != nil {
			return fmt.Errorf("%w; creating the database failed: %v", err, cerr)
		}
		return t.send(ctx, b)
	}
	return err
}

func (t *Transport) createDatabase(ctx context.Context) error {
	body := url.Values{"q": {fmt.Sprintf("CREATE DATABASE %q", t.createDB)}}.Encode()
	h := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
	if auth := t.header.Get("Authorization"); auth != "" {
		h.Set("Authorization", auth)
	}
	a, err := sinks.Post(ctx, t.client, t.queryURL, h, []byte(body))
	if err != nil {
		return err
	}
	return sinks.Classify(a)
}

func (t *Transport) send(ctx context.Context, b cork.Batch) error {
	body := b.Data
	if t.gzip {
		z, _ := t.zips.Get().(*gzipBuffer)
		if z == nil {
			z = &gzipBuffer{}
			z.w = gzip.NewWriter(&z.buf)
		}
		defer t.zips.Put(z)
		z.buf.Reset()
		z.w.Reset(&z.buf)
		z.w.Write(b.Data)
		z.w.Close()
		body = z.buf.Bytes()
	}
	a, err := sinks.Post(ctx, t.client, t.url, t.header, body)
	if err != nil {
		return fmt.Errorf("writing to influxdb: %w", err)
	}
	err = sinks.Classify(a)
	if !t.v2 && a.Status == http.StatusBadRequest && strings.Contains(a.Body, "partial write") {
		return &sinks.Failure{Outcome: sinks.PartlyStored, Err: err}
	}
	return err
}
