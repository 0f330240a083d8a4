package ingest

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// udpSocket is one of the SO_REUSEPORT sockets of a UDP address; the kernel
// spreads datagrams over them, and each has its own reader goroutine.
type udpSocket struct {
	conn   *net.UDPConn
	inode  uint64 // for the kernel's counters in /proc/net/udp
	logger *slog.Logger
}

// udpBatch is how many datagrams one recvmmsg call may return, and
// maxDatagram the largest UDP payload. Only the bytes the kernel writes
// become resident, so the buffers cost what the traffic uses.
const (
	udpBatch    = 64
	maxDatagram = 65536
)

func listenUDP(addr string, n, readBuffer int, logger *slog.Logger) ([]*udpSocket, error) {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	var socks []*udpSocket
	for i := 0; i < n; i++ {
		pc, err := lc.ListenPacket(context.Background(), "udp", addr)
		if err != nil {
			for _, s := range socks {
				s.conn.Close()
			}
			return nil, err
		}
		conn := pc.(*net.UDPConn)
		// With port 0, the first socket picks the port; the others join it.
		addr = conn.LocalAddr().String()
		effective := setReadBuffer(conn, readBuffer, logger)
		if i == 0 {
			logger.Info("statsd udp socket", "addr", addr, "sockets", n,
				"read_buffer_asked", readBuffer, "read_buffer", effective)
		}
		socks = append(socks, &udpSocket{conn: conn, inode: socketInode(conn), logger: logger})
	}
	return socks, nil
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
// drains what the socket already holds.
func (u *udpSocket) serve(ctx context.Context, r *Reader) {
	pc := ipv4.NewPacketConn(u.conn)
	msgs := make([]ipv4.Message, udpBatch)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{make([]byte, maxDatagram)}
	}
	stop := context.AfterFunc(ctx, func() { u.conn.SetReadDeadline(time.Now()) })
	defer stop()
	defer u.conn.Close()
	for {
		n, err := pc.ReadBatch(msgs, 0)
		u.handle(r, msgs[:max(n, 0)])
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			if !isTimeout(err) {
				u.logger.Error("statsd udp read failed", "addr", u.conn.LocalAddr().String(), "err", err)
				time.Sleep(100 * time.Millisecond) // a persistent error must not spin
			}
			continue
		}
	}
	// Read what arrived before the stop without waiting for more.
	u.conn.SetReadDeadline(time.Time{})
	deadline := time.Now().Add(drainTime)
	for time.Now().Before(deadline) {
		n, err := pc.ReadBatch(msgs, unix.MSG_DONTWAIT)
		u.handle(r, msgs[:max(n, 0)])
		if err != nil || n <= 0 {
			if err != nil && !errors.Is(err, unix.EAGAIN) {
				u.logger.Error("statsd udp drain failed", "err", err)
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
