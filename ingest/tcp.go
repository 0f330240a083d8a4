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

// serveTCP accepts connections until ctx is done and waits for them to end.
// A stop does not close the listener at once: connections the kernel has
// already accepted wait in its queue with their data, so they are taken
// and drained until the queue is empty, then the listener closes.
func (s *Server) serveTCP(ctx context.Context, l *net.TCPListener, makeReader func() *Reader) {
	stop := context.AfterFunc(ctx, func() { l.SetDeadline(time.Now().Add(acceptDrainTime)) })
	defer stop()
	defer l.Close()
	var conns sync.WaitGroup
	defer conns.Wait()
	for {
		conn, err := l.AcceptTCP()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			s.cfg.Logger.Error("statsd tcp accept failed", "addr", l.Addr().String(), "err", err)
			time.Sleep(100 * time.Millisecond) // out of file descriptors: do not spin
			continue
		}
		if s.stats.Connections.Add(1) > int64(s.cfg.TCPMaxConnections) {
			s.stats.Connections.Add(-1)
			s.stats.Refused.Add(1)
			s.tcpRefused.Log("from", conn.RemoteAddr().String(), "limit", s.cfg.TCPMaxConnections)
			conn.Close()
			continue
		}
		conns.Go(func() {
			defer s.stats.Connections.Add(-1)
			s.serveConn(ctx, conn, makeReader())
		})
	}
}

// serveConn reads newline-framed lines. A line longer than max_line is
// counted once and skipped up to its newline; the connection stays up. A
// connection idle for tcp_idle_timeout is closed. A client that half-closes
// (sends FIN) has its last line, with or without a newline, applied.
func (s *Server) serveConn(ctx context.Context, conn *net.TCPConn, r *Reader) {
	defer conn.Close()
	// On a stop the read deadline becomes the drain deadline. The idle
	// deadline is set before every read, so it checks for a drain deadline
	// after setting itself: one of the two sees the other.
	var drainAt atomic.Int64
	stop := context.AfterFunc(ctx, func() {
		d := time.Now().Add(tcpDrainTime)
		drainAt.Store(d.UnixNano())
		conn.SetReadDeadline(d)
	})
	defer stop()

	var from netip.Addr
	if a, ok := conn.RemoteAddr().(*net.TCPAddr); ok {
		from, _ = netip.AddrFromSlice(a.IP)
	}
	// Room for a line of max_line bytes and its "\r\n".
	buf := make([]byte, max(s.cfg.MaxLine+2, 4096))
	start, end := 0, 0  // buf[start:end] is read but not yet framed: it holds no newline
	discarding := false // inside an over-long line
	for {
		if s.cfg.TCPIdleTimeout > 0 && drainAt.Load() == 0 {
			conn.SetReadDeadline(time.Now().Add(s.cfg.TCPIdleTimeout))
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
		if err != nil {
			if errors.Is(err, io.EOF) && start < end && !discarding {
				r.Datagram(buf[start:end], from)
				r.Flush()
			}
			if err != io.EOF && !isTimeout(err) && !errors.Is(err, net.ErrClosed) {
				s.cfg.Logger.Debug("statsd tcp read failed", "from", conn.RemoteAddr().String(), "err", err)
			}
			return
		}
	}
}
