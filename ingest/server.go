package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/statsbridge/statsbridge/throttle"
)

// Config says where to listen and how to read.
type Config struct {
	UDP      []string
	TCP      []string
	Unixgram []string
	// UnixgramMode is the permission of the unixgram socket files.
	UnixgramMode os.FileMode
	// UnixgramGroup owns the unixgram socket files: a group name or a
	// numeric gid; "" is the process's group.
	UnixgramGroup string
	// Readers is the number of UDP sockets (SO_REUSEPORT) and reader
	// goroutines per UDP address; 0 means one per core.
	Readers int
	// ReadBuffer is the SO_RCVBUF asked for on UDP and unixgram sockets.
	ReadBuffer int
	// MaxLine is the longest line accepted.
	MaxLine int
	// ReadCork is how long a UDP reader waits, after a read that drained
	// its socket, before it reads again, so that the next read takes a
	// batch; 0 reads as soon as a datagram arrives.
	ReadCork time.Duration

	// TCPMaxConnections bounds the open TCP connections, and
	// TCPMaxConnectionsPerSource (0: no bound) those of one IPv4 address
	// or IPv6 /64.
	TCPMaxConnections          int
	TCPMaxConnectionsPerSource int
	// TCPIdleTimeout closes a connection that sends nothing for that long;
	// TCPLineTimeout one that has not finished a line that long after its
	// accept or its last complete line. 0 turns either off.
	TCPIdleTimeout time.Duration
	TCPLineTimeout time.Duration

	Dialect Dialect
	// SourceLabel, when set, labels every sample with its sender's address.
	SourceLabel string

	// NewHandler returns the Handler for one reader goroutine.
	NewHandler func() Handler
	Logger     *slog.Logger
	// Events throttles per-event log lines (bad lines, refused
	// connections); nil makes a throttle of the listeners' own.
	Events *throttle.Log
}

// drainTime bounds how long a listener keeps reading what was already
// received once it is told to stop.
const drainTime = 2 * time.Second

// Server owns the StatsD sockets and their reader goroutines.
type Server struct {
	cfg            Config
	stats          Stats
	badLog         *badLineLog
	tcpSlots       *tcpSlots
	tcpRefused     [numTCPRefusals]*throttle.Event
	tcpLineTimeout *throttle.Event
	// readFailed logs a socket's read or accept errors: one that persists
	// (out of file descriptors, say) repeats ten times a second.
	readFailed *throttle.Event

	udp      []*udpSocket
	tcp      []*net.TCPListener
	unixgram []*net.UnixConn
}

// Listen binds every configured socket. On an error it closes what it had
// bound, so nothing is left listening.
func Listen(cfg Config) (srv *Server, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Readers <= 0 {
		cfg.Readers = runtime.GOMAXPROCS(0)
	}
	if cfg.Events == nil {
		cfg.Events = throttle.New(cfg.Logger, time.Second)
	}
	srv = &Server{cfg: cfg, badLog: newBadLineLog(cfg.Events),
		tcpRefused: [numTCPRefusals]*throttle.Event{
			RefusedMaxConnections: cfg.Events.Event(slog.LevelWarn,
				fmt.Sprintf("statsd tcp connection refused: tcp_max_connections (%d) reached", cfg.TCPMaxConnections)),
			RefusedPerSource: cfg.Events.Event(slog.LevelWarn,
				fmt.Sprintf("statsd tcp connection refused: tcp_max_connections_per_source (%d) reached", cfg.TCPMaxConnectionsPerSource)),
		},
		readFailed: cfg.Events.Event(slog.LevelError, "reading a StatsD socket failed"),
		tcpLineTimeout: cfg.Events.Event(slog.LevelWarn,
			fmt.Sprintf("statsd tcp connection closed: no complete line within tcp_line_timeout (%s)", cfg.TCPLineTimeout)),
	}
	srv.tcpSlots = newTCPSlots(cfg.TCPMaxConnections, cfg.TCPMaxConnectionsPerSource, &srv.stats.Connections)
	defer func() {
		if err != nil {
			srv.Close()
		}
	}()
	for _, addr := range cfg.UDP {
		socks, err := listenUDP(addr, cfg.Readers, cfg.ReadBuffer, cfg.Logger)
		if err != nil {
			return srv, fmt.Errorf("statsd udp %s: %w", addr, err)
		}
		srv.udp = append(srv.udp, socks...)
	}
	for _, addr := range cfg.TCP {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return srv, fmt.Errorf("statsd tcp %s: %w", addr, err)
		}
		srv.tcp = append(srv.tcp, l.(*net.TCPListener))
	}
	if len(cfg.Unixgram) == 0 {
		return srv, nil
	}
	gid, err := lookupGroup(cfg.UnixgramGroup)
	if err != nil {
		return srv, fmt.Errorf("statsd unixgram: %w", err)
	}
	for _, path := range cfg.Unixgram {
		c, err := listenUnixgram(path, cfg.UnixgramMode, gid, cfg.ReadBuffer, cfg.Logger)
		if err != nil {
			return srv, fmt.Errorf("statsd unixgram %s: %w", path, err)
		}
		srv.unixgram = append(srv.unixgram, c)
	}
	return srv, nil
}

// Close closes the sockets of a Server that is not to Serve (Serve closes
// them itself when it stops).
func (s *Server) Close() {
	for _, u := range s.udp {
		u.conn.Close()
	}
	for _, l := range s.tcp {
		l.Close()
	}
	for _, c := range s.unixgram {
		os.Remove(c.LocalAddr().String())
		c.Close()
	}
}

// Stats returns the listeners' counters.
func (s *Server) Stats() *Stats { return &s.stats }

// UDPAddrs returns the bound UDP addresses, one per configured address.
func (s *Server) UDPAddrs() []net.Addr {
	var out []net.Addr
	seen := map[string]bool{}
	for _, u := range s.udp {
		a := u.addr
		if !seen[a.String()] {
			seen[a.String()] = true
			out = append(out, a)
		}
	}
	return out
}

// TCPAddrs returns the bound TCP addresses.
func (s *Server) TCPAddrs() []net.Addr {
	out := make([]net.Addr, len(s.tcp))
	for i, l := range s.tcp {
		out[i] = l.Addr()
	}
	return out
}

// Serve reads until ctx is done, then reads what the sockets had already
// received, hands it on, closes the sockets and returns once every reader
// has stopped.
func (s *Server) Serve(ctx context.Context) {
	var wg sync.WaitGroup
	makeReader := func() *Reader {
		return newReader(ReaderConfig{Parser: Parser{Dialect: s.cfg.Dialect}, Handler: s.cfg.NewHandler(), Stats: &s.stats,
			MaxLine: s.cfg.MaxLine, SourceLabel: s.cfg.SourceLabel}, s.badLog)
	}
	for _, u := range s.udp {
		wg.Go(func() { u.serve(ctx, makeReader(), s.cfg.ReadCork, s.readFailed) })
	}
	for _, l := range s.tcp {
		wg.Go(func() { s.serveTCP(ctx, l, makeReader) })
	}
	for _, c := range s.unixgram {
		wg.Go(func() { serveUnixgram(ctx, c, makeReader(), s.readFailed) })
	}
	wg.Wait()
}

// isTimeout tells a deadline we set from a real error.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
