package main

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Traffic says what the load generator sends.
type Traffic struct {
	Lines   int       // lines per datagram
	Series  int       // distinct names per type
	Mix     []TypeMix // StatsD types and their weights
	Sampled float64   // fraction of counter and timer lines sent with |@0.5
	Tags    int       // DogStatsD tags per line, each of 4 values
}

// TypeMix is a StatsD type and its weight in the mix.
type TypeMix struct {
	Type   string // c, g, ms, h, s
	Weight int
}

// parseMix reads "c:70,g:20,ms:10".
func parseMix(s string) ([]TypeMix, error) {
	var mix []TypeMix
	for _, part := range strings.Split(s, ",") {
		typ, w, ok := strings.Cut(strings.TrimSpace(part), ":")
		n, err := strconv.Atoi(w)
		if !ok || err != nil || n < 0 {
			return nil, fmt.Errorf("type mix %q: want type:weight,...", s)
		}
		switch typ {
		case "c", "g", "ms", "h", "s":
		default:
			return nil, fmt.Errorf("type mix %q: unknown type %q", s, typ)
		}
		mix = append(mix, TypeMix{typ, n})
	}
	return mix, nil
}

// Datagrams are rendered once, before a run, and sent over and over.
type Datagrams struct {
	Payloads [][]byte
	// Counts[i] is what datagram i adds to the sum of all counters: each
	// counter line adds its value divided by its sample rate.
	Counts []float64
	Lines  int // per datagram
}

// render pre-renders n datagrams of t's shape. The names are bench.<type>.<i>
// ("ms" as "t"), so that no name changes type.
func render(t Traffic, n int, seed uint64) Datagrams {
	rng := rand.New(rand.NewPCG(seed, 1))
	total := 0
	for _, m := range t.Mix {
		total += m.Weight
	}
	pick := func() string {
		w := rng.IntN(total)
		for _, m := range t.Mix {
			if w < m.Weight {
				return m.Type
			}
			w -= m.Weight
		}
		return t.Mix[0].Type
	}
	d := Datagrams{Lines: t.Lines}
	var b []byte
	for range n {
		b = b[:0]
		count := 0.0
		for k := range t.Lines {
			if k > 0 {
				b = append(b, '\n')
			}
			typ := pick()
			series := rng.IntN(t.Series)
			name := typ
			if typ == "ms" {
				name = "t"
			}
			b = fmt.Appendf(b, "bench.%s.%d:", name, series)
			sampled := (typ == "c" || typ == "ms") && rng.Float64() < t.Sampled
			switch typ {
			case "c":
				b = append(b, '1')
				count += 1
				if sampled {
					count += 1 // 1/@0.5
				}
			case "g":
				b = strconv.AppendInt(b, int64(rng.IntN(1000)), 10)
			case "ms", "h":
				b = strconv.AppendFloat(b, float64(rng.IntN(100000))/100, 'f', -1, 64)
			case "s":
				b = fmt.Appendf(b, "user%d", rng.IntN(1000))
			}
			b = append(b, '|')
			b = append(b, typ...)
			if sampled {
				b = append(b, "|@0.5"...)
			}
			for j := range t.Tags {
				if j == 0 {
					b = append(b, "|#"...)
				} else {
					b = append(b, ',')
				}
				b = fmt.Appendf(b, "tag%d:v%d", j, (series+j)%4)
			}
		}
		d.Payloads = append(d.Payloads, append([]byte(nil), b...))
		d.Counts = append(d.Counts, count)
	}
	return d
}

// sender sends pre-rendered datagrams from one connected UDP socket with
// sendmmsg: the headers cover every datagram once, and a call sends the
// next run of them.
type sender struct {
	fd   int
	hdrs []unix.Mmsghdr
	iovs []unix.Iovec
	next int // the datagram to send next
}

func newSender(port int, d *Datagrams) (*sender, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20)
	if err := unix.Connect(fd, &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		unix.Close(fd)
		return nil, err
	}
	s := &sender{fd: fd, hdrs: make([]unix.Mmsghdr, len(d.Payloads)), iovs: make([]unix.Iovec, len(d.Payloads))}
	for i, p := range d.Payloads {
		s.iovs[i].Base = &p[0]
		s.iovs[i].SetLen(len(p))
		s.hdrs[i].Hdr.Iov = &s.iovs[i]
		s.hdrs[i].Hdr.SetIovlen(1)
	}
	return s, nil
}

func (s *sender) close() { unix.Close(s.fd) }

// send sends up to n datagrams in one call, from where the last call
// stopped; it returns which it sent, as indexes into the datagrams, and
// counts none that the kernel refused.
func (s *sender) send(n int) (first, sent int, err error) {
	first = s.next
	n = min(n, len(s.hdrs)-s.next)
	r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(s.fd), uintptr(unsafe.Pointer(&s.hdrs[s.next])), uintptr(n), 0, 0, 0)
	if errno != 0 {
		return first, 0, errno
	}
	s.next = (s.next + int(r)) % len(s.hdrs)
	return first, int(r), nil
}

// Sent is what a sender sent.
type Sent struct {
	Datagrams int64
	Counts    float64 // what the sent datagrams add to the counters
	Errors    int64   // sendmmsg calls that failed (ECONNREFUSED, ENOBUFS)
}

func (a *Sent) add(b Sent) {
	a.Datagrams += b.Datagrams
	a.Counts += b.Counts
	a.Errors += b.Errors
}

// paced sends rate datagrams a second for dur. It sleeps tick while ahead
// of the schedule and then sends what is due in calls of at most burst
// datagrams: the datagrams leave about max(1, rate×tick) at a time. It
// sleeps with nanosleep on its own thread: Go's timers would oversleep a
// short tick to a millisecond, and make bursts of what should trickle.
func (s *sender) paced(d *Datagrams, rate float64, dur, tick time.Duration, burst int) Sent {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	nap := unix.NsecToTimespec(tick.Nanoseconds())
	var out Sent
	start := time.Now()
	for {
		elapsed := time.Since(start)
		if elapsed >= dur {
			return out
		}
		due := int64(rate*elapsed.Seconds()) - out.Datagrams
		if due <= 0 {
			unix.Nanosleep(&nap, nil)
			continue
		}
		first, n, err := s.send(int(min(due, int64(burst))))
		if err != nil {
			out.Errors++
			time.Sleep(time.Millisecond)
			continue
		}
		out.Datagrams += int64(n)
		for i := range n {
			out.Counts += d.Counts[first+i]
		}
	}
}

// burst sends n datagrams as fast as the socket takes them.
func (s *sender) burst(d *Datagrams, n int64) Sent {
	var out Sent
	for out.Datagrams < n && out.Errors < 1000 {
		first, sent, err := s.send(int(min(n-out.Datagrams, 64)))
		if err != nil {
			out.Errors++
			continue
		}
		out.Datagrams += int64(sent)
		for i := range sent {
			out.Counts += d.Counts[first+i]
		}
	}
	return out
}
