package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"github.com/statsbridge/statsbridge/throttle"
)

// udpSocket is one of the SO_REUSEPORT sockets of a UDP address; the kernel
// spreads datagrams over them, and each has its own reader goroutine.
type udpSocket struct {
	conn  *net.UDPConn
	addr  string // as configured
	inode uint64 // for the kernel's counters in /proc/net/udp
	handover
}

// udpBatch is how many datagrams one recvmmsg call may return, and
// maxDatagram the largest UDP payload. Only the bytes the kernel writes
// become resident, so the buffers cost what the traffic uses.
const (
	udpBatch    = 64
	maxDatagram = 65536
)

// errAddrInUse is what binding a UDP address that another process holds
// says, whether it holds it alone or in a SO_REUSEPORT group it would share.
var errAddrInUse = errors.New("address already in use by another process (another statsbridge?)")

// listenUDP binds n sockets to addr, in one SO_REUSEPORT group when n > 1.
//
// Only our own sockets may share the port: SO_REUSEPORT lets any process of
// the same user join the group, and the kernel would silently hand it part
// of the datagrams. So the first socket binds without SO_REUSEPORT, which
// fails while any socket of any process holds the address, and only then
// allows reuse for our others to join (Linux takes SO_REUSEPORT after a
// bind, and the next socket to join forms the group). With one socket
// there is no group, and nobody can join. After the last bind, the kernel's
// socket table must show no other socket that takes our traffic (one that
// slipped in between our binds).
func listenUDP(addr string, n, readBuffer int, logger *slog.Logger) ([]*udpSocket, error) {
	var socks []*udpSocket
	fail := func(err error) ([]*udpSocket, error) {
		closeUDPSockets(socks)
		return nil, err
	}
	pc, err := net.ListenPacket("udp", addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, errAddrInUse
	}
	if err != nil {
		return nil, err
	}
	first := pc.(*net.UDPConn)
	socks = append(socks, newUDPSocket(first))
	// With port 0, the first socket picked the port; the others join it.
	addr = first.LocalAddr().String()
	if n > 1 {
		rc, err := first.SyscallConn()
		if err == nil {
			err = setReusePort(rc)
		}
		if err != nil {
			return fail(err)
		}
	}
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error { return setReusePort(rc) }}
	for len(socks) < n {
		pc, err := lc.ListenPacket(context.Background(), "udp", addr)
		if err != nil {
			return fail(err)
		}
		socks = append(socks, newUDPSocket(pc.(*net.UDPConn)))
	}
	if foreign := foreignUDPSockets(socks); len(foreign) > 0 {
		return fail(fmt.Errorf("%w: sockets %v share the port", errAddrInUse, foreign))
	}
	effective := 0
	for _, s := range socks {
		effective = setReadBuffer(s.conn, readBuffer, logger)
	}
	logger.Info("statsd udp socket", "addr", addr, "sockets", n,
		"read_buffer_asked", readBuffer, "read_buffer", effective)
	return socks, nil
}

func newUDPSocket(c *net.UDPConn) *udpSocket {
	return &udpSocket{conn: c, inode: socketInode(c)}
}

func closeUDPSockets(socks []*udpSocket) {
	for _, s := range socks {
		s.conn.Close()
	}
}

// setReusePort allows SO_REUSEPORT on a socket, before or after its bind.
func setReusePort(rc syscall.RawConn) error {
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	}); err != nil {
		return err
	}
	return serr
}

// setReadBuffer asks for SO_RCVBUF, and for SO_RCVBUFFORCE (which passes
// net.core.rmem_max, as root) when the kernel gave less. It returns what the
// kernel granted: Linux reports twice the usable size, as it counts its own
// bookkeeping.
func setReadBuffer(c syscall.Conn, size int, logger *slog.Logger) int {
	if size <= 0 {
		return 0
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return 0
	}
	got := 0
	_ = rc.Control(func(fd uintptr) {
		_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, size)
		got, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
		if got/2 < size {
			if err := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size); err == nil {
				got, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
			}
		}
	})
	if got/2 < size {
		logger.Warn("the kernel granted a smaller socket read buffer than asked; raise net.core.rmem_max or run as root",
			"asked", size, "granted", got/2)
	}
	return got / 2
}

// serve reads batches of datagrams with recvmmsg until ctx is done, then
// drains what the socket already holds, unless a newer Server took the
// socket over: then it leaves it as it is.
func (u *udpSocket) serve(ctx context.Context, r *Reader, failed *throttle.Event) {
	pc := ipv4.NewPacketConn(u.conn)
	msgs := make([]ipv4.Message, udpBatch)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{make([]byte, maxDatagram)}
	}
	u.conn.SetReadDeadline(time.Time{}) // a Server before may have stopped its reader so
	stop := context.AfterFunc(ctx, func() { u.conn.SetReadDeadline(time.Now()) })
	defer stop()
	for {
		n, err := pc.ReadBatch(msgs, 0)
		u.handle(r, msgs[:max(n, 0)])
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			if !isTimeout(err) {
				failed.Log("udp", u.conn.LocalAddr().String(), "err", err)
				time.Sleep(100 * time.Millisecond) // a persistent error must not spin
			}
			continue
		}
	}
	if u.taken.Load() {
		r.Flush()
		return
	}
	defer u.conn.Close()
	// Read what arrived before the stop without waiting for more.
	u.conn.SetReadDeadline(time.Time{})
	deadline := time.Now().Add(drainTime)
	for time.Now().Before(deadline) {
		n, err := pc.ReadBatch(msgs, unix.MSG_DONTWAIT)
		u.handle(r, msgs[:max(n, 0)])
		if err != nil || n <= 0 {
			if err != nil && !errors.Is(err, unix.EAGAIN) {
				failed.Log("udp", u.conn.LocalAddr().String(), "err", err, "draining", true)
			}
			return
		}
	}
}

func (u *udpSocket) handle(r *Reader, msgs []ipv4.Message) {
	if len(msgs) == 0 {
		return
	}
	for i := range msgs {
		m := &msgs[i]
		var from netip.Addr
		if a, ok := m.Addr.(*net.UDPAddr); ok {
			from, _ = netip.AddrFromSlice(a.IP)
		}
		r.Datagram(m.Buffers[0][:m.N], from)
	}
	r.Flush()
}
