package graphite

import (
	"bufio"
	"context"
	"crypto/tls"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/statsbridge/statsbridge/cork"
	"github.com/statsbridge/statsbridge/sinks/tlstest"
)

// carbonListener listens as carbon does: in plaintext, behind TLS (as
// carbon-relay-ng or stunnel) with a certificate the returned client
// configuration trusts, or behind mutual TLS, where the client shows its
// own.
func carbonListener(t *testing.T, mode string) (net.Listener, *tls.Config) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	if mode == "plaintext" {
		return l, nil
	}
	ca := tlstest.NewCA(t, "carbon-ca")
	server := &tls.Config{Certificates: []tls.Certificate{ca.Server(t, "127.0.0.1")}}
	// With a session cache the client asks for session tickets, which a
	// TLS 1.3 server sends after the handshake.
	client := &tls.Config{RootCAs: ca.Pool(), ClientSessionCache: tls.NewLRUClientSessionCache(4)}
	if mode == "mutual tls" {
		server.ClientAuth, server.ClientCAs = tls.RequireAndVerifyClientCert, ca.Pool()
		client.Certificates = []tls.Certificate{ca.Client(t, "statsbridge")}
	}
	return tls.NewListener(l, server), client
}

// TestLinesACarbonDidNotReadAreWrittenAgain: carbon closes the connection
// with a batch unread in its socket; the attempt that finds it gone fails
// and hands the batch back, and the next connection carries it again. Over
// TLS, where the server writes too (session tickets after the handshake,
// and close_notify), the same.
func TestLinesACarbonDidNotReadAreWrittenAgain(t *testing.T) {
	for _, mode := range []string{"plaintext", "tls", "mutual tls"} {
		t.Run(mode, func(t *testing.T) {
			l, clientTLS := carbonListener(t, mode)
			linesACarbonDidNotReadAreWrittenAgain(t, l, clientTLS)
		})
	}
}

func linesACarbonDidNotReadAreWrittenAgain(t *testing.T, l net.Listener, clientTLS *tls.Config) {
	var mu sync.Mutex
	var received []string
	firstRead, closeNow, closed := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() {
		// The first connection: read one line, then stop reading and close,
		// as a carbon that shuts down does.
		c, err := l.Accept()
		if err != nil {
			return
		}
		line, _ := bufio.NewReader(c).ReadString('\n')
		mu.Lock()
		received = append(received, strings.TrimSpace(line))
		mu.Unlock()
		close(firstRead)
		<-closeNow // "b 2 2" was written and is unread
		c.Close()
		close(closed)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			sc := bufio.NewScanner(c)
			for sc.Scan() {
				mu.Lock()
				received = append(received, sc.Text())
				mu.Unlock()
			}
		}
	}()
	tr := NewTransport(l.Addr().String(), time.Second, clientTLS)
	defer tr.Close()
	send := func(line string) {
		t.Helper()
		data := []byte(line + "\n")
		if err := tr.Send(context.Background(), cork.Batch{Data: data, Ends: []int{len(data)}}); err != nil {
			t.Fatal(err)
		}
	}
	send("a 1 1")
	<-firstRead
	send("b 2 2") // into the kernel of a connection about to go
	close(closeNow)
	<-closed
	// Wait until the close reached this side, as the next flush would.
	for deadline := time.Now().Add(5 * time.Second); ; {
		tr.mu.Lock()
		gone := peerClosed(tr.conn)
		tr.mu.Unlock()
		if gone {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the close never showed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	c := []byte("c 3 3\n")
	if err := tr.Send(context.Background(), cork.Batch{Data: c, Ends: []int{len(c)}}); err == nil {
		t.Fatal("a Send on a connection carbon closed succeeded")
	}
	var again []string
	for _, b := range tr.Unconfirmed() {
		again = append(again, strings.TrimSpace(string(b.Data)))
	}
	if strings.Join(again, ",") != "a 1 1,b 2 2" {
		t.Fatalf("unconfirmed %q, want what was written on the closed connection", again)
	}
	for _, line := range append(again, "c 3 3") {
		send(line) // as the sink sends them: the unconfirmed first
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		got := strings.Join(received, ",")
		mu.Unlock()
		if strings.Contains(got, "b 2 2") && strings.HasSuffix(got, "c 3 3") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("carbon received %q: the unread batch was lost", got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestUnconfirmedHandsBackWhatAwaitsReplay: the transport hands back what
// it wrote on a connection found gone, once, and forgets it.
func TestUnconfirmedHandsBackWhatAwaitsReplay(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	go func() {
		c, err := l.Accept()
		if err == nil {
			c.Close() // carbon goes away at once
		}
		l.Close() // and stays away
	}()
	tr := NewTransport(addr, time.Second, nil)
	defer tr.Close()
	data := []byte("a 1 1\n")
	tr.Send(context.Background(), cork.Batch{Data: data, Ends: []int{len(data)}})
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if tr.Send(context.Background(), cork.Batch{Data: []byte("b 2 2\n"), Ends: []int{6}}) != nil {
			break // the dead connection was found and the redial failed
		}
	}
	got := tr.Unconfirmed()
	if len(got) == 0 || string(got[0].Data) != "a 1 1\n" {
		t.Fatalf("unconfirmed %v", got)
	}
	if len(tr.Unconfirmed()) != 0 {
		t.Error("handed back twice")
	}
}
