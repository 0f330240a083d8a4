package graphite

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/statsbridge/statsbridge/cork"
)

// Transport writes batches to carbon over one TCP connection, reconnecting
// after any error.
//
// Carbon acknowledges nothing: a write succeeds once the kernel has the
// bytes, and a carbon that stops (or dies) right then loses what it had not
// read. So the transport keeps what it wrote on the current connection in
// the last replayWindow, and when that connection turns out to be gone it
// fails the attempt and hands those batches back as unconfirmed: the sink
// sends them again, before anything new. Carbon stores a path's point per
// timestamp, so a line written twice is stored once.
type Transport struct {
	addr    string
	timeout time.Duration
	tls     *tls.Config // nil: plaintext

	mu          sync.Mutex
	conn        net.Conn
	recent      []written // on the current connection, oldest first
	size        int
	unconfirmed []cork.Batch // written on a connection found gone
}

type written struct {
	at    time.Time
	batch cork.Batch
}

const (
	replayWindow = 10 * time.Second
	replayBytes  = 8 << 20
)

// NewTransport returns a transport to a carbon plaintext listener, over
// TLS when tlsConfig is not nil (carbon-relay-ng, or stunnel in front of
// carbon).
func NewTransport(addr string, timeout time.Duration, tlsConfig *tls.Config) *Transport {
	return &Transport{addr: addr, timeout: timeout, tls: tlsConfig}
}

// errClosed fails an attempt that found carbon had closed the connection:
// what was written on it lately is unconfirmed.
var errClosed = errors.New("carbon closed the connection")

// Send implements sinks.Transport.
func (t *Transport) Send(ctx context.Context, b cork.Batch) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.conn != nil && peerClosed(t.conn) {
		t.drop()
		return errClosed
	}
	if t.conn == nil {
		conn, err := t.dial(ctx)
		if err != nil {
			return fmt.Errorf("connecting to carbon: %w", err)
		}
		t.conn = conn
	}
	return t.write(ctx, b)
}

// dial connects, and with TLS shakes hands, within the timeout.
func (t *Transport) dial(ctx context.Context) (net.Conn, error) {
	d := &net.Dialer{Timeout: t.timeout}
	if t.tls == nil {
		return d.DialContext(ctx, "tcp", t.addr)
	}
	return (&tls.Dialer{NetDialer: d, Config: t.tls}).DialContext(ctx, "tcp", t.addr)
}

// write writes on the current connection and remembers what it wrote. It
// gives up at the timeout, or sooner when ctx (a shutdown) says so.
func (t *Transport) write(ctx context.Context, b cork.Batch) error {
	deadline := time.Now().Add(t.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	t.conn.SetWriteDeadline(deadline)
	if _, err := t.conn.Write(b.Data); err != nil {
		t.drop()
		return fmt.Errorf("writing to carbon: %w", err)
	}
	now := time.Now()
	t.recent = append(t.recent, written{at: now, batch: b})
	t.size += len(b.Data)
	for len(t.recent) > 0 && (now.Sub(t.recent[0].at) > replayWindow || t.size > replayBytes) {
		t.size -= len(t.recent[0].batch.Data)
		t.recent = t.recent[1:]
	}
	return nil
}

// Unconfirmed implements sinks.Unconfirmed: what was written on a
// connection that turned out to be gone. The transport forgets it, as its
// caller keeps it now.
func (t *Transport) Unconfirmed() []cork.Batch {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := t.unconfirmed
	t.unconfirmed = nil
	return out
}

// drop closes a connection found gone; what was written on it lately is
// unconfirmed.
func (t *Transport) drop() {
	t.conn.Close()
	t.conn = nil
	for _, w := range t.recent {
		t.unconfirmed = append(t.unconfirmed, w.batch)
	}
	t.recent, t.size = nil, 0
}

// peerClosed reports whether carbon closed the connection. Carbon never
// writes to it, so anything but "nothing to read yet" means it is gone. A
// write to a connection the peer closed would still succeed once, into the
// kernel, and that batch would be lost: so look before writing.
//
// Over TLS the server does write: session tickets after the handshake, and
// a close_notify when it goes. So when the socket has something to read,
// the TLS connection reads it, briefly: tickets are taken in and it is
// still open; an end of stream or an error means it is gone.
func peerClosed(c net.Conn) bool {
	tc, isTLS := c.(*tls.Conn)
	raw := c
	if isTLS {
		raw = tc.NetConn()
	}
	readable, closed := peek(raw)
	if !isTLS || !readable {
		return closed
	}
	tc.SetReadDeadline(time.Now().Add(tlsPeekTime))
	defer tc.SetReadDeadline(time.Time{})
	var buf [512]byte
	_, err := tc.Read(buf[:])
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

// tlsPeekTime bounds the wait after the TLS records a socket held were
// read. Tickets come once after the handshake, so it is spent about once a
// connection.
const tlsPeekTime = 20 * time.Millisecond

// peek looks at a socket without reading it: whether anything is there to
// read (data, an end of stream or an error), and whether that is the end.
func peek(c net.Conn) (readable, closed bool) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true, true
	}
	err = rc.Control(func(fd uintptr) {
		var one [1]byte
		n, _, err := unix.Recvfrom(int(fd), one[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		readable = !errors.Is(err, unix.EAGAIN)
		closed = n == 0 && err == nil || err != nil && readable
	})
	if err != nil {
		return true, true
	}
	return readable, closed
}

// Close closes the connection.
func (t *Transport) Close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.conn != nil {
		t.conn.Close()
		t.conn = nil
	}
	t.recent, t.unconfirmed, t.size = nil, nil, 0
}
