package ingest

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// LastSeen remembers when each source last sent something: any line under
// the dialect's literal prefix (Prosody's), and any datagram or TCP read
// from each sender address (when SourceLabel is set). Every series is
// re-sent at each flush and never goes stale, so a silent sender can only
// be told from this. It holds at most maxSources addresses: past it, the
// one seen longest ago is forgotten, and counted.
type LastSeen struct {
	prefix     atomic.Int64 // unix nanoseconds; 0 before the first
	maxSources int

	mu        sync.Mutex
	sources   map[netip.Addr]int64
	forgotten atomic.Uint64
}

// NewLastSeen returns a LastSeen that keeps up to maxSources addresses.
func NewLastSeen(maxSources int) *LastSeen {
	return &LastSeen{maxSources: max(maxSources, 1), sources: map[netip.Addr]int64{}}
}

// Prefix is when a line under the literal prefix last arrived (zero
// before the first).
func (l *LastSeen) Prefix() time.Time {
	if ns := l.prefix.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// Sources returns when each address last sent something.
func (l *LastSeen) Sources() map[netip.Addr]time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[netip.Addr]time.Time, len(l.sources))
	for a, ns := range l.sources {
		out[a] = time.Unix(0, ns)
	}
	return out
}

// Source is when one address last sent something (zero if it is not
// remembered).
func (l *LastSeen) Source(a netip.Addr) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ns, ok := l.sources[a]; ok {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// Forgotten counts the addresses forgotten to keep within maxSources.
func (l *LastSeen) Forgotten() uint64 { return l.forgotten.Load() }

// note records what a reader saw since its last publish.
func (l *LastSeen) note(now time.Time, prefix bool, from []netip.Addr) {
	ns := now.UnixNano()
	if prefix {
		l.prefix.Store(ns)
	}
	if len(from) == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, a := range from {
		if _, ok := l.sources[a]; !ok && len(l.sources) >= l.maxSources {
			l.forgetOldest()
		}
		l.sources[a] = ns
	}
}

// forgetOldest forgets the address seen longest ago. l.mu is held.
func (l *LastSeen) forgetOldest() {
	var oldest netip.Addr
	var at int64
	for a, ns := range l.sources {
		if !oldest.IsValid() || ns < at {
			oldest, at = a, ns
		}
	}
	delete(l.sources, oldest)
	l.forgotten.Add(1)
}
