package ingest

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/statsbridge/statsbridge/throttle"
)

// recorder is a Handler that keeps what it was given, as "name=value" text.
type recorder struct {
	mu    sync.Mutex
	lines []string
}

func (r *recorder) Handle(batch []Sample) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range batch {
		s := &batch[i]
		text := string(s.Name)
		for _, t := range s.Tags {
			text += ";" + string(t.Key) + "=" + string(t.Value)
		}
		if s.Type == Set {
			text += "=" + string(s.Member)
		} else {
			for _, v := range s.Values {
				text += "=" + formatValue(v)
			}
		}
		r.lines = append(r.lines, text)
	}
}

func formatValue(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

func (r *recorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := append([]string(nil), r.lines...)
	sort.Strings(out)
	return out
}

type testServer struct {
	*Server
	rec  *recorder
	stop func()
}

func serve(t *testing.T, cfg Config) *testServer {
	t.Helper()
	rec := &recorder{}
	cfg.NewHandler = func() Handler { return rec }
	if cfg.MaxLine == 0 {
		cfg.MaxLine = 1024
	}
	if cfg.TCPMaxConnections == 0 {
		cfg.TCPMaxConnections = 16
	}
	cfg.Readers = 2
	srv, err := Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(ctx); close(done) }()
	ts := &testServer{Server: srv, rec: rec}
	ts.stop = func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("Serve did not return after cancel")
		}
	}
	t.Cleanup(func() { cancel(); <-done })
	return ts
}

func TestUDPDatagramsAndShutdownDrain(t *testing.T) {
	ts := serve(t, Config{UDP: []string{"127.0.0.1:0"}})
	c, err := net.Dial("udp", ts.UDPAddrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("a:1|c\nb:2|g\r\nbad line\n\n"))
	c.Write([]byte("prosody.prosody_mod_c2s.connections.localhost.c2s.ipv4:1|g"))
	c.Write([]byte("\n\n\n"))
	// Sent right before the stop: already in the socket buffer, so the
	// drain must still hand it on.
	c.Write([]byte("last:5|c"))
	c.Close()
	ts.stop()
	want := []string{"a=1", "b=2", "last=5", "prosody.prosody_mod_c2s.connections.localhost.c2s.ipv4=1"}
	if got := ts.rec.got(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("got %v, want %v", got, want)
	}
	st := ts.Stats()
	if st.Datagrams.Load() != 4 || st.Lines.Load() != 5 || st.BadLines[ReasonMissingType].Load() != 1 {
		t.Errorf("datagrams %d lines %d missing_type %d", st.Datagrams.Load(), st.Lines.Load(), st.BadLines[ReasonMissingType].Load())
	}
}

