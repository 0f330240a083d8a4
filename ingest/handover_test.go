package ingest

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestListenFromTakesOverWithoutLoss: a reload's new Server takes over the
// sockets both configurations name. Datagrams sent before, during and after
// the handover all arrive, a TCP connection on a listener kept stays up, and
// the listeners and sockets no longer configured are closed.
func TestListenFromTakesOverWithoutLoss(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "statsd.sock")
	rec := &recorder{}
	cfg := Config{UDP: []string{"127.0.0.1:0"}, TCP: []string{"127.0.0.1:0"}, Unixgram: []string{sock}, Readers: 2,
		MaxLine: 1024, TCPMaxConnections: 16, UnixgramMode: 0o660, NewHandler: func() Handler { return rec }}
	old, err := Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var serving sync.WaitGroup
	serving.Go(func() { old.Serve(ctx) })
	udpAddr, tcpAddr := old.UDPAddrs()[0].String(), old.TCPAddrs()[0].String()

	udp, err := net.Dial("udp", udpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	tcp, err := net.Dial("tcp", tcpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	sent := 0
	stopSending := make(chan struct{})
	var sending sync.WaitGroup
	sending.Go(func() {
		for {
			select {
			case <-stopSending:
				return
			default:
			}
			fmt.Fprintf(udp, "u:%d|c", sent)
			sent++
			time.Sleep(200 * time.Microsecond)
		}
	})
	fmt.Fprint(tcp, "t:1|c\n")

	// The new configuration keeps UDP and TCP and drops the unixgram socket;
	// it adds a second TCP listener.
	next := cfg
	next.Unixgram = nil
	next.TCP = []string{"127.0.0.1:0", "127.0.0.2:0"}
	time.Sleep(20 * time.Millisecond)
	srv, err := ListenFrom(next, old)
	if err != nil {
		t.Fatal(err)
	}
	old.Retire()
	serving.Go(func() { srv.Serve(ctx) })
	time.Sleep(20 * time.Millisecond)
	close(stopSending)
	sending.Wait()
	fmt.Fprint(tcp, "t:2|c\n") // the connection accepted by the old Server

	if got := srv.UDPAddrs()[0].String(); got != udpAddr {
		t.Errorf("UDP address %s, want the same %s", got, udpAddr)
	}
	if got := srv.TCPAddrs()[0].String(); got != tcpAddr {
		t.Errorf("TCP address %s, want the same %s", got, tcpAddr)
	}
	if len(srv.TCPAddrs()) != 2 {
		t.Errorf("TCP listeners %v, want the new one too", srv.TCPAddrs())
	}
	if _, err := net.Dial("unixgram", sock); err == nil {
		t.Error("the unixgram socket no longer configured still takes datagrams")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := rec.got()
		counts := map[string]int{}
		for _, l := range got {
			counts[strings.SplitN(l, "=", 2)[0]]++
		}
		if counts["u"] == sent && counts["t"] == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("received %d of %d datagrams and %d of 2 TCP lines", counts["u"], sent, counts["t"])
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	serving.Wait()
}

// TestListenFromFailureLeavesTheOldServer: when the new configuration
// cannot be bound, the old Server keeps its sockets and serves on.
func TestListenFromFailureLeavesTheOldServer(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	rec := &recorder{}
	cfg := Config{UDP: []string{"127.0.0.1:0"}, MaxLine: 1024, TCPMaxConnections: 16, Readers: 1,
		NewHandler: func() Handler { return rec }}
	old, err := Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	next := cfg
	next.TCP = []string{taken.Addr().String()}
	if _, err := ListenFrom(next, old); err == nil {
		t.Fatal("ListenFrom bound an address another socket holds")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { old.Serve(ctx); close(done) }()
	c, _ := net.Dial("udp", old.UDPAddrs()[0].String())
	c.Write([]byte("still:1|c"))
	c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for len(rec.got()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the old Server lost its UDP socket")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
}

// TestLastSeen: the prefix's and each sender's last line are remembered,
// and no more senders than the bound.
func TestLastSeen(t *testing.T) {
	seen := NewLastSeen(2)
	r := NewReader(ReaderConfig{Parser: Parser{Dialect: Dialect{LiteralPrefix: []byte("prosody.")}}, Handler: &recorder{},
		Stats: &Stats{}, MaxLine: 1024, SourceLabel: "instance", Seen: seen})
	a, b, c := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.3")
	before := time.Now()
	r.Datagram([]byte("other:1|c"), a)
	r.Flush()
	if !seen.Prefix().IsZero() {
		t.Errorf("a line outside the prefix counted as Prosody's")
	}
	r.Datagram([]byte("prosody.x:1|c"), b)
	r.Flush()
	if seen.Prefix().Before(before) {
		t.Errorf("prefix last seen %v, want after %v", seen.Prefix(), before)
	}
	r.Datagram([]byte("other:1|c"), c)
	r.Flush()
	got := seen.Sources()
	if len(got) != 2 || !got[a].IsZero() || got[b].IsZero() || got[c].IsZero() {
		t.Errorf("sources %v: want the two latest of three", got)
	}
	if seen.Forgotten() != 1 {
		t.Errorf("forgotten %d, want 1", seen.Forgotten())
	}
}
