package ingest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// holdEnv tells the test binary, run again as a child process, to bind the
// UDP address it holds with SO_REUSEPORT, as a second statsbridge would.
const holdEnv = "STATSBRIDGE_TEST_HOLD_UDP"

// TestHelperHoldUDPPort is not a test: it is the child process of
// holdUDPPort. It binds, prints the bound address, and holds the socket
// until its standard input closes.
func TestHelperHoldUDPPort(t *testing.T) {
	addr := os.Getenv(holdEnv)
	if addr == "" {
		t.Skip("only run as holdUDPPort's child process")
	}
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) {
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		})
	}}
	pc, err := lc.ListenPacket(context.Background(), "udp", addr)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Println("bound", pc.LocalAddr())
	io.Copy(io.Discard, os.Stdin)
	pc.Close()
	os.Exit(0)
}

// holdUDPPort binds addr with SO_REUSEPORT in another process, as another
// statsbridge of the same user would, and returns the bound address, or
// the bind's error. The process ends with the test.
func holdUDPPort(t *testing.T, addr string) (string, error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperHoldUDPPort$")
	cmd.Env = append(os.Environ(), holdEnv+"="+addr)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("the holding process said nothing: %v", err)
	}
	what, rest, _ := strings.Cut(strings.TrimSpace(line), " ")
	if what != "bound" {
		return "", fmt.Errorf("%s", rest)
	}
	return rest, nil
}

const inUse = "address already in use by another process"

// TestUDPRefusesAPortAnotherProcessHolds: another process that holds the
// port with SO_REUSEPORT would get part of the datagrams; Listen refuses
// to share it, and says why.
func TestUDPRefusesAPortAnotherProcessHolds(t *testing.T) {
	held, err := holdUDPPort(t, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	for _, readers := range []int{1, 4} {
		srv, err := Listen(Config{UDP: []string{held}, Readers: readers, MaxLine: 1024,
			NewHandler: func() Handler { return &recorder{} }})
		if err == nil {
			srv.Close()
			t.Fatalf("readers = %d: Listen shared %s with another process", readers, held)
		}
		if !strings.Contains(err.Error(), inUse) || !strings.Contains(err.Error(), held) {
			t.Errorf("readers = %d: error %q, want it to name %s and say %q", readers, err, held, inUse)
		}
	}
}

// TestUDPOneReaderCannotBeJoined: with one reader there is no group to
// share, so the socket does not allow SO_REUSEPORT, and another process's
// SO_REUSEPORT bind to the port fails.
func TestUDPOneReaderCannotBeJoined(t *testing.T) {
	srv, err := Listen(Config{UDP: []string{"127.0.0.1:0"}, Readers: 1, MaxLine: 1024,
		NewHandler: func() Handler { return &recorder{} }})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if held, err := holdUDPPort(t, srv.UDPAddrs()[0].String()); err == nil {
		t.Fatalf("another process bound %s beside statsbridge", held)
	}
}

// TestUDPForeignSocketsOnOurPort: the check after binding finds a socket of
// another process on our port (one that joined between our binds), and
// none when only ours are there.
func TestUDPForeignSocketsOnOurPort(t *testing.T) {
	socks, err := listenUDP("127.0.0.1:0", 3, 0, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer closeUDP(socks)
	if _, ok := udpSocketsOn(0); !ok {
		t.Skip("this kernel has no /proc/net/udp")
	}
	if foreign := foreignUDPSockets(socks); len(foreign) != 0 {
		t.Fatalf("our own sockets taken for foreign ones: %v", foreign)
	}
	// Our sockets allow SO_REUSEPORT: a process of the same user can join
	// them, which the check must find. Make it join at the kernel level:
	// as the other process does in the window between our binds.
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1) })
	}}
	intruder, err := lc.ListenPacket(context.Background(), "udp", socks[0].bound.String())
	if err != nil {
		t.Fatal(err)
	}
	defer intruder.Close()
	foreign := foreignUDPSockets(socks)
	if len(foreign) != 1 || foreign[0] != socketInode(intruder.(*net.UDPConn)) {
		t.Errorf("foreign sockets %v, want the intruder's inode %d", foreign, socketInode(intruder.(*net.UDPConn)))
	}
}

