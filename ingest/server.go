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
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

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
	// Seen, when set, is told when each source last sent something: under
	// the dialect's literal prefix, and from each address (with
	// SourceLabel set).
	Seen *LastSeen

	// Stats, when set, receives the counts: a Server that takes over from
	// another on a reload shares its Stats. nil gives the Server its own.
	Stats *Stats
	// BadLines, when set, is shown every bad line (statsbridge tap).
	BadLines BadLineWatcher

	// NewHandler returns the Handler for one reader goroutine.
	NewHandler func() Handler
	Logger     *slog.Logger
	// Events throttles per-event log lines (bad lines, refused
	// connections); nil makes a throttle of the listeners' own.
	Events *throttle.Log
}

// BadLineWatcher is shown the lines the parser refuses.
type BadLineWatcher interface {
	BadLine(r Reason, line []byte)
}

// drainTime bounds how long a listener keeps reading what was already
// received once it is told to stop.
const drainTime = 2 * time.Second

// Server owns the StatsD sockets and their reader goroutines.
type Server struct {
	cfg            Config
	stats          *Stats
	badLog         *badLineLog
	tcpSlots       *tcpSlots
	tcpRefused     [numTCPRefusals]*throttle.Event
	tcpLineTimeout *throttle.Event
	// readFailed logs a socket's read or accept errors: one that persists
	// (out of file descriptors, say) repeats ten times a second.
	readFailed *throttle.Event

	udp      []*udpSocket
	tcp      []*tcpListener
	unixgram []*unixSocket
	// taken are the sockets this Server took over from the one before
	// it (ListenFrom): until it serves, they are that one's.
	taken []*handover

	// reading ends the socket readers: at the end of Serve's context, or
	// at Retire. readers counts them, conns the TCP connections.
	reading     context.Context
	stopReading context.CancelFunc
	readers     sync.WaitGroup
	conns       sync.WaitGroup
}

// handover marks a socket that a newer Server took over: its reader in the
// older one stops without draining or closing it.
type handover struct{ taken atomic.Bool }

// tcpListener is a TCP listener with the address it was configured with.
type tcpListener struct {
	*net.TCPListener
	addr string
	handover
}

// unixSocket is a unixgram socket.
type unixSocket struct {
	*net.UnixConn
	path string
	handover
}

// Listen binds every configured socket. On an error it closes what it had
// bound, so nothing is left listening.
func Listen(cfg Config) (*Server, error) { return ListenFrom(cfg, nil) }

// ListenFrom binds the sockets of cfg as Listen does, but takes over from
// old, a Server that is serving, the sockets whose address (or path) both
// configure: their queued datagrams and connections stay, and no datagram
// is lost. Once ListenFrom succeeded, old.Retire must be called before the
// new Server's Serve. On an error old keeps everything, and what was bound
// is closed.
//
// A UDP address taken over keeps its number of sockets (readers): a change
// of statsd.readers takes effect for it at the next start.
func ListenFrom(cfg Config, old *Server) (srv *Server, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Readers <= 0 {
		cfg.Readers = runtime.GOMAXPROCS(0)
	}
	if cfg.Events == nil {
		cfg.Events = throttle.New(cfg.Logger, time.Second)
	}
	if cfg.Stats == nil {
		cfg.Stats = &Stats{}
	}
	srv = &Server{cfg: cfg, stats: cfg.Stats, badLog: newBadLineLog(cfg.Events),
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
	srv.reading, srv.stopReading = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			srv.Close()
		}
	}()
	var oldUDP map[string][]*udpSocket
	var oldTCP map[string]*tcpListener
	var oldUnix map[string]*unixSocket
	if old != nil {
		oldUDP, oldTCP, oldUnix = map[string][]*udpSocket{}, map[string]*tcpListener{}, map[string]*unixSocket{}
		for _, u := range old.udp {
			oldUDP[u.configured] = append(oldUDP[u.configured], u)
		}
		for _, l := range old.tcp {
			oldTCP[l.addr] = l
		}
		for _, c := range old.unixgram {
			oldUnix[c.path] = c
		}
	}
	for _, addr := range cfg.UDP {
		if socks := oldUDP[addr]; len(socks) > 0 {
			for _, u := range socks {
				setReadBuffer(u.fd, cfg.ReadBuffer, cfg.Logger)
				srv.take(&u.handover)
			}
			srv.udp = append(srv.udp, socks...)
			continue
		}
		socks, err := listenUDP(addr, cfg.Readers, cfg.ReadBuffer, cfg.Logger)
		if err != nil {
			return srv, fmt.Errorf("statsd udp %s: %w", addr, err)
		}
		for _, u := range socks {
			u.configured = addr
		}
		srv.udp = append(srv.udp, socks...)
	}
	for _, addr := range cfg.TCP {
		if l := oldTCP[addr]; l != nil {
			srv.take(&l.handover)
			srv.tcp = append(srv.tcp, l)
			continue
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return srv, fmt.Errorf("statsd tcp %s: %w", addr, err)
		}
		srv.tcp = append(srv.tcp, &tcpListener{TCPListener: l.(*net.TCPListener), addr: addr})
	}
	if len(cfg.Unixgram) == 0 {
		return srv, nil
	}
	gid, err := lookupGroup(cfg.UnixgramGroup)
	if err != nil {
		return srv, fmt.Errorf("statsd unixgram: %w", err)
	}
	for _, path := range cfg.Unixgram {
		if c := oldUnix[path]; c != nil {
			if err := setOwnership(path, cfg.UnixgramMode, gid); err != nil {
				return srv, fmt.Errorf("statsd unixgram %s: %w", path, err)
			}
			setConnReadBuffer(c.UnixConn, cfg.ReadBuffer, cfg.Logger)
			srv.take(&c.handover)
			srv.unixgram = append(srv.unixgram, c)
			continue
		}
		c, err := listenUnixgram(path, cfg.UnixgramMode, gid, cfg.ReadBuffer, cfg.Logger)
		if err != nil {
			return srv, fmt.Errorf("statsd unixgram %s: %w", path, err)
		}
		srv.unixgram = append(srv.unixgram, &unixSocket{UnixConn: c, path: path})
	}
	return srv, nil
}