func TestTCPFraming(t *testing.T) {
	ts := serve(t, Config{TCP: []string{"127.0.0.1:0"}, MaxLine: 600})
	c, err := net.Dial("tcp", ts.TCPAddrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	// A line split over writes, an over-long line (discarded up to its
	// newline and counted once), and a last line without a newline that a
	// half-close completes.
	c.Write([]byte("a:1|c\nb:"))
	time.Sleep(20 * time.Millisecond)
	c.Write([]byte("2|c\n" + strings.Repeat("x", 2000) + ":1|c\nafter:3|c\nlast:4|c"))
	c.(*net.TCPConn).CloseWrite()
	deadline := time.Now().Add(5 * time.Second)
	for len(ts.rec.got()) < 4 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	c.Close()
	ts.stop()
	want := "a=1 after=3 b=2 last=4"
	if got := strings.Join(ts.rec.got(), " "); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if n := ts.Stats().BadLines[ReasonTooLong].Load(); n != 1 {
		t.Errorf("too_long counted %d times, want 1", n)
	}
}

func TestTCPManyLinesInOneWrite(t *testing.T) {
	ts := serve(t, Config{TCP: []string{"127.0.0.1:0"}})
	c, err := net.Dial("tcp", ts.TCPAddrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte(strings.Repeat("n:1|c\n", 10000)))
	c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for len(ts.rec.got()) < 10000 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	ts.stop()
	if n := len(ts.rec.got()); n != 10000 {
		t.Errorf("got %d lines, want 10000", n)
	}
}

func TestTCPConnectionLimit(t *testing.T) {
	ts := serve(t, Config{TCP: []string{"127.0.0.1:0"}, TCPMaxConnections: 1})
	addr := ts.TCPAddrs()[0].String()
	first, _ := net.Dial("tcp", addr)
	defer first.Close()
	first.Write([]byte("held:1|c\n"))
	deadline := time.Now().Add(5 * time.Second)
	for len(ts.rec.got()) < 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	second, _ := net.Dial("tcp", addr)
	defer second.Close()
	second.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := second.Read(make([]byte, 1)); err == nil {
		t.Error("a connection over the limit was kept open")
	}
	if n := ts.Stats().Refused[RefusedMaxConnections].Load(); n != 1 {
		t.Errorf("refused %d, want 1", n)
	}
}

func TestTCPIdleTimeout(t *testing.T) {
	ts := serve(t, Config{TCP: []string{"127.0.0.1:0"}, TCPIdleTimeout: 100 * time.Millisecond})
	c, _ := net.Dial("tcp", ts.TCPAddrs()[0].String())
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || strings.Contains(err.Error(), "timeout") {
		t.Errorf("idle connection not closed by the server: %v", err)
	}
	waitUntil(t, "the idle timeout counted", func() bool { return ts.Stats().IdleTimeouts.Load() == 1 })
	if n := ts.Stats().LineTimeouts.Load(); n != 0 {
		t.Errorf("%d line timeouts with tcp_line_timeout off", n)
	}
}

func TestUnixgramReplacesStaleSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "statsd.sock")
	// A socket file left behind, as by a process that crashed.
	stale, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	stale.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("no stale socket: %v", err)
	}

	ts := serve(t, Config{Unixgram: []string{path}, UnixgramMode: 0o660})
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o660 {
		t.Fatalf("socket mode %v, %v", fi.Mode(), err)
	}
	c, err := net.Dial("unixgram", path)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("u:1|c\nv:2|c"))
	c.Close()
	ts.stop()
	if got := strings.Join(ts.rec.got(), " "); got != "u=1 v=2" {
		t.Errorf("got %q", got)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("socket file left after stop: %v", err)
	}
}

// TestCloseWithoutServeReleasesEverything: a Server closed without serving
// (statsbridge failed to start after Listen) frees its ports and removes
// its socket files.
func TestCloseWithoutServeReleasesEverything(t *testing.T) {
	path := filepath.Join(t.TempDir(), "statsd.sock")
	srv, err := Listen(Config{UDP: []string{"127.0.0.1:0"}, TCP: []string{"127.0.0.1:0"}, Unixgram: []string{path},
		MaxLine: 1024, NewHandler: func() Handler { return &recorder{} }})
	if err != nil {
		t.Fatal(err)
	}
	tcp := srv.TCPAddrs()[0].String()
	srv.Close()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("socket file left after Close: %v", err)
	}
	l, err := net.Listen("tcp", tcp)
	if err != nil {
		t.Errorf("TCP port still held after Close: %v", err)
	} else {
		l.Close()
	}
}

func TestListenRefusesNonSocketFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "not-a-socket")
	os.WriteFile(path, []byte("data"), 0o644)
	if _, err := Listen(Config{Unixgram: []string{path}, NewHandler: func() Handler { return &recorder{} }}); err == nil {
		t.Error("Listen replaced a regular file")
	}
	if b, _ := os.ReadFile(path); string(b) != "data" {
		t.Error("the file was touched")
	}
}

