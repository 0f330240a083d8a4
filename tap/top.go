package tap

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// window is how many seconds the top view's rates cover, and maxNames how
// many names it keeps (the least recently seen go first).
const (
	window   = 10
	maxNames = 10000
	maxRows  = 5 // bad-line reasons and refusals shown
)

// top is the live top view's state: what the stream said, summed.
type top struct {
	started time.Time
	names   map[string]*nameStat
	bad     map[string]*badStat
	refused map[string]*refusedStat
	sinks   []SinkState
	status  Status
}

// nameStat counts one name's samples per second over the window.
type nameStat struct {
	name     *Name
	lastSeen time.Time
	counts   [window]float64
	seconds  [window]int64
}

func (s *nameStat) add(t time.Time, weight float64) {
	sec := t.Unix()
	i := sec % window
	if s.seconds[i] != sec {
		s.seconds[i], s.counts[i] = sec, 0
	}
	s.counts[i] += weight
	s.lastSeen = t
}

// rate is the samples a second over the window up to now.
func (s *nameStat) rate(now, started time.Time) float64 {
	sec := now.Unix()
	total := 0.0
	for i, c := range s.counts {
		if sec-s.seconds[i] < window {
			total += c
		}
	}
	return total / min(window, max(now.Sub(started).Seconds(), 1))
}

type badStat struct {
	count float64
	last  string
}

type refusedStat struct {
	count   float64
	reason  string
	example *Name
}

func newTop(now time.Time) *top {
	return &top{started: now, names: map[string]*nameStat{}, bad: map[string]*badStat{}, refused: map[string]*refusedStat{}}
}

func (t *top) add(ev Event) {
	switch {
	case ev.Name != nil:
		n := ev.Name
		key := n.Sent()
		s := t.names[key]
		if s == nil {
			if len(t.names) >= maxNames {
				t.forgetOldest()
			}
			s = &nameStat{}
			t.names[key] = s
		}
		s.name = n
		s.add(ev.Time, n.Weight)
		if n.Refused != "" {
			rkey := n.Refused + "\x00" + n.Family
			r := t.refused[rkey]
			if r == nil {
				r = &refusedStat{reason: n.Refused}
				t.refused[rkey] = r
			}
			r.count += n.Weight
			r.example = n
		}
	case ev.Bad != nil:
		b := t.bad[ev.Bad.Reason]
		if b == nil {
			b = &badStat{}
			t.bad[ev.Bad.Reason] = b
		}
		b.count += ev.Bad.Weight
		b.last = ev.Bad.Line
	case ev.Sinks != nil:
		t.sinks = ev.Sinks
	case ev.Status != nil:
		t.status = *ev.Status
	}
}

// forgetOldest makes room: the names seen longest ago go, a tenth at once.
func (t *top) forgetOldest() {
	stats := make([]*nameStat, 0, len(t.names))
	for _, s := range t.names {
		stats = append(stats, s)
	}
	slices.SortFunc(stats, func(a, b *nameStat) int { return a.lastSeen.Compare(b.lastSeen) })
	for _, s := range stats[:len(stats)/10+1] {
		delete(t.names, s.name.Sent())
	}
}

