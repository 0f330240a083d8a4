// Package tap is statsbridge tap: the relay's side (a Hub that samples what
// the model receives while a tap watches, explains each name kept and
// streams it over HTTP) and the command's side (Watch, which shows the
// stream as plain lines or, in a terminal, as a live top view).
//
// The relay pays nothing while no tap watches but an atomic load per batch,
// and while one does, a random draw per sample: the Hub keeps about
// MaxPerSecond samples a second, each standing for the ones it stands in
// for (its weight), and drops what its queue has no room for rather than
// ever blocking ingest.
package tap

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/statsbridge/statsbridge/ingest"
	"github.com/statsbridge/statsbridge/model"
)

// MaxPerSecond is about how many samples a second the Hub keeps while a tap
// watches; past it, it keeps a random share of them.
const MaxPerSecond = 2000

// queueSize bounds the samples kept and not yet explained, eventsSize the
// events waiting for one tap's connection, and maxTaps the taps connected
// at once.
const (
	queueSize  = 4096
	eventsSize = 1024
	maxTaps    = 16
)

// Event is one line of the stream: exactly one of its fields is set.
type Event struct {
	Time   time.Time   `json:"time"`
	Name   *Name       `json:"name,omitempty"`
	Bad    *BadLine    `json:"bad,omitempty"`
	Sinks  []SinkState `json:"sinks,omitempty"`
	Status *Status     `json:"status,omitempty"`
}

// Name is a sample's name, as sent, and what the model makes of it.
type Name struct {
	Name string `json:"name"`
	// Type is the StatsD type (c, g, ms, h, d, s); Tags the line's tags,
	// "k:v,k2:v2", source_label's included.
	Type string `json:"type"`
	Tags string `json:"tags,omitempty"`
	// Family, FamilyType and Labels are its series.
	Family     string `json:"family"`
	FamilyType string `json:"family_type"`
	Labels     string `json:"labels"`
	// Rule is what decided: a mapping file's match, a Prosody catalog
	// entry, the default mapping.
	Rule string `json:"rule"`
	// Refused says why its samples are dropped, "" when they are not.
	Refused string `json:"refused,omitempty"`
	// Weight is how many samples this one stands for.
	Weight float64 `json:"weight"`
}

// BadLine is a line the parser refused.
type BadLine struct {
	Reason string  `json:"reason"`
	Line   string  `json:"line"`
	Weight float64 `json:"weight"`
}

// SinkState is a push sink's state.
type SinkState struct {
	Name   string `json:"name"`
	Target string `json:"target"`
	Up     bool   `json:"up"`
	// LastSuccess is when a batch was last delivered; zero if never.
	LastSuccess time.Time `json:"last_success"`
	QueueBytes  int64     `json:"queue_bytes"`
	SpoolBytes  int64     `json:"spool_bytes"`
	Failures    uint64    `json:"failures"`
	Dropped     uint64    `json:"dropped"`
}

// Status says how much the relay receives and how much of it the stream
// shows.
type Status struct {
	// Rate is the samples received a second (good lines and bad).
	Rate float64 `json:"rate"`
	// Kept is the share of them the Hub keeps (1: all).
	Kept float64 `json:"kept"`
	// Lost counts samples kept that the relay or this connection had no
	// room for, since the tap connected.
	Lost uint64 `json:"lost"`
}

// Describe is the Name event of a sample and the model's decision on it.
func Describe(smp *ingest.Sample, d model.Decision, weight float64) *Name {
	n := &Name{Name: string(smp.Name), Type: smp.Type.String(), Family: d.Family.Name, FamilyType: d.Family.Type.String(),
		Labels: d.Labels.String(), Rule: d.Rule, Refused: d.Refused, Weight: weight}
	if len(smp.Tags) > 0 {
		var b strings.Builder
		for i, t := range smp.Tags {
			if i > 0 {
				b.WriteByte(',')
			}
			b.Write(t.Key)
			b.WriteByte(':')
			b.Write(t.Value)
		}
		n.Tags = b.String()
	}
	return n
}

// Hub is the relay's side of the tap. It implements model.Tap.
type Hub struct {
	explain func(*ingest.Sample) model.Decision
	sinks   atomic.Pointer[func() []SinkState]

	watchers atomic.Int32
	// keep is the chance, times 2^32, that a sample is kept.
	keep  atomic.Uint64
	seen  atomic.Uint64 // samples offered while a tap watches
	lost  atomic.Uint64 // samples kept that the queue had no room for
	queue chan kept

	mu   sync.Mutex
	subs map[*subscription]struct{}
}

// kept is a sample (or bad line) the Hub kept, copied out of the read
// buffer.
type kept struct {
	smp    ingest.Sample
	bad    bool
	reason ingest.Reason
	line   string
	weight float64
}

// NewHub returns a Hub that explains names with explain (the model's dry
// run). Run must run for it to stream anything.
func NewHub(explain func(*ingest.Sample) model.Decision) *Hub {
	h := &Hub{explain: explain, queue: make(chan kept, queueSize), subs: map[*subscription]struct{}{}}
	h.keep.Store(1 << 32)
	none := func() []SinkState { return nil }
	h.sinks.Store(&none)
	return h
}

// SetSinks sets how the Hub reads the push sinks' state (they change on a
// reload).
func (h *Hub) SetSinks(read func() []SinkState) { h.sinks.Store(&read) }

// Watching reports whether a tap is connected. It implements model.Tap.
func (h *Hub) Watching() bool { return h.watchers.Load() > 0 }

// Samples keeps a random share of a batch. It implements model.Tap.
func (h *Hub) Samples(batch []ingest.Sample) {
	h.seen.Add(uint64(len(batch)))
	keep := h.keep.Load()
	weight := float64(1<<32) / float64(keep)
	for i := range batch {
		if keep < 1<<32 && uint64(rand.Uint32()) >= keep {
			continue
		}
		h.offer(kept{smp: copySample(&batch[i]), weight: weight})
	}
}

