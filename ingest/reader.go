package ingest

import (
	"bytes"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/statsbridge/statsbridge/throttle"
)

// Stats counts what the listeners received. Readers keep their own counts
// and add them here once per batch.
type Stats struct {
	Datagrams atomic.Uint64 // UDP and unixgram datagrams, TCP reads
	// UDPReads counts the read system calls on UDP sockets, those that
	// found nothing included: with Datagrams, it shows how well reads
	// are batched.
	UDPReads    atomic.Uint64
	Bytes       atomic.Uint64
	Lines       atomic.Uint64 // lines parsed, good or bad
	BadLines    [numReasons]atomic.Uint64
	Connections atomic.Int64 // open TCP connections
	// Refused counts TCP connections refused at a connection limit.
	Refused [numTCPRefusals]atomic.Uint64
	// LineTimeouts counts TCP connections closed because no line was
	// completed within tcp_line_timeout, IdleTimeouts those that sent
	// nothing for tcp_idle_timeout.
	LineTimeouts atomic.Uint64
	IdleTimeouts atomic.Uint64
}

// TCPRefusal says why a TCP connection was refused. Refusals are few and
// fixed, so they can label a counter.
type TCPRefusal uint8

// The reasons a TCP connection is refused.
const (
	RefusedMaxConnections TCPRefusal = iota // tcp_max_connections reached
	RefusedPerSource                        // tcp_max_connections_per_source reached
	numTCPRefusals
)

var tcpRefusalNames = [numTCPRefusals]string{"max_connections", "per_source"}

func (r TCPRefusal) String() string {
	if r < numTCPRefusals {
		return tcpRefusalNames[r]
	}
	return "unknown"
}

// TCPRefusals lists every reason a TCP connection is refused.
func TCPRefusals() []TCPRefusal {
	rs := make([]TCPRefusal, numTCPRefusals)
	for i := range rs {
		rs[i] = TCPRefusal(i)
	}
	return rs
}

// badLineLog logs a rejected line through the process's throttle: the
// first offending line of a period, shortened.
type badLineLog struct{ event *throttle.Event }

func newBadLineLog(events *throttle.Log) *badLineLog {
	return &badLineLog{event: events.Event(slog.LevelWarn, "rejected a StatsD line (all are counted)")}
}

const maxLoggedLine = 200

func (l *badLineLog) log(r Reason, line []byte) {
	if !l.event.Due() {
		l.event.Log() // counted as held back
		return
	}
	shown := line
	if len(shown) > maxLoggedLine {
		shown = shown[:maxLoggedLine]
	}
	l.event.Log("reason", r.String(), "line", string(shown), "length", len(line))
}

// batchSize is how many samples a reader hands to its Handler at once.
const batchSize = 256

// Reader is the pipeline of one reader goroutine, whatever the transport:
// it splits what was read into lines, parses them into a batch of samples
// and hands full batches to its Handler. The samples point into the read
// buffers, so a transport calls Flush before it reuses them.
type Reader struct {
	parser  Parser
	handler Handler
	maxLine int
	stats   *Stats
	badLog  *badLineLog

	batch []Sample
	n     int

	sourceLabel []byte
	sources     map[netip.Addr][]byte // formatted sender addresses

	// seen, when set, is told at each publish what the reader saw since the
	// last: a line under the literal prefix, and the senders.
	seen      *LastSeen
	sawPrefix bool
	senders   []netip.Addr
	badLines  BadLineWatcher

	datagrams, bytes, lines uint64
	udpReads                uint64
	bad                     [numReasons]uint64
}

// ReaderConfig configures a Reader.
type ReaderConfig struct {
	Parser  Parser
	Handler Handler
	// Stats receives the reader's counts at every Flush.
	Stats *Stats
	// MaxLine is the longest line accepted.
	MaxLine int
	// SourceLabel, when set, tags every sample with its sender's address.
	SourceLabel string
	// Events throttles the reader's per-event log lines; nil discards them.
	Events *throttle.Log
	// Seen, when set, is told when a source last sent something.
	Seen *LastSeen
	// BadLines, when set, is shown every bad line.
	BadLines BadLineWatcher
}

// NewReader returns a Reader for one goroutine.
func NewReader(cfg ReaderConfig) *Reader {
	if cfg.Events == nil {
		cfg.Events = throttle.New(nil, time.Second)
	}
	return newReader(cfg, newBadLineLog(cfg.Events))
}

