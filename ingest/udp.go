package ingest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/statsbridge/statsbridge/throttle"
)

// udpSocket is one of the SO_REUSEPORT sockets of a UDP address; the kernel
// spreads datagrams over them, and each has its own reader goroutine.
//
// The socket is out of Go's netpoller (see detach): its reader sleeps in
// ppoll on a locked OS thread. Its descriptor belongs to the socket, not to
// a reader, so that a reload's new Server takes it over (ListenFrom) with
// whatever the kernel holds for it.
type udpSocket struct {
	fd         int
	configured string   // the address as configured, which a reload matches
	bound      net.Addr // the address it is bound to
	inode      uint64   // for the kernel's counters in /proc/net/udp
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
	// With port 0, the first socket picked the port; the others join it.
	addr = first.LocalAddr().String()
	if n > 1 {
		rc, err := first.SyscallConn()
		if err == nil {
			err = setReusePort(rc)
		}
		if err != nil {
			first.Close()
			return nil, err
		}
	}
	u, err := newUDPSocket(first)
	if err != nil {
		return nil, err
	}
	socks = append(socks, u)
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error { return setReusePort(rc) }}
	for len(socks) < n {
		pc, err := lc.ListenPacket(context.Background(), "udp", addr)
		if err != nil {
			return fail(err)
		}
		u, err := newUDPSocket(pc.(*net.UDPConn))
		if err != nil {
			return fail(err)
		}
		socks = append(socks, u)
	}
	if foreign := foreignUDPSockets(socks); len(foreign) > 0 {
		return fail(fmt.Errorf("%w: sockets %v share the port", errAddrInUse, foreign))
	}
	effective := 0
	for _, s := range socks {
		effective = setReadBuffer(s.fd, readBuffer, logger)
	}
	logger.Info("statsd udp socket", "addr", addr, "sockets", n,
		"read_buffer_asked", readBuffer, "read_buffer", effective)
	return socks, nil
}

// newUDPSocket takes a bound socket out of Go's netpoller: it keeps a
// duplicate of its descriptor and closes the net.UDPConn, which removes the
// original from the netpoller's epoll set. The descriptor stays
// non-blocking: the reader waits in ppoll only. When that fails, the
// socket is closed.
func newUDPSocket(c *net.UDPConn) (*udpSocket, error) {
	defer c.Close()
	u := &udpSocket{fd: -1, bound: c.LocalAddr(), inode: socketInode(c)}
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	if cerr := rc.Control(func(orig uintptr) { u.fd, err = unix.FcntlInt(orig, unix.F_DUPFD_CLOEXEC, 0) }); cerr != nil {
		return nil, cerr
	}
	if err != nil {
		return nil, err
	}
	return u, nil
}

func closeUDPSockets(socks []*udpSocket) {
	for _, s := range socks {
		unix.Close(s.fd)
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
func setReadBuffer(fd, size int, logger *slog.Logger) int {
	if size <= 0 {
		return 0
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, size)
	got, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF)
	if got/2 < size {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size); err == nil {
			got, _ = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF)
		}
	}
	if got/2 < size {
		logger.Warn("the kernel granted a smaller socket read buffer than asked; raise net.core.rmem_max or run as root",
			"asked", size, "granted", got/2)
	}
	return got / 2
}

// setConnReadBuffer is setReadBuffer for a socket still in Go's hands (a
// unixgram socket).
func setConnReadBuffer(c syscall.Conn, size int, logger *slog.Logger) int {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0
	}
	got := 0
	_ = rc.Control(func(fd uintptr) { got = setReadBuffer(int(fd), size, logger) })
	return got
}