// BadLine keeps a bad line, as Samples keeps samples. It is the ingest
// readers' hook.
func (h *Hub) BadLine(r ingest.Reason, line []byte) {
	if !h.Watching() {
		return
	}
	h.seen.Add(1)
	keep := h.keep.Load()
	if keep < 1<<32 && uint64(rand.Uint32()) >= keep {
		return
	}
	const maxShown = 200
	if len(line) > maxShown {
		line = line[:maxShown]
	}
	h.offer(kept{bad: true, reason: r, line: string(line), weight: float64(1<<32) / float64(keep)})
}

func (h *Hub) offer(k kept) {
	select {
	case h.queue <- k:
	default:
		h.lost.Add(1)
	}
}

// copySample copies what the tap shows of a sample into one allocation.
func copySample(s *ingest.Sample) ingest.Sample {
	n := len(s.Name)
	for _, t := range s.Tags {
		n += len(t.Key) + len(t.Value)
	}
	buf := make([]byte, 0, n)
	take := func(b []byte) []byte {
		start := len(buf)
		buf = append(buf, b...)
		return buf[start:len(buf):len(buf)]
	}
	out := ingest.Sample{Name: take(s.Name), Type: s.Type, Rate: s.Rate}
	if len(s.Tags) > 0 {
		out.Tags = make([]ingest.Tag, len(s.Tags))
		for i, t := range s.Tags {
			out.Tags[i] = ingest.Tag{Key: take(t.Key), Value: take(t.Value)}
		}
	}
	return out
}

// Run explains what the Hub keeps and streams it, with the status and the
// sinks' state every second, until ctx is done; then it ends every stream.
func (h *Hub) Run(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	last, lastSeen := time.Now(), h.seen.Load()
	defer func() {
		h.mu.Lock()
		for s := range h.subs {
			delete(h.subs, s)
			close(s.events)
		}
		h.mu.Unlock()
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case k := <-h.queue:
			h.broadcast(h.event(k))
		case now := <-tick.C:
			seen := h.seen.Load()
			rate := float64(seen-lastSeen) / now.Sub(last).Seconds()
			last, lastSeen = now, seen
			if !h.Watching() {
				h.keep.Store(1 << 32)
				continue
			}
			h.adjust(rate)
			h.broadcast(Event{Time: now, Status: &Status{Rate: rate, Kept: float64(h.keep.Load()) / (1 << 32)}})
			h.broadcast(Event{Time: now, Sinks: (*h.sinks.Load())()})
		}
	}
}

// adjust sets the share kept so that about MaxPerSecond samples a second
// are.
func (h *Hub) adjust(rate float64) {
	share := 1.0
	if rate > MaxPerSecond {
		share = MaxPerSecond / rate
	}
	h.keep.Store(uint64(math.Max(share*(1<<32), 1)))
}

func (h *Hub) event(k kept) Event {
	now := time.Now()
	if k.bad {
		return Event{Time: now, Bad: &BadLine{Reason: k.reason.String(), Line: k.line, Weight: k.weight}}
	}
	return Event{Time: now, Name: Describe(&k.smp, h.explain(&k.smp), k.weight)}
}

// subscription is one tap's stream.
type subscription struct {
	filter *regexp.Regexp // nil: everything
	events chan Event
	lost   atomic.Uint64
}

// subscribe connects a tap; nil when maxTaps are.
func (h *Hub) subscribe(filter *regexp.Regexp) *subscription {
	s := &subscription{filter: filter, events: make(chan Event, eventsSize)}
	h.mu.Lock()
	if len(h.subs) >= maxTaps {
		h.mu.Unlock()
		return nil
	}
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	if h.watchers.Add(1) == 1 {
		h.lost.Store(0)
	}
	return s
}

func (h *Hub) unsubscribe(s *subscription) {
	h.mu.Lock()
	if _, ok := h.subs[s]; ok {
		delete(h.subs, s)
		h.watchers.Add(-1)
	}
	h.mu.Unlock()
}

func (h *Hub) broadcast(ev Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		if !s.wants(&ev) {
			continue
		}
		if ev.Status != nil {
			st := *ev.Status
			st.Lost = h.lost.Load() + s.lost.Load()
			ev.Status = &st
		}
		select {
		case s.events <- ev:
		default:
			s.lost.Add(1)
		}
	}
}

// wants reports whether the event passes the tap's filter: a name that
// matches (as sent, or its family), a bad line whose name part matches.
func (s *subscription) wants(ev *Event) bool {
	switch {
	case s.filter == nil:
		return true
	case ev.Name != nil:
		return s.filter.MatchString(ev.Name.Name) || s.filter.MatchString(ev.Name.Family)
	case ev.Bad != nil:
		name, _, _ := strings.Cut(ev.Bad.Line, "|")
		if i := strings.LastIndexByte(name, ':'); i >= 0 {
			name = name[:i]
		}
		return s.filter.MatchString(name)
	}
	return true
}

// Filter compiles a tap's filter: a glob (* any run of characters, ? one),
// which the whole name must match, or a regular expression, which must
// match somewhere in it (as grep's does).
func Filter(glob, expr string) (*regexp.Regexp, error) {
	switch {
	case glob != "" && expr != "":
		return nil, errors.New("give a glob or a regular expression, not both")
	case glob != "":
		q := regexp.QuoteMeta(glob)
		q = strings.NewReplacer(`\*`, ".*", `\?`, ".").Replace(q)
		return regexp.Compile("^(?:" + q + ")$")
	case expr != "":
		return regexp.Compile(expr)
	}
	return nil, nil
}
