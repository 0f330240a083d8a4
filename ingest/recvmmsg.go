package ingest

import (
	"net/netip"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsgReader is one UDP socket's recvmmsg arguments: message headers,
// iovecs, buffers and (only when the sender's address is wanted) room for
// the addresses, built once and reused by every read. A read packs
// nothing and allocates nothing.
type mmsgReader struct {
	hdrs  []unix.Mmsghdr
	bufs  [][]byte
	names []unix.RawSockaddrInet6 // nil unless senders are wanted
	// What the last read found: n datagrams, or errno.
	n     int
	errno unix.Errno
	// calls counts recvmmsg calls, those that found nothing included,
	// until the reader publishes them.
	calls uint64
	// measure asks the next read to take the socket's memory use first;
	// queued and rcvbuf are what it found, in the kernel's accounting.
	measure        bool
	queued, rcvbuf int
}

func newMmsgReader(batch int, senders bool) *mmsgReader {
	m := &mmsgReader{hdrs: make([]unix.Mmsghdr, batch), bufs: make([][]byte, batch)}
	iovs := make([]unix.Iovec, batch)
	if senders {
		m.names = make([]unix.RawSockaddrInet6, batch)
	}
	for i := range m.hdrs {
		m.bufs[i] = make([]byte, maxDatagram)
		iovs[i].Base = &m.bufs[i][0]
		iovs[i].SetLen(maxDatagram)
		h := &m.hdrs[i].Hdr
		h.Iov = &iovs[i]
		h.SetIovlen(1)
		if senders {
			h.Name = (*byte)(unsafe.Pointer(&m.names[i]))
			h.Namelen = unix.SizeofSockaddrInet6
		}
	}
	return m
}

// read reads what is queued without waiting: m.n datagrams, or m.errno
// (EAGAIN when nothing was).
func (m *mmsgReader) read(fd uintptr) {
	if m.measure {
		m.measure = false
		m.queued, m.rcvbuf = socketMemory(fd)
	}
	m.n, m.errno = m.recv(fd, unix.MSG_DONTWAIT)
}

func (m *mmsgReader) recv(fd uintptr, flags int) (int, unix.Errno) {
	m.calls++
	// Raw: the call never blocks, so the scheduler need not know of it.
	n, _, errno := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&m.hdrs[0])), uintptr(len(m.hdrs)),
		uintptr(flags), 0, 0)
	if errno != 0 {
		return 0, errno
	}
	if m.names != nil {
		// The kernel wrote each address's length where it wrote one.
		for i := range int(n) {
			m.hdrs[i].Hdr.Namelen = unix.SizeofSockaddrInet6
		}
	}
	return int(n), 0
}

// datagram returns the payload of message i of the last read, and its
// sender when senders are wanted.
func (m *mmsgReader) datagram(i int) ([]byte, netip.Addr) {
	b := m.bufs[i][:m.hdrs[i].Len]
	if m.names == nil {
		return b, netip.Addr{}
	}
	switch sa := &m.names[i]; sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return b, netip.AddrFrom4(sa4.Addr)
	case unix.AF_INET6:
		return b, netip.AddrFrom16(sa.Addr)
	}
	return b, netip.Addr{}
}

// socketMemory returns the bytes a socket's queued datagrams take in the
// kernel's accounting (payload and overhead), and the limit past which it
// drops them (SO_MEMINFO). SIOCINQ would not do: on a UDP socket it tells
// the size of the next datagram only. Zeros where the kernel does not say.
func socketMemory(fd uintptr) (queued, limit int) {
	var info [unix.SK_MEMINFO_VARS]uint32
	size := uint32(unsafe.Sizeof(info))
	_, _, errno := unix.RawSyscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_SOCKET, unix.SO_MEMINFO,
		uintptr(unsafe.Pointer(&info)), uintptr(unsafe.Pointer(&size)), 0)
	if errno != 0 {
		return 0, 0
	}
	return int(info[unix.SK_MEMINFO_RMEM_ALLOC]), int(info[unix.SK_MEMINFO_RCVBUF])
}

// readCork decides how long a UDP reader waits after a read that drained
// its socket, so that the next read takes a batch rather than one datagram:
// waking up costs more than reading. The wait is at most max, and short
// enough that, at the rate the socket filled during the last wait, it
// would fill no more than a quarter of its buffer.
type readCork struct {
	max     time.Duration
	drained time.Time // when a read last left the socket empty
}

// minCorkWait is the shortest wait worth a timer.
const minCorkWait = 20 * time.Microsecond

// next returns the wait after a read that left the socket empty at now,
// having found queued bytes of the socket's limit before it read (both 0
// when not measured).
func (c *readCork) next(now time.Time, queued, limit int) time.Duration {
	wait := c.max
	if since := now.Sub(c.drained); queued > 0 && limit > 0 && since > 0 && !c.drained.IsZero() {
		// queued bytes arrived in since: the wait may let limit/4 arrive.
		if fill := time.Duration(float64(since) * float64(limit/4) / float64(queued)); fill < wait {
			wait = fill
		}
	}
	c.drained = now
	if wait < minCorkWait {
		return 0
	}
	return wait
}