// TestUDPOwnSocketsShareAPort: several readers on one fixed port (and on
// port 0) share it, and each gets datagrams.
func TestUDPOwnSocketsShareAPort(t *testing.T) {
	free, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fixed := free.LocalAddr().String()
	free.Close()
	for _, addr := range []string{fixed, "127.0.0.1:0"} {
		t.Run(addr, func(t *testing.T) {
			const readers, datagrams = 4, 400
			socks, err := listenUDP(addr, readers, 0, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			defer closeUDP(socks)
			if len(socks) != readers {
				t.Fatalf("%d sockets, want %d", len(socks), readers)
			}
			for i := range datagrams { // each from its own port, so the kernel spreads them
				c, err := net.Dial("udp", socks[0].bound.String())
				if err != nil {
					t.Fatal(err)
				}
				fmt.Fprintf(c, "n:%d|c", i)
				c.Close()
			}
			total := 0
			buf := make([]byte, 64)
			for i, s := range socks {
				got := 0
				for {
					// Everything was sent: what is not queued yet is not coming.
					if !readDatagram(s.fd, buf, 200*time.Millisecond) {
						break
					}
					got++
				}
				if got == 0 {
					t.Errorf("socket %d got no datagram", i)
				}
				total += got
			}
			if total != datagrams {
				t.Errorf("%d datagrams received, want %d", total, datagrams)
			}
		})
	}
}

func TestParseProcNetAddr(t *testing.T) {
	tests := []struct {
		text string
		want string
	}{
		{"0100007F:1FBD", "127.0.0.1:8125"},
		{"00000000:1FBD", "0.0.0.0:8125"},
		{"00000000000000000000000001000000:1FBD", "[::1]:8125"},
		{"0000000000000000FFFF00000200007F:1FBE", "[::ffff:127.0.0.2]:8126"},
		{"00000000000000000000000000000000:0000", "[::]:0"},
		{"0100007F", ""},
		{"0100007:1FBD", ""},
		{"zz00007F:1FBD", ""},
	}
	for _, tt := range tests {
		got, ok := parseProcNetAddr([]byte(tt.text))
		if tt.want == "" {
			if ok {
				t.Errorf("%s: parsed as %v", tt.text, got)
			}
			continue
		}
		if !ok || got != netip.MustParseAddrPort(tt.want) {
			t.Errorf("%s: got %v %v, want %s", tt.text, got, ok, tt.want)
		}
	}
}

func TestTakesTrafficFor(t *testing.T) {
	tests := []struct {
		ours, theirs string
		want         bool
	}{
		{"127.0.0.1", "127.0.0.1", true},
		{"127.0.0.1", "::ffff:127.0.0.1", true},
		{"127.0.0.1", "127.0.0.2", false},
		{"127.0.0.1", "0.0.0.0", false}, // a wildcard takes only what no specific socket takes
		{"127.0.0.1", "::", false},
		{"::", "127.0.0.1", true}, // a specific socket takes traffic from our wildcard
		{"::", "::1", true},
		{"0.0.0.0", "127.0.0.1", true},
		{"0.0.0.0", "::1", false}, // an IPv4 wildcard gets no IPv6
		{"::1", "::1", true},
		{"::1", "127.0.0.1", false},
	}
	for _, tt := range tests {
		if got := takesTrafficFor(netip.MustParseAddr(tt.theirs), netip.MustParseAddr(tt.ours)); got != tt.want {
			t.Errorf("a socket on %s beside ours on %s: %v, want %v", tt.theirs, tt.ours, got, tt.want)
		}
	}
}

func closeUDP(socks []*udpSocket) { closeUDPSockets(socks) }

// readDatagram reads one datagram from a socket out of Go's netpoller,
// waiting for it up to timeout.
func readDatagram(fd int, buf []byte, timeout time.Duration) bool {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	if n, err := unix.Poll(fds, int(timeout.Milliseconds())); err != nil || n == 0 {
		return false
	}
	_, err := unix.Read(fd, buf)
	return err == nil
}
