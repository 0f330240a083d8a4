// Package graphite renders flushes as carbon plaintext ("path value
// timestamp\n") and writes them to carbon over TCP.
package graphite

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/statsbridge/statsbridge/cork"
	"github.com/statsbridge/statsbridge/model"
	"golang.org/x/sys/unix"
)

// Layout is how a series becomes a carbon path.
type Layout uint8

// The layouts.
const (
	// Etsy is what Etsy statsd's Graphite backend writes with its defaults:
	// counters as stats.<key> (per second) and stats_counts.<key>, gauges as
	// stats.gauges.<key>.
	Etsy Layout = iota
	// Paths is the StatsD key as a dot-path, unchanged but for sanitising.
	Paths
	// Tags is Graphite 1.1 tagged series: family;label=value.
	Tags
)

// Options shape the paths.
type Options struct {
	Layout Layout
	// LegacyNamespace is Etsy's legacyNamespace (Etsy layout only): false
	// writes counters as stats.counters.<key>.rate and .count.
	LegacyNamespace bool
	Prefix          string
	// Cumulative sends counters' totals rather than their per-interval deltas.
	Cumulative bool
	// DeleteIdle leaves out series that received nothing in the interval.
	DeleteIdle     bool
	ExternalLabels model.Labels
}

// Encoder renders points as carbon plaintext lines. Keys are sanitised as
// Etsy statsd does, and tags (and external labels) are written as Graphite
// 1.1 tags.
type Encoder struct {
	opts Options
	// Skipped counts values carbon cannot store (NaN, ±Inf).
	Skipped atomic.Uint64
}

// NewEncoder returns an encoder.
func NewEncoder(opts Options) *Encoder { return &Encoder{opts: opts} }

// Encode implements sinks.Encoder. Every line of a point is one record.
func (e *Encoder) Encode(f *model.Flush, buf *cork.Buffer) {
	// Per-interval values carry the interval's start, cumulative ones the
	// flush time; see cork.Clock for why these never collide.
	ts := f.Start.Unix()
	if e.opts.Cumulative {
		ts = f.End.Unix()
	}
	seconds := f.Length.Seconds()
	for i := range f.Points {
		p := &f.Points[i]
		if e.opts.DeleteIdle && !p.Touched {
			continue
		}
		buf.Append(func(b []byte) []byte {
			w := lineWriter{enc: e, b: b, ts: ts, series: p.Series}
			e.writePoint(&w, p, seconds)
			return w.b
		})
	}
}

func (e *Encoder) writePoint(w *lineWriter, p *model.Point, seconds float64) {
	s := p.Series
	counter := s.Family().Type == model.Counter
	count := p.Value
	if counter && !e.opts.Cumulative {
		count = p.Delta
	}
	switch e.opts.Layout {
	case Paths:
		w.line("", s.Key(), "", count)
	case Tags:
		w.line("", s.Family().Name, "", count)
	case Etsy:
		switch {
		case !counter:
			w.line("stats.gauges.", s.Key(), "", p.Value)
		case e.opts.LegacyNamespace:
			w.line("stats.", s.Key(), "", perSecond(p.Delta, seconds))
			w.line("stats_counts.", s.Key(), "", count)
		default:
			w.line("stats.counters.", s.Key(), ".rate", perSecond(p.Delta, seconds))
			w.line("stats.counters.", s.Key(), ".count", count)
		}
	}
}

func perSecond(v, seconds float64) float64 {
	if seconds <= 0 {
		return 0
	}
	return v / seconds
}

// lineWriter appends the carbon lines of one point.
type lineWriter struct {
	enc    *Encoder
	b      []byte
	ts     int64
	series *model.Series
}

// line writes "<prefix><head><key><tail>[;tags] <v> <ts>\n"; head and tail
// are written as they are, key is sanitised.
func (w *lineWriter) line(head, key, tail string, v float64) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		w.enc.Skipped.Add(1)
		return
	}
	start := len(w.b)
	w.b = append(w.b, w.enc.opts.Prefix...)
	w.b = append(w.b, head...)
	mark := len(w.b)
	w.b = AppendSanitized(w.b, key)
	if len(w.b) == mark {
		w.b = w.b[:start] // nothing of the key survived sanitising
		return
	}
	w.b = append(w.b, tail...)
	tags := w.series.Tags()
	if w.enc.opts.Layout == Tags {
		tags = w.series.Labels()
	}
	w.b = appendTags(w.b, tags, w.enc.opts.ExternalLabels)
	w.b = append(w.b, ' ')
	w.b = strconv.AppendFloat(w.b, v, 'g', -1, 64)
	w.b = append(w.b, ' ')
	w.b = strconv.AppendInt(w.b, w.ts, 10)
	w.b = append(w.b, '\n')
}

