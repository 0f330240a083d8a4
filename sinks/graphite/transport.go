package graphite

import (
	"context"
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