func TestSourceLabel(t *testing.T) {
	ts := serve(t, Config{UDP: []string{"127.0.0.1:0"}, SourceLabel: "instance"})
	c, _ := net.Dial("udp", ts.UDPAddrs()[0].String())
	c.Write([]byte("a:1|c|#env:x"))
	c.Close()
	ts.stop()
	if got := strings.Join(ts.rec.got(), " "); got != "a;env=x;instance=127.0.0.1=1" {
		t.Errorf("got %q", got)
	}
}

// TestUDPKernelDrops overflows a socket nobody reads and finds the kernel's
// drop count.
func TestUDPKernelDrops(t *testing.T) {
	srv, err := Listen(Config{UDP: []string{"127.0.0.1:0"}, Readers: 1, ReadBuffer: 1, MaxLine: 1024,
		NewHandler: func() Handler { return &recorder{} }})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if _, ok := srv.UDPKernel(); !ok {
		t.Skip("this kernel has no /proc/net/udp")
	}
	c, _ := net.Dial("udp", srv.UDPAddrs()[0].String())
	defer c.Close()
	payload := []byte(strings.Repeat("x", 1000) + ":1|c")
	for i := 0; i < 200; i++ {
		c.Write(payload)
	}
	st, _ := srv.UDPKernel()
	if st.Drops == 0 || st.Queued == 0 {
		t.Errorf("kernel stats %+v: want drops and a queue", st)
	}
}

func TestLineLengthLimit(t *testing.T) {
	const maxLine = 64 << 10
	rec := &recorder{}
	st := &Stats{}
	r := NewReader(ReaderConfig{Handler: rec, Stats: st, MaxLine: maxLine})
	name := func(n int) string { return strings.Repeat("n", n-len(":1|c")) }
	r.Datagram([]byte(name(maxLine)+":1|c\n"+name(maxLine+1)+":1|c\nafter:1|c"), netip.Addr{})
	r.Flush()
	if got := len(rec.got()); got != 2 {
		t.Errorf("%d lines accepted, want the 64 KiB one and the last", got)
	}
	if st.BadLines[ReasonTooLong].Load() != 1 || st.Lines.Load() != 3 {
		t.Errorf("too_long %d of %d lines", st.BadLines[ReasonTooLong].Load(), st.Lines.Load())
	}
}

func TestDatagramOfNewlinesOnly(t *testing.T) {
	rec := &recorder{}
	st := &Stats{}
	r := NewReader(ReaderConfig{Handler: rec, Stats: st, MaxLine: 1024})
	r.Datagram([]byte("\n\r\n\n"), netip.Addr{})
	r.Flush()
	if len(rec.got()) != 0 || st.Lines.Load() != 0 || st.Datagrams.Load() != 1 {
		t.Errorf("lines %d, datagrams %d, samples %v", st.Lines.Load(), st.Datagrams.Load(), rec.got())
	}
}

func TestUDPOverIPv6(t *testing.T) {
	ts := serve(t, Config{UDP: []string{"[::1]:0"}})
	c, err := net.Dial("udp", ts.UDPAddrs()[0].String())
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	c.Write([]byte("v6:1|c"))
	c.Close()
	ts.stop()
	if got := strings.Join(ts.rec.got(), " "); got != "v6=1" {
		t.Errorf("got %q", got)
	}
}

// TestTCPConnectionsQueuedAtStopAreRead: a client that connected and wrote
// before the stop, but that the server had not accepted yet, is not lost.
func TestTCPConnectionsQueuedAtStopAreRead(t *testing.T) {
	rec := &recorder{}
	srv, err := Listen(Config{TCP: []string{"127.0.0.1:0"}, MaxLine: 1024, TCPMaxConnections: 16,
		NewHandler: func() Handler { return rec }})
	if err != nil {
		t.Fatal(err)
	}
	// Connect and write before anything accepts: the kernel queues it.
	c, err := net.Dial("tcp", srv.TCPAddrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("queued:1|c\n"))
	c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // stopped before it ever ran
	srv.Serve(ctx)
	if got := strings.Join(rec.got(), " "); got != "queued=1" {
		t.Errorf("got %q: the queued connection was lost", got)
	}
}

