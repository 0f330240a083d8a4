package ingest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// tcpDrainTime is how long a connection keeps being read after a stop: what
// the kernel holds comes at once; a client still sending is cut off.
// acceptDrainTime is how long the listener waits for queued connections
// after a stop: the queue empties at once, so this bounds only the wait.
const (
	tcpDrainTime    = 200 * time.Millisecond
	acceptDrainTime = 50 * time.Millisecond
)

// tcpSlots hands out TCP connection slots: tcp_max_connections in all, and
// at most tcp_max_connections_per_source to one source, so that one sender
// cannot take every slot. Every TCP listener of a Server shares it; it holds
// an entry per source with an open connection, so it is bounded by
// tcp_max_connections.
type tcpSlots struct {
	max, perSource int
	open           *atomic.Int64 // the Connections gauge

	mu       sync.Mutex
	bySource map[netip.Prefix]int
}

func newTCPSlots(max, perSource int, open *atomic.Int64) *tcpSlots {
	return &tcpSlots{max: max, perSource: perSource, open: open, bySource: map[netip.Prefix]int{}}
}

// take gives src a slot, or says why not.
func (t *tcpSlots) take(src netip.Prefix) (TCPRefusal, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.open.Load() >= int64(t.max) {
		return RefusedMaxConnections, false
	}
	if t.perSource > 0 {
		if t.bySource[src] >= t.perSource {
			return RefusedPerSource, false
		}
		t.bySource[src]++
	}
	t.open.Add(1)
	return 0, true
}

func (t *tcpSlots) release(src netip.Prefix) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.open.Add(-1)
	if t.perSource > 0 {
		if t.bySource[src] <= 1 {
			delete(t.bySource, src)
		} else {
			t.bySource[src]--
		}
	}
}

// sourceOf is the source a connection counts against: its IPv4 address, or
// its IPv6 /64, since one IPv6 host commonly holds a whole /64.
func sourceOf(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	bits := 32
	if a.Is6() {
		bits = 64
	}
	p, _ := a.Prefix(bits)
	return p
}

func remoteAddr(c net.Conn) netip.Addr {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		addr, _ := netip.AddrFromSlice(a.IP)
		return addr.Unmap()
	}
	return netip.Addr{}
}

// serveTCP accepts connections until ctx is done and waits for them to end.
// A stop does not close the listener at once: connections the kernel has
// already accepted wait in its queue with their data, so they are taken
// and drained until the queue is empty, then the listener closes.
//
// Its connections end with ctx. When the Server stops reading (a reload's
// Retire), a listener a newer Server took over stops accepting at once and
// stays open, and its connections go on; another one's connections are
// drained and closed with it.
func (s *Server) serveTCP(ctx context.Context, l *tcpListener, makeReader func() *Reader) {
	l.SetDeadline(time.Time{}) // a Server before may have stopped accepting so
	connCtx, endConns := context.WithCancel(ctx)
	stop := context.AfterFunc(s.reading, func() {
		if l.taken.Load() {
			l.SetDeadline(time.Now())
			return
		}
		endConns()
		l.SetDeadline(time.Now().Add(acceptDrainTime))
	})
	defer stop()
	defer func() {
		if !l.taken.Load() {
			l.Close()
		}
	}()
	for {
		conn, err := l.AcceptTCP()
		if err != nil {
			if s.reading.Err() != nil || errors.Is(err, net.ErrClosed) {
				// Connections accepted while draining end at once.
				if !l.taken.Load() {
					endConns()
				}
				return
			}
			s.readFailed.Log("tcp", l.Addr().String(), "err", err, "accepting", true)
			time.Sleep(100 * time.Millisecond) // out of file descriptors: do not spin
			continue
		}
		from := remoteAddr(conn)
		src := sourceOf(from)
		if why, ok := s.tcpSlots.take(src); !ok {
			s.stats.Refused[why].Add(1)
			s.tcpRefused[why].Log("from", from.String())
			conn.Close()
			continue
		}
		s.conns.Go(func() {
			defer s.tcpSlots.release(src)
			s.serveConn(connCtx, conn, from, makeReader())
		})
	}
}