// serve reads batches of datagrams with recvmmsg until ctx is done, then
// drains what the socket already holds and closes it, unless a newer Server
// took the socket over: then it leaves it as it is. After a read that
// empties the socket it waits up to cork (see readCork) before the next,
// so that at any steady rate each wake-up reads a batch.
//
// It reads on a locked OS thread of its own, outside Go's netpoller:
// there every datagram that arrives while the reader waits out the cork
// would wake a thread blocked in epoll_wait all the same, and cost what
// the cork saves. The thread sleeps in ppoll: on the socket and a stop
// eventfd while it waits for a datagram, on the eventfd alone while it
// waits out the cork.
func (u *udpSocket) serve(ctx context.Context, r *Reader, cork time.Duration, failed *throttle.Event) {
	fd := u.fd
	stopFd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		failed.Log("udp", u.bound.String(), "err", err)
		return
	}
	defer unix.Close(stopFd)
	// The eventfd is closed only once nothing can write to it any more: a
	// late write to its number, reused, would go to another file.
	stopped := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		var one [8]byte
		binary.NativeEndian.PutUint64(one[:], 1)
		unix.Write(stopFd, one[:])
		close(stopped)
	})
	defer func() {
		if !stop() {
			<-stopped
		}
	}()

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	m := newMmsgReader(udpBatch, r.sourceLabel != nil)
	corker := readCork{max: cork}
	w := newUDPWaiter(fd, stopFd)
	for ctx.Err() == nil {
		m.read(uintptr(fd))
		u.handle(r, m)
		switch {
		case m.errno == unix.EAGAIN:
			if err := w.wait(); err != nil {
				failed.Log("udp", u.bound.String(), "err", err)
				time.Sleep(100 * time.Millisecond) // a persistent error must not spin
			}
			continue
		case m.errno != 0:
			failed.Log("udp", u.bound.String(), "err", m.errno)
			time.Sleep(100 * time.Millisecond)
			continue
		case cork <= 0 || m.n == len(m.hdrs):
			continue // a full batch: more is queued
		}
		wait := corker.next(time.Now(), m.queued, m.rcvbuf)
		m.queued, m.rcvbuf = 0, 0
		if wait > 0 {
			w.sleep(wait)
			m.measure = true
		}
	}
	if u.taken.Load() {
		return // the newer Server reads on
	}
	defer unix.Close(fd)
	// Read what arrived before the stop without waiting for more.
	for deadline := time.Now().Add(drainTime); time.Now().Before(deadline); {
		m.n, m.errno = m.recv(uintptr(fd), unix.MSG_DONTWAIT)
		u.handle(r, m)
		if m.errno != 0 || m.n == 0 {
			if m.errno != 0 && m.errno != unix.EAGAIN {
				failed.Log("udp", u.bound.String(), "err", m.errno, "draining", true)
			}
			return
		}
	}
}

// udpWaiter is how a UDP reader thread sleeps: until its socket has a
// datagram, for a while, or until it is stopped.
type udpWaiter struct {
	fds [2]unix.PollFd // the stop eventfd, then the socket
}

func newUDPWaiter(fd, stopFd int) *udpWaiter {
	return &udpWaiter{fds: [2]unix.PollFd{{Fd: int32(stopFd), Events: unix.POLLIN}, {Fd: int32(fd), Events: unix.POLLIN}}}
}

// wait sleeps until the socket is readable or the reader is stopped.
func (w *udpWaiter) wait() error {
	_, err := unix.Ppoll(w.fds[:], nil, nil)
	if err == unix.EINTR {
		return nil
	}
	return err
}

// rawSleepMax bounds the sleeps a reader makes without telling Go's
// scheduler.
const rawSleepMax = 2 * time.Millisecond

// sleep sleeps for d, or until the reader is stopped; datagrams that
// arrive meanwhile wake nobody.
//
// A sleep of the cork's length is a raw system call: one the scheduler
// hears of has sysmon take the thread's P and hand it back, which cost
// about twice the CPU of the sleep itself (BENCHMARKS.md). The thread keeps
// its P meanwhile: a stop of the world waits for the sleep to end, and the
// P's other goroutines run elsewhere or when sysmon preempts the reader, so
// only sleeps up to rawSleepMax are made that way.
func (w *udpWaiter) sleep(d time.Duration) {
	ts := unix.NsecToTimespec(d.Nanoseconds())
	if d > rawSleepMax {
		unix.Ppoll(w.fds[:1], &ts, nil)
		return
	}
	unix.RawSyscall6(unix.SYS_PPOLL, uintptr(unsafe.Pointer(&w.fds[0])), 1, uintptr(unsafe.Pointer(&ts)), 0, 0, 0)
}

// handle hands the datagrams of the last read to the reader, and publishes
// the reader's counts.
func (u *udpSocket) handle(r *Reader, m *mmsgReader) {
	for i := range m.n {
		b, from := m.datagram(i)
		r.Datagram(b, from)
	}
	r.udpReads += m.calls
	m.calls = 0
	r.Flush()
}