func newReader(cfg ReaderConfig, badLog *badLineLog) *Reader {
	r := &Reader{parser: cfg.Parser, handler: cfg.Handler, stats: cfg.Stats, badLog: badLog, maxLine: cfg.MaxLine,
		batch: make([]Sample, batchSize), seen: cfg.Seen, badLines: cfg.BadLines}
	if cfg.SourceLabel != "" {
		r.sourceLabel = []byte(cfg.SourceLabel)
		r.sources = map[netip.Addr][]byte{}
	}
	return r
}

// Datagram takes one datagram (or a run of whole TCP lines): many lines,
// separated by "\n" or "\r\n", the last one with or without a terminator.
func (r *Reader) Datagram(b []byte, from netip.Addr) {
	r.datagrams++
	r.bytes += uint64(len(b))
	var source []byte // every line of a datagram has one sender
	if r.sourceLabel != nil && from.IsValid() {
		source = r.source(from)
		if r.seen != nil && (len(r.senders) == 0 || r.senders[len(r.senders)-1] != from) {
			r.senders = append(r.senders, from.Unmap())
		}
	}
	for len(b) > 0 {
		end := bytes.IndexByte(b, '\n')
		line := b
		if end >= 0 {
			line, b = b[:end], b[end+1:]
		} else {
			b = nil
		}
		r.line(line, source)
	}
}

func (r *Reader) line(line, source []byte) {
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	if len(line) == 0 {
		return
	}
	if len(line) > r.maxLine {
		r.tooLong(line)
		return
	}
	r.lines++
	s := &r.batch[r.n]
	reason := r.parser.Parse(line, s)
	for {
		r.take(s, reason, line, source)
		if !s.More() {
			return
		}
		// Each further field of a multi-value line is a sample and counts
		// as a line: "t:1|ms:2|ms" stands for two. s stays intact when a
		// full batch was handed over, and is reused when it was rejected.
		r.lines++
		next := &r.batch[r.n]
		reason = r.parser.Next(s, next)
		s = next
	}
}

// take adds a parsed sample to the batch, or counts why it was rejected.
func (r *Reader) take(s *Sample, reason Reason, line, source []byte) {
	if reason != ReasonNone {
		r.reject(reason, line)
		return
	}
	if source != nil {
		s.Tags = append(s.Tags, Tag{Key: r.sourceLabel, Value: source})
	}
	if r.seen != nil && !r.sawPrefix && len(r.parser.Dialect.LiteralPrefix) > 0 &&
		bytes.HasPrefix(s.Name, r.parser.Dialect.LiteralPrefix) {
		r.sawPrefix = true
	}
	r.n++
	if r.n == len(r.batch) {
		r.Flush()
	}
}

// tooLong counts a line over max_line, which every transport finds its own
// way (a datagram cut short, a TCP buffer with no newline).
func (r *Reader) tooLong(line []byte) {
	r.lines++
	r.reject(ReasonTooLong, line)
}

func (r *Reader) reject(reason Reason, line []byte) {
	r.bad[reason]++
	r.badLog.log(reason, line)
	if r.badLines != nil {
		r.badLines.BadLine(reason, line)
	}
}

func (r *Reader) source(a netip.Addr) []byte {
	a = a.Unmap()
	if b, ok := r.sources[a]; ok {
		return b
	}
	if len(r.sources) >= 4096 {
		clear(r.sources) // many senders: keep the memory bounded
	}
	b := a.AppendTo(nil)
	r.sources[a] = b
	return b
}

// Flush hands the batch to the Handler and publishes the reader's counts.
func (r *Reader) Flush() {
	if r.n > 0 {
		r.handler.Handle(r.batch[:r.n])
		r.n = 0
	}
	r.publish()
}

func (r *Reader) publish() {
	if r.sawPrefix || len(r.senders) > 0 {
		r.seen.note(time.Now(), r.sawPrefix, r.senders)
		r.sawPrefix, r.senders = false, r.senders[:0]
	}
	if r.datagrams > 0 {
		r.stats.Datagrams.Add(r.datagrams)
		r.stats.Bytes.Add(r.bytes)
		r.datagrams, r.bytes = 0, 0
	}
	if r.udpReads > 0 {
		r.stats.UDPReads.Add(r.udpReads)
		r.udpReads = 0
	}
	if r.lines > 0 {
		r.stats.Lines.Add(r.lines)
		r.lines = 0
	}
	for i, n := range r.bad {
		if n > 0 {
			r.stats.BadLines[i].Add(n)
			r.bad[i] = 0
		}
	}
}