// TestTCPTakesALineOfMaxLineWithCRLF: a line of exactly max_line bytes is
// accepted over TCP with "\r\n" as with "\n", as over UDP, also when it
// arrives a byte at a time.
func TestTCPTakesALineOfMaxLineWithCRLF(t *testing.T) {
	const maxLine = 600
	ts := serve(t, Config{TCP: []string{"127.0.0.1:0"}, MaxLine: maxLine})
	c, err := net.Dial("tcp", ts.TCPAddrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Repeat("n", maxLine-len(":1|c")) + ":1|c"
	c.Write([]byte(line + "\r\n"))
	for _, b := range []byte("slow:2|c\r\n") {
		c.Write([]byte{b})
		time.Sleep(time.Millisecond)
	}
	c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for len(ts.rec.got()) < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	ts.stop()
	if got := ts.rec.got(); len(got) != 2 || ts.Stats().BadLines[ReasonTooLong].Load() != 0 {
		t.Errorf("accepted %d lines, %d too long", len(got), ts.Stats().BadLines[ReasonTooLong].Load())
	}
}

// otherGroup returns a group other than the process's own that the process
// may give its files to: any group as root, a supplementary group otherwise.
func otherGroup(t *testing.T) *user.Group {
	t.Helper()
	var candidates []string
	if os.Geteuid() == 0 {
		candidates = []string{"adm", "daemon", "nogroup"}
	} else {
		gids, _ := os.Getgroups()
		for _, gid := range gids {
			candidates = append(candidates, strconv.Itoa(gid))
		}
	}
	for _, c := range candidates {
		g, err := user.LookupGroup(c)
		if err != nil {
			g, err = user.LookupGroupId(c)
		}
		if err == nil && g.Gid != strconv.Itoa(os.Getegid()) {
			return g
		}
	}
	t.Skip("no group other than the process's own to give the socket to")
	return nil
}

// TestUnixgramSocketModeAndGroup: the socket file gets unixgram_mode and
// unixgram_group, by name or number; "" is the process's group.
func TestUnixgramSocketModeAndGroup(t *testing.T) {
	other := otherGroup(t)
	tests := []struct {
		name    string
		group   string
		mode    os.FileMode
		wantGid string
	}{
		{"process group", "", 0o660, strconv.Itoa(os.Getegid())},
		{"group by name", other.Name, 0o660, other.Gid},
		{"group by number", other.Gid, 0o620, other.Gid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "statsd.sock")
			ts := serve(t, Config{Unixgram: []string{path}, UnixgramMode: tt.mode, UnixgramGroup: tt.group})
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != tt.mode {
				t.Errorf("mode %04o, want %04o", fi.Mode().Perm(), tt.mode)
			}
			if gid := strconv.Itoa(int(fi.Sys().(*syscall.Stat_t).Gid)); gid != tt.wantGid {
				t.Errorf("group %s, want %s", gid, tt.wantGid)
			}
			c, err := net.Dial("unixgram", path)
			if err != nil {
				t.Fatal(err)
			}
			c.Write([]byte("g:1|c"))
			c.Close()
			ts.stop()
			if got := strings.Join(ts.rec.got(), " "); got != "g=1" {
				t.Errorf("got %q", got)
			}
		})
	}
}

func TestUnixgramUnknownGroupIsAnError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "statsd.sock")
	_, err := Listen(Config{Unixgram: []string{path}, UnixgramMode: 0o660, UnixgramGroup: "no-such-group-statsbridge",
		NewHandler: func() Handler { return &recorder{} }})
	if err == nil || !strings.Contains(err.Error(), "unixgram_group") || !strings.Contains(err.Error(), "no-such-group-statsbridge") {
		t.Fatalf("Listen: %v, want an error naming unixgram_group and the group", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file left after the error: %v", err)
	}
}