// take marks a socket of the Server before as this one's.
func (s *Server) take(h *handover) {
	h.taken.Store(true)
	s.taken = append(s.taken, h)
}

// Close closes the sockets of a Server that is not to Serve (Serve closes
// them itself when it stops). Those it took over from the Server before go
// back to it.
func (s *Server) Close() {
	for _, h := range s.taken {
		h.taken.Store(false)
	}
	for _, u := range s.udp {
		if s.owns(&u.handover) {
			unix.Close(u.fd)
		}
	}
	for _, l := range s.tcp {
		if s.owns(&l.handover) {
			l.Close()
		}
	}
	for _, c := range s.unixgram {
		if s.owns(&c.handover) {
			os.Remove(c.path)
			c.Close()
		}
	}
}

// owns reports whether the Server bound the socket itself (rather than
// taking it over).
func (s *Server) owns(h *handover) bool {
	for _, t := range s.taken {
		if t == h {
			return false
		}
	}
	return true
}

// Retire stops the readers of a Server that a newer one took over from
// (ListenFrom), and returns once they have stopped: the sockets the newer
// one took are left open for it; the others are drained and closed, as at
// a shutdown. TCP connections accepted on a listener it took go on until
// they end or Serve's context is done; those of a listener no longer
// configured are drained and closed. Serve returns once all have ended.
func (s *Server) Retire() {
	s.stopReading()
	s.readers.Wait()
}

// Stats returns the listeners' counters.
func (s *Server) Stats() *Stats { return s.stats }

// UDPAddrs returns the bound UDP addresses, one per configured address.
func (s *Server) UDPAddrs() []net.Addr {
	var out []net.Addr
	seen := map[string]bool{}
	for _, u := range s.udp {
		a := u.bound
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

// Unixgram returns the unixgram socket paths.
func (s *Server) Unixgram() []string {
	out := make([]string, len(s.unixgram))
	for i, c := range s.unixgram {
		out[i] = c.path
	}
	return out
}

// Serve reads until ctx is done (or Retire), then reads what the sockets
// had already received, hands it on, closes the sockets and returns once
// every reader and connection has stopped.
func (s *Server) Serve(ctx context.Context) {
	stop := context.AfterFunc(ctx, s.stopReading)
	defer stop()
	// The sockets taken over are this Server's now; the one before has
	// stopped reading them (Retire).
	for _, h := range s.taken {
		h.taken.Store(false)
	}
	makeReader := func() *Reader {
		return newReader(ReaderConfig{Parser: Parser{Dialect: s.cfg.Dialect}, Handler: s.cfg.NewHandler(), Stats: s.stats,
			MaxLine: s.cfg.MaxLine, SourceLabel: s.cfg.SourceLabel, Seen: s.cfg.Seen, BadLines: s.cfg.BadLines}, s.badLog)
	}
	for _, u := range s.udp {
		s.readers.Go(func() { u.serve(s.reading, makeReader(), s.cfg.ReadCork, s.readFailed) })
	}
	for _, l := range s.tcp {
		s.readers.Go(func() { s.serveTCP(ctx, l, makeReader) })
	}
	for _, c := range s.unixgram {
		s.readers.Go(func() { serveUnixgram(s.reading, c, makeReader(), s.readFailed) })
	}
	s.readers.Wait()
	s.conns.Wait()
}

// isTimeout tells a deadline we set from a real error.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