// serveConn reads newline-framed lines. A line longer than max_line is
// counted once and skipped up to its newline; the connection stays up. A
// client that half-closes (sends FIN) has its last line, with or without a
// newline, applied.
//
// Two timeouts free the slot of a client that holds it without sending:
// tcp_line_timeout for a line that is not finished in time, counted from
// the accept or from the last complete line (slow or silent clients that
// never finish a line), and tcp_idle_timeout for a connection that sends
// nothing at all between lines.
func (s *Server) serveConn(ctx context.Context, conn *net.TCPConn, from netip.Addr, r *Reader) {
	defer conn.Close()
	// On a stop the read deadline becomes the drain deadline. The read
	// deadline is set before every read, so it checks for a drain deadline
	// after setting itself: one of the two sees the other.
	var drainAt atomic.Int64
	stop := context.AfterFunc(ctx, func() {
		d := time.Now().Add(tcpDrainTime)
		drainAt.Store(d.UnixNano())
		conn.SetReadDeadline(d)
	})
	defer stop()

	// Room for a line of max_line bytes and its "\r\n".
	buf := make([]byte, max(s.cfg.MaxLine+2, 4096))
	start, end := 0, 0  // buf[start:end] is read but not yet framed: it holds no newline
	discarding := false // inside an over-long line
	lineBegan := time.Now()
	awaitingLine := true // nothing read yet, or an unfinished line
	lineDeadline := false
	for {
		if drainAt.Load() == 0 {
			var deadline time.Time
			deadline, lineDeadline = s.readDeadline(time.Now(), lineBegan, awaitingLine)
			conn.SetReadDeadline(deadline)
			if d := drainAt.Load(); d != 0 {
				conn.SetReadDeadline(time.Unix(0, d))
			}
		}
		n, err := conn.Read(buf[end:])
		end += n
		// Only the new bytes can hold a newline: a slow sender costs a scan
		// of what it sends, not of the whole pending line each time.
		if last := bytes.LastIndexByte(buf[end-n:end], '\n'); last >= 0 {
			cut := end - n + last + 1
			chunk := buf[start:cut]
			start = cut
			if discarding {
				nl := bytes.IndexByte(chunk, '\n')
				chunk, discarding = chunk[nl+1:], false
			}
			r.Datagram(chunk, from)
			r.Flush()
			lineBegan, awaitingLine = time.Now(), false
		}
		switch {
		case start == end:
			start, end = 0, 0
		case end == len(buf) && start > 0:
			end = copy(buf, buf[start:end])
			start = 0
		case end == len(buf):
			// No newline in a whole buffer: a line longer than max_line.
			if !discarding {
				r.tooLong(buf[:end])
				r.publish()
			}
			start, end, discarding = 0, 0, true
		}
		awaitingLine = awaitingLine || start < end || discarding
		if err != nil {
			if errors.Is(err, io.EOF) && start < end && !discarding {
				r.Datagram(buf[start:end], from)
				r.Flush()
			}
			switch {
			case isTimeout(err) && drainAt.Load() == 0 && lineDeadline:
				s.stats.LineTimeouts.Add(1)
				s.tcpLineTimeout.Log("from", from.String(), "pending_bytes", end-start)
			case isTimeout(err) && drainAt.Load() == 0:
				s.stats.IdleTimeouts.Add(1)
			case err != io.EOF && !isTimeout(err) && !errors.Is(err, net.ErrClosed):
				s.cfg.Logger.Debug("statsd tcp read failed", "from", from.String(), "err", err)
			}
			return
		}
	}
}

// readDeadline is when the next read gives up: tcp_idle_timeout from now,
// or, while a line is awaited, tcp_line_timeout from when it began, if that
// is sooner (line reports that). The zero time means no deadline.
func (s *Server) readDeadline(now, lineBegan time.Time, awaitingLine bool) (deadline time.Time, line bool) {
	if s.cfg.TCPIdleTimeout > 0 {
		deadline = now.Add(s.cfg.TCPIdleTimeout)
	}
	if s.cfg.TCPLineTimeout > 0 && awaitingLine {
		if d := lineBegan.Add(s.cfg.TCPLineTimeout); deadline.IsZero() || d.Before(deadline) {
			return d, true
		}
	}
	return deadline, false
}
