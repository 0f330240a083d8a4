//go:build !race

// The race detector allocates on its own and randomly drops sync.Pool
// puts, so these tests run only without it (as net/netip's TestNoAllocs).

package ingest

import (
	"log/slog"
	"net"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"
)

// TestParseAllocatesNothing: parsing any line shape into a Sample, and
// parsing lines of other shapes one after another into the same Sample,
// allocates nothing once the Sample's slices have grown.
func TestParseAllocatesNothing(t *testing.T) {
	p := Parser{Dialect: Dialect{RelativeGauges: true, LiteralPrefix: []byte("prosody.")}}
	var lines []string
	for _, bl := range benchLines {
		lines = append(lines, bl.line)
	}
	lines = append(lines, reuseLines...)
	for _, line := range lines {
		b := []byte(line)
		var s Sample
		if n := testing.AllocsPerRun(100, func() { p.Parse(b, &s) }); n != 0 {
			t.Errorf("%q: %v allocations per parse", line, n)
		}
	}
	var s Sample
	all := make([][]byte, len(lines))
	for i, l := range lines {
		all[i] = []byte(l)
	}
	if n := testing.AllocsPerRun(100, func() {
		for _, b := range all {
			p.Parse(b, &s)
		}
	}); n != 0 {
		t.Errorf("every shape in turn into one Sample: %v allocations", n)
	}
}

// TestReaderDatagramAllocatesNothing: splitting a datagram into lines,
// parsing them, labelling them with their sender and handing the batch on
// allocates nothing per datagram.
func TestReaderDatagramAllocatesNothing(t *testing.T) {
	for _, label := range []string{"", "instance"} {
		r := NewReader(ReaderConfig{Parser: Parser{Dialect: Dialect{RelativeGauges: true}}, Handler: &discard{},
			Stats: &Stats{}, MaxLine: 1024, SourceLabel: label})
		datagram := []byte("a.b:1|c\nc.d:2|g\ne.f:3|ms|@0.5\ng.h:1|c|#k:v\nbad line\n")
		from := netip.MustParseAddr("192.0.2.7")
		if n := testing.AllocsPerRun(100, func() { r.Datagram(datagram, from); r.Flush() }); n != 0 {
			t.Errorf("source_label %q: %v allocations per datagram", label, n)
		}
	}
}

// TestUDPReadAllocatesNothing: a read from a UDP socket, through recvmmsg
// and on to the Handler, allocates nothing per datagram, with or without
// the sender's address.
func TestUDPReadAllocatesNothing(t *testing.T) {
	for _, label := range []string{"", "instance"} {
		socks, err := listenUDP("127.0.0.1:0", 1, 0, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		defer closeUDP(socks)
		u := socks[0]
		fd := u.fd
		stopFd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(stopFd)
		w := newUDPWaiter(fd, stopFd)
		// The sender writes with plain system calls: it must not allocate
		// either, as AllocsPerRun counts the whole process.
		sender, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(sender)
		to := &unix.SockaddrInet4{Port: int(u.bound.(*net.UDPAddr).AddrPort().Port()), Addr: [4]byte{127, 0, 0, 1}}
		if err := unix.Connect(sender, to); err != nil {
			t.Fatal(err)
		}
		r := NewReader(ReaderConfig{Parser: Parser{}, Handler: &discard{}, Stats: &Stats{}, MaxLine: 1024, SourceLabel: label})
		m := newMmsgReader(udpBatch, label != "")
		payload := []byte("prosody.prosody_mod_c2s.connections.localhost.c2s.ipv4:2|g")
		n := testing.AllocsPerRun(100, func() {
			if _, err := unix.Write(sender, payload); err != nil {
				t.Fatal(err)
			}
			if err := w.wait(); err != nil {
				t.Fatal(err)
			}
			m.read(uintptr(fd))
			u.handle(r, m)
		})
		if n != 0 {
			t.Errorf("source_label %q: %v allocations per datagram", label, n)
		}
		if got := r.stats.Datagrams.Load(); got != 101 {
			t.Errorf("%d datagrams read, want 101", got)
		}
	}
}