// render draws the view for a terminal of width × height.
func (t *top) render(now time.Time, target string, width, height int) []string {
	var lines []string
	add := func(format string, args ...any) { lines = append(lines, fmt.Sprintf(format, args...)) }

	add("statsbridge tap  %s  %.1f lines/s received", target, t.status.Rate)
	if t.status.Kept < 0.9999 && t.status.Kept > 0 {
		lines[0] += fmt.Sprintf(", sampled 1 in %.3g", 1/t.status.Kept)
	}
	if t.status.Lost > 0 {
		lines[0] += fmt.Sprintf(", %d not shown (too fast)", t.status.Lost)
	}

	var sinkLines []string
	sinkLines = append(sinkLines, "", "SINKS", fmt.Sprintf("  %-16s %-4s %-13s %10s %10s %9s %9s  %s", "SINK", "UP", "LAST SUCCESS", "QUEUE", "SPOOL", "FAILURES", "DROPPED", "TARGET"))
	if len(t.sinks) == 0 {
		sinkLines = append(sinkLines, "  (no push sinks)")
	}
	for _, s := range t.sinks {
		up, last := "no", "never"
		if s.Up {
			up = "yes"
		}
		if !s.LastSuccess.IsZero() {
			last = now.Sub(s.LastSuccess).Round(time.Second).String() + " ago"
		}
		sinkLines = append(sinkLines, fmt.Sprintf("  %-16s %-4s %-13s %10s %10s %9d %9d  %s",
			s.Name, up, last, size(s.QueueBytes), size(s.SpoolBytes), s.Failures, s.Dropped, s.Target))
	}

	badLines := []string{"", "BAD LINES"}
	reasons := sortedKeys(t.bad, func(a, b *badStat) int { return cmp.Compare(b.count, a.count) })
	if len(reasons) == 0 {
		badLines = append(badLines, "  (none)")
	}
	for _, r := range reasons[:min(len(reasons), maxRows)] {
		b := t.bad[r]
		badLines = append(badLines, fmt.Sprintf("  %8.0f  %-18s %s", b.count, r, b.last))
	}

	refusedLines := []string{"", "REFUSED SERIES"}
	refusals := sortedKeys(t.refused, func(a, b *refusedStat) int { return cmp.Compare(b.count, a.count) })
	if len(refusals) == 0 {
		refusedLines = append(refusedLines, "  (none)")
	}
	for _, k := range refusals[:min(len(refusals), maxRows)] {
		r := t.refused[k]
		refusedLines = append(refusedLines, fmt.Sprintf("  %8.0f  %-22s %s -> %s", r.count, r.reason, r.example.Sent(), r.example.Series()))
	}

	room := height - len(lines) - len(sinkLines) - len(badLines) - len(refusedLines) - 3
	add("")
	add("NAMES BY RATE (last %ds)", window)
	add("  %8s  %s", "LINES/S", "NAME -> SERIES TYPE (RULE)")
	type ranked struct {
		s    *nameStat
		rate float64
	}
	var ranks []ranked
	for _, s := range t.names {
		if r := s.rate(now, t.started); r > 0 {
			ranks = append(ranks, ranked{s, r})
		}
	}
	slices.SortFunc(ranks, func(a, b ranked) int {
		if c := cmp.Compare(b.rate, a.rate); c != 0 {
			return c
		}
		return strings.Compare(a.s.name.Name, b.s.name.Name)
	})
	if len(ranks) == 0 {
		add("  (nothing received in the last %ds)", window)
	}
	for _, r := range ranks[:min(len(ranks), max(room, 1))] {
		n := r.s.name
		what := fmt.Sprintf("%s %s (%s)", n.Series(), n.FamilyType, n.Rule)
		if n.Refused != "" {
			what = "refused (" + n.Refused + "): " + what
		}
		add("  %8.1f  %s -> %s", r.rate, n.Sent(), what)
	}
	lines = append(lines, refusedLines...)
	lines = append(lines, badLines...)
	lines = append(lines, sinkLines...)
	for i, l := range lines {
		lines[i] = truncate(l, width)
	}
	// The last row stays empty: a line break there would scroll.
	if height > 1 && len(lines) > height-1 {
		lines = lines[:height-1]
	}
	return lines
}

func sortedKeys[V any](m map[string]V, by func(a, b V) int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		if c := by(m[a], m[b]); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	return keys
}

func size(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1fGiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1fKiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%dB", n)
}

// truncate cuts a line to width characters.
func truncate(s string, width int) string {
	if width <= 0 || utf8.RuneCountInString(s) <= width {
		return s
	}
	r := []rune(s)
	return string(r[:width])
}

// Terminal control: the alternate screen (the shell's screen comes back at
// the end), a hidden cursor, and drawing from the top left.
const (
	enterScreen = "\x1b[?1049h\x1b[?25l"
	leaveScreen = "\x1b[?25h\x1b[?1049l"
	home        = "\x1b[H"
	clearLine   = "\x1b[K"
	clearBelow  = "\x1b[J"
)

// drawTop draws the top view every o.Redraw until ctx is done or the stream
// ends.
func drawTop(ctx context.Context, o Options, events <-chan Event, readErr <-chan error) error {
	every := o.Redraw
	if every <= 0 {
		every = time.Second
	}
	target := o.URL
	if i := strings.Index(target, "://"); i >= 0 {
		target = target[i+3:]
	}
	target, _, _ = strings.Cut(target, "/")
	t := newTop(time.Now())
	io.WriteString(o.Out, enterScreen)
	defer io.WriteString(o.Out, leaveScreen)
	draw := func() {
		width, height := o.Size()
		var b strings.Builder
		b.WriteString(home)
		for _, l := range t.render(time.Now(), target, width, height) {
			b.WriteString(l)
			b.WriteString(clearLine)
			b.WriteString("\r\n")
		}
		b.WriteString(clearBelow)
		io.WriteString(o.Out, b.String())
	}
	draw()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return <-readErr
			}
			t.add(ev)
		case <-tick.C:
			draw()
		}
	}
}
