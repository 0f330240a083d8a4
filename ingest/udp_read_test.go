package ingest

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// TestUDPReadsAreCorkedUnderATrickle: a sender that trickles one line per
// datagram, as Prosody does, has its datagrams read in batches: far fewer
// read system calls than datagrams, and none lost. It counts calls, not
// time: a slow or busy machine only makes the batches bigger.
func TestUDPReadsAreCorkedUnderATrickle(t *testing.T) {
	const datagrams = 300
	ts := serve(t, Config{UDP: []string{"127.0.0.1:0"}, ReadCork: 20 * time.Millisecond})
	c, err := net.Dial("udp", ts.UDPAddrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range datagrams {
		fmt.Fprintf(c, "trickle.%d:1|c", i%7)
		time.Sleep(100 * time.Microsecond) // a gap long enough for the reader to sleep in between
	}
	ts.stop()
	st := ts.Stats()
	if got := st.Datagrams.Load(); got != datagrams {
		t.Fatalf("%d datagrams read, want %d", got, datagrams)
	}
	t.Logf("%d read calls for %d datagrams", st.UDPReads.Load(), datagrams)
	if reads := st.UDPReads.Load(); reads >= datagrams/2 {
		t.Errorf("%d read calls for %d datagrams: reads are not batched", reads, datagrams)
	}
}

// TestUDPStopDrainsWhatTheSocketHolds: whatever the cork, a stop hands on
// every datagram the socket had received, and does not wait for the cork
// to end (a reader that did would be reported by serve as not stopping).
func TestUDPStopDrainsWhatTheSocketHolds(t *testing.T) {
	for _, cork := range []time.Duration{0, time.Millisecond, time.Hour} {
		t.Run(cork.String(), func(t *testing.T) {
			ts := serve(t, Config{UDP: []string{"127.0.0.1:0"}, ReadCork: cork})
			c, err := net.Dial("udp", ts.UDPAddrs()[0].String())
			if err != nil {
				t.Fatal(err)
			}
			// The first datagram wakes the reader, which then corks; the
			// rest arrive while it waits.
			var want []string
			for i := range 50 {
				fmt.Fprintf(c, "d%02d:%d|c", i, i)
				want = append(want, fmt.Sprintf("d%02d=%d", i, i))
				if i == 0 {
					time.Sleep(10 * time.Millisecond)
				}
			}
			c.Close()
			ts.stop()
			if got := ts.rec.got(); strings.Join(got, " ") != strings.Join(want, " ") {
				t.Errorf("got %v, want %v", got, want)
			}
		})
	}
}

// TestReadCorkWaitIsBoundedByTheSocketBuffer: the wait after a read is at
// most the cork, and short enough that, at the rate the socket filled
// since the previous read, a quarter of its buffer at most fills meanwhile.
func TestReadCorkWaitIsBoundedByTheSocketBuffer(t *testing.T) {
	const limit = 400_000 // bytes the socket may hold
	t0 := time.Unix(1_800_000_000, 0)
	tests := []struct {
		name   string
		since  time.Duration // since the previous read that emptied the socket
		queued int           // bytes found queued before this read
		want   time.Duration
	}{
		{"nothing measured", time.Millisecond, 0, 2 * time.Millisecond},
		{"a trickle", time.Millisecond, 1_000, 2 * time.Millisecond},
		{"a quarter per 2ms", 2 * time.Millisecond, limit / 4, 2 * time.Millisecond},
		{"a quarter per ms", time.Millisecond, limit / 4, time.Millisecond},
		{"the whole buffer per ms", time.Millisecond, limit, 250 * time.Microsecond},
		{"too fast for a timer", time.Millisecond, 100 * limit, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := readCork{max: 2 * time.Millisecond}
			if got := c.next(t0, 0, 0); got != c.max {
				t.Fatalf("first wait %v, want the cork %v", got, c.max)
			}
			if got := c.next(t0.Add(tt.since), tt.queued, limit); got != tt.want {
				t.Errorf("wait %v, want %v", got, tt.want)
			}
		})
	}
}

// TestUDPSenderAddress: with source_label, the sender's address comes from
// recvmmsg's own address room, whatever the family; an IPv4 sender to a
// dual-stack socket is labelled with its IPv4 address.
func TestUDPSenderAddress(t *testing.T) {
	tests := []struct {
		listen, dial, want string
	}{
		{"127.0.0.1:0", "127.0.0.1", "127.0.0.1"},
		{"[::1]:0", "::1", "::1"},
		{"[::]:0", "127.0.0.1", "127.0.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.listen+" from "+tt.dial, func(t *testing.T) {
			ts := serve(t, Config{UDP: []string{tt.listen}, SourceLabel: "instance"})
			port := ts.UDPAddrs()[0].(*net.UDPAddr).Port
			c, err := net.Dial("udp", net.JoinHostPort(tt.dial, fmt.Sprint(port)))
			if err != nil {
				t.Skipf("no %s: %v", tt.dial, err)
			}
			c.Write([]byte("a:1|c"))
			c.Close()
			ts.stop()
			if got, want := strings.Join(ts.rec.got(), " "), "a;instance="+tt.want+"=1"; got != want {
				t.Errorf("got %q, want %q", got, want)
			}
		})
	}
}