// waitUntil polls cond for up to 10 seconds.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after 10s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (r *recorder) has(line string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, l := range r.lines {
		if l == line {
			return true
		}
	}
	return false
}

// closedByServer reports whether the server ended c (EOF or reset) within
// five seconds; false if c is still open.
func closedByServer(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

// TestTCPIdleConnectionsFreeTheirSlotsAtLineTimeout: connections that never
// send a line fill every slot; once tcp_line_timeout passes they are closed
// and counted, and a real client's line gets through.
func TestTCPIdleConnectionsFreeTheirSlotsAtLineTimeout(t *testing.T) {
	const slots = 32
	ts := serve(t, Config{TCP: []string{"127.0.0.1:0"}, TCPMaxConnections: slots,
		TCPIdleTimeout: 5 * time.Minute, TCPLineTimeout: 500 * time.Millisecond})
	addr := ts.TCPAddrs()[0].String()
	var hogs []net.Conn
	for range slots {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		hogs = append(hogs, c)
	}
	waitUntil(t, "every slot taken", func() bool {
		return ts.Stats().Connections.Load() == slots || ts.Stats().LineTimeouts.Load() > 0
	})

	// A real client retries, as clients do, until its line is in.
	waitUntil(t, "the real client's line accepted", func() bool {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Write([]byte("real:1|c\n"))
			time.Sleep(50 * time.Millisecond)
			c.Close()
		}
		return ts.rec.has("real=1")
	})
	if !closedByServer(hogs[0]) {
		t.Error("an idle connection is still open")
	}
	if n := ts.Stats().LineTimeouts.Load(); n < slots {
		t.Errorf("%d connections closed at tcp_line_timeout, want %d", n, slots)
	}
}

// TestTCPLineTimeoutCutsUnfinishedLinesOnly: a client that sits idle
// between complete lines is under tcp_idle_timeout, not tcp_line_timeout; a
// client that trickles a line it never ends is cut.
func TestTCPLineTimeoutCutsUnfinishedLinesOnly(t *testing.T) {
	const lineTimeout = 300 * time.Millisecond
	ts := serve(t, Config{TCP: []string{"127.0.0.1:0"}, TCPIdleTimeout: time.Minute, TCPLineTimeout: lineTimeout})
	addr := ts.TCPAddrs()[0].String()

	quiet, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer quiet.Close()
	quiet.Write([]byte("a:1|c\n"))
	waitUntil(t, "the first line", func() bool { return ts.rec.has("a=1") })
	time.Sleep(3 * lineTimeout)
	if _, err := quiet.Write([]byte("b:1|c\n")); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the line after a quiet spell", func() bool { return ts.rec.has("b=1") })

	slow, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	slow.Write([]byte("c:1|c\nd:"))
	stop := make(chan struct{})
	trickled := make(chan struct{})
	go func() {
		defer close(trickled)
		for {
			select {
			case <-stop:
				return
			case <-time.After(lineTimeout / 4):
			}
			if _, err := slow.Write([]byte("1")); err != nil {
				return
			}
		}
	}()
	closed := closedByServer(slow)
	close(stop)
	<-trickled
	if !closed {
		t.Fatal("a line trickled for 5s without an end was not cut")
	}
	if !ts.rec.has("c=1") || ts.Stats().LineTimeouts.Load() != 1 {
		t.Errorf("got %v, %d line timeouts; want c=1 and 1", ts.rec.got(), ts.Stats().LineTimeouts.Load())
	}
}