// appendTags writes ";name=value" for every tag and external label, sorted
// by name as carbon normalises them.
func appendTags(b []byte, tags, external model.Labels) []byte {
	if len(tags)+len(external) == 0 {
		return b
	}
	all := make(model.Labels, 0, len(tags)+len(external))
	all = append(all, tags...)
	for _, l := range external {
		if tags.Get(l.Name) == "" {
			all = append(all, l)
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Name < all[j].Name })
	for _, l := range all {
		name := appendTagPart(nil, l.Name)
		value := appendTagPart(nil, l.Value)
		if len(name) == 0 || len(value) == 0 {
			continue
		}
		b = append(b, ';')
		b = append(b, name...)
		b = append(b, '=')
		b = append(b, value...)
	}
	return b
}

// AppendSanitized appends key as Etsy statsd's sanitizeKeyName writes it:
// runs of whitespace become '_', '/' becomes '-', and every byte outside
// [a-zA-Z0-9_.;=-] is removed. Carbon splits lines on whitespace, so a raw
// space can never reach it.
func AppendSanitized(b []byte, key string) []byte {
	space := false
	for i := 0; i < len(key); i++ {
		c := key[i]
		if c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f' {
			if !space {
				b = append(b, '_')
			}
			space = true
			continue
		}
		space = false
		switch {
		case c == '/':
			b = append(b, '-')
		case isKeyByte(c):
			b = append(b, c)
		}
	}
	return b
}

// appendTagPart sanitises a tag name or value: as a key, without the ';' and
// '=' that separate tags.
func appendTagPart(b []byte, s string) []byte {
	start := len(b)
	b = AppendSanitized(b, s)
	out := b[:start]
	for _, c := range b[start:] {
		if c != ';' && c != '=' {
			out = append(out, c)
		}
	}
	return out
}

func isKeyByte(c byte) bool {
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		c == '_' || c == '.' || c == ';' || c == '=' || c == '-'
}

// Transport writes batches to carbon over one TCP connection, reconnecting
// after any error. Carbon does not acknowledge lines, so a batch counts as
// delivered once the kernel took it.
type Transport struct {
	addr    string
	timeout time.Duration

	mu   sync.Mutex
	conn net.Conn
}

// NewTransport returns a transport to a carbon plaintext listener.
func NewTransport(addr string, timeout time.Duration) *Transport {
	return &Transport{addr: addr, timeout: timeout}
}

// Send implements sinks.Transport.
func (t *Transport) Send(ctx context.Context, b cork.Batch) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.conn != nil && peerClosed(t.conn) {
		t.conn.Close()
		t.conn = nil
	}
	if t.conn == nil {
		d := net.Dialer{Timeout: t.timeout}
		conn, err := d.DialContext(ctx, "tcp", t.addr)
		if err != nil {
			return fmt.Errorf("connecting to carbon: %w", err)
		}
		t.conn = conn
	}
	t.conn.SetWriteDeadline(time.Now().Add(t.timeout))
	if _, err := t.conn.Write(b.Data); err != nil {
		t.conn.Close()
		t.conn = nil
		return fmt.Errorf("writing to carbon: %w", err)
	}
	return nil
}

// peerClosed reports whether carbon closed the connection. Carbon never
// writes to it, so anything but "nothing to read yet" means it is gone. A
// write to a connection the peer closed would still succeed once, into the
// kernel, and that batch would be lost: so look before writing.
func peerClosed(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	closed := false
	err = rc.Control(func(fd uintptr) {
		var one [1]byte
		n, _, err := unix.Recvfrom(int(fd), one[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		closed = n == 0 && err == nil || err != nil && !errors.Is(err, unix.EAGAIN)
	})
	return closed || err != nil
}

// Close closes the connection.
func (t *Transport) Close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.conn != nil {
		t.conn.Close()
		t.conn = nil
	}
}