// TestTCPConnectionsPerSource: one address gets at most
// tcp_max_connections_per_source slots; another address still gets one, and
// a slot given back can be taken again.
func TestTCPConnectionsPerSource(t *testing.T) {
	ts := serve(t, Config{TCP: []string{"127.0.0.1:0"}, TCPMaxConnections: 16, TCPMaxConnectionsPerSource: 2})
	addr := ts.TCPAddrs()[0].String()
	dialFrom := func(src string) net.Conn {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	first, second := dialFrom("127.0.0.1"), dialFrom("127.0.0.1")
	first.Write([]byte("first:1|c\n"))
	second.Write([]byte("second:1|c\n"))
	waitUntil(t, "two connections", func() bool { return ts.rec.has("first=1") && ts.rec.has("second=1") })

	if !closedByServer(dialFrom("127.0.0.1")) {
		t.Error("a third connection from one address was kept")
	}
	if n := ts.Stats().Refused[RefusedPerSource].Load(); n != 1 {
		t.Errorf("refused per source %d, want 1", n)
	}

	other := dialFrom("127.0.0.2")
	other.Write([]byte("other:1|c\n"))
	waitUntil(t, "a line from another address", func() bool { return ts.rec.has("other=1") })

	first.Close()
	waitUntil(t, "the slot given back", func() bool { return ts.Stats().Connections.Load() == 2 })
	again := dialFrom("127.0.0.1")
	again.Write([]byte("again:1|c\n"))
	waitUntil(t, "a line on the slot given back", func() bool { return ts.rec.has("again=1") })
	if n := ts.Stats().Refused[RefusedMaxConnections].Load(); n != 0 {
		t.Errorf("refused at tcp_max_connections %d, want 0", n)
	}
}

func TestTCPSourceOf(t *testing.T) {
	tests := []struct {
		a, b string
		same bool
	}{
		{"192.0.2.1", "192.0.2.1", true},
		{"192.0.2.1", "192.0.2.2", false},
		{"::ffff:192.0.2.1", "192.0.2.1", true},
		{"2001:db8::1", "2001:db8::ffff:2", true}, // one host's /64
		{"2001:db8::1", "2001:db8:0:1::1", false},
		{"::1", "127.0.0.1", false},
	}
	for _, tt := range tests {
		a, b := sourceOf(netip.MustParseAddr(tt.a)), sourceOf(netip.MustParseAddr(tt.b))
		if (a == b) != tt.same {
			t.Errorf("%s is %v, %s is %v: same source %v, want %v", tt.a, a, tt.b, b, a == b, tt.same)
		}
	}
}

// syncBuffer is a bytes.Buffer for a logger written from several goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestTCPRefusalsAreThrottledAndCounted: 3,000 refused connections write a
// couple of log lines, which account for every refusal.
func TestTCPRefusalsAreThrottledAndCounted(t *testing.T) {
	const refusals = 3000
	var logs syncBuffer
	events := throttle.New(slog.New(slog.NewTextHandler(&logs, nil)), time.Minute)
	ts := serve(t, Config{TCP: []string{"127.0.0.1:0"}, TCPMaxConnections: 1, Events: events})
	addr := ts.TCPAddrs()[0].String()
	holder, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	holder.Write([]byte("held:1|c\n"))
	waitUntil(t, "the slot held", func() bool { return ts.rec.has("held=1") })

	refused := func() uint64 { return ts.Stats().Refused[RefusedMaxConnections].Load() }
	for i := range refusals {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		if i%200 == 199 { // keep within the listen backlog
			waitUntil(t, "refusals counted", func() bool { return refused() >= uint64(i+1) })
		}
	}
	waitUntil(t, "every refusal counted", func() bool { return refused() == refusals })
	events.Flush()

	var lines, suppressed int
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if !strings.Contains(line, "statsd tcp connection refused") {
			continue
		}
		lines++
		if !strings.Contains(line, "held back") {
			suppressed++ // the event the line is written for
		}
		if _, n, ok := strings.Cut(line, "suppressed="); ok {
			v, _ := strconv.Atoi(strings.Fields(n)[0])
			suppressed += v
		}
	}
	if lines > 3 || suppressed != refusals {
		t.Errorf("%d log lines accounting for %d refusals; want a few for %d:\n%s", lines, suppressed, refusals, logs.String())
	}
}
