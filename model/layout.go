package model

import (
	"math"
	"math/bits"
	"slices"
)

// A histogram that arrives in parts (Prosody's, KindPrebucketed) has the
// bucket layout its sender has, and that can depend on the sender's version
// and configuration: mod_http_file_share's upload sizes stop at the first
// power of 4 at or above its size limit. So a series learns its layout from
// the wire. Prosody sends a bucket line for every bound at or above an
// observation, then the count line; so one observation shows every bound
// above it, and any bound above it that it did not show is not the
// sender's. Below the lowest bound the wire showed, the series shows the
// bounds of the guess (from the catalog, or Prosody's own page) that agrees
// with the wire.

// maxBounds bounds the bucket bounds one series knows, guesses included: a
// sender cannot grow a series without bound by inventing bounds.
const maxBounds = 64

// maxGuesses bounds the layouts a family may be guessed to have.
const maxGuesses = 64

// Guesses are the bucket layouts a histogram arriving in parts may have,
// most likely first. They never change once made, and are shared by the
// series of a family.
type Guesses struct {
	bounds []Bucket // every bound of every guess, by bound, +Inf last
	in     []uint64 // per bound: bit g is set when guess g has it
	all    uint64   // a bit per guess
}

// NewGuesses makes Guesses from layouts (each sorted, +Inf optional),
// most likely first. Layouts past maxGuesses are ignored.
func NewGuesses(layouts ...[]Bucket) *Guesses {
	g := &Guesses{}
	for n, layout := range layouts[:min(len(layouts), maxGuesses)] {
		g.all |= 1 << n
		for _, b := range append(layout, NewBucket(math.Inf(1), "+Inf")) {
			i, found := slices.BinarySearchFunc(g.bounds, b.Bound, func(x Bucket, v float64) int { return cmpBound(x.Bound, v) })
			if !found {
				if len(g.bounds) == maxBounds {
					continue
				}
				g.bounds = slices.Insert(g.bounds, i, b)
				g.in = slices.Insert(g.in, i, 0)
			}
			g.in[i] |= 1 << n
		}
	}
	return g
}

func cmpBound(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// wireLayout is what a series has learned of its sender's layout. Its
// bounds are the guesses' (in order), then the ones the wire showed that
// the guesses lack, in the order they came: a bound keeps its index, which
// the name cache holds, for the series' life.
type wireLayout struct {
	guesses *Guesses
	bounds  []Bucket // shared with guesses until a bound is learned
	in      []uint64 // likewise; 0 for a learned bound
	order   []int    // nil while bounds are the guesses' (already sorted)
	// seen is, per bound, the observation during which the wire last
	// showed it, or -1. observations counts the count lines: an
	// observation below it is complete.
	seen         []int64
	observations int64
}

func newWireLayout(g *Guesses) *wireLayout {
	l := &wireLayout{guesses: g, bounds: g.bounds, in: g.in, seen: make([]int64, len(g.bounds))}
	for i := range l.seen {
		l.seen[i] = -1
	}
	return l
}

// index returns the index of b's bound, learning it when new. It reports
// false when the series knows maxBounds bounds already.
func (l *wireLayout) index(b Bucket) (int, bool) {
	for i := range l.bounds {
		if l.bounds[i].Bound == b.Bound {
			return i, true
		}
	}
	if len(l.bounds) >= maxBounds || math.IsNaN(b.Bound) {
		return 0, false
	}
	if l.order == nil {
		l.order = make([]int, len(l.bounds))
		for i := range l.order {
			l.order[i] = i
		}
		l.bounds, l.in = slices.Clone(l.bounds), slices.Clone(l.in)
	}
	i := len(l.bounds)
	l.bounds = append(l.bounds, b)
	l.in = append(l.in, 0)
	l.seen = append(l.seen, -1)
	at, _ := slices.BinarySearchFunc(l.order, b.Bound, func(j int, v float64) int { return cmpBound(l.bounds[j].Bound, v) })
	l.order = slices.Insert(l.order, at, i)
	return i, true
}

func (l *wireLayout) sorted(k int) int {
	if l.order == nil {
		return k
	}
	return l.order[k]
}

// saw records a bucket line for the bound at i; counted a count line, which
// ends an observation.
func (l *wireLayout) saw(i int) { l.seen[i] = l.observations }
func (l *wireLayout) counted()  { l.observations++ }

// shown appends to dst the indices of the bounds the series shows, by
// bound, +Inf last:
//   - nothing on the wire yet: the first guess;
//   - at and above the lowest bound the wire showed: the bounds it showed,
//     less those a later complete observation left out although it showed
//     a lower bound (the sender no longer has them: it restarted with
//     another layout);
//   - below it: the bounds of a guess. A guess contradicts the wire when
//     it has a bound at or above that lowest one that the wire does not
//     show. The guess is the first that does not contradict the wire and
//     has every bound it shows; or else the first that does not contradict
//     it and has its lowest bound; or else the first that does not
//     contradict it; or else the first that has its lowest bound; or none.
func (l *wireLayout) shown(dst []int) []int {
	n := len(l.bounds)
	lowest := -1
	for k := range n {
		if l.seen[l.sorted(k)] >= 0 {
			lowest = k
			break
		}
	}
	if lowest < 0 {
		for k := range n {
			if i := l.sorted(k); l.in[i]&1 != 0 {
				dst = append(dst, i)
			}
		}
		return dst
	}
	start := len(dst)
	for k := range lowest {
		dst = append(dst, l.sorted(k)) // room for the guessed part
	}
	hasAll := l.guesses.all
	var contradict uint64
	latestDone := int64(-1)
	for k := lowest; k < n; k++ {
		i := l.sorted(k)
		seen := l.seen[i]
		show := seen >= 0 && seen >= latestDone || k == n-1 // +Inf always
		if seen >= 0 && seen < l.observations {
			latestDone = max(latestDone, seen)
		}
		if show {
			dst = append(dst, i)
			hasAll &= l.in[i]
		} else {
			contradict |= l.in[i]
		}
	}
	hasLowest := l.in[l.sorted(lowest)]
	guess := -1
	for _, candidates := range []uint64{hasAll &^ contradict, hasLowest &^ contradict, l.guesses.all &^ contradict, hasLowest} {
		if candidates != 0 {
			guess = bits.TrailingZeros64(candidates)
			break
		}
	}
	kept := dst[start:start]
	for k := range lowest {
		if i := l.sorted(k); guess >= 0 && l.in[i]&(1<<guess) != 0 {
			kept = append(kept, i)
		}
	}
	return append(dst[:start+len(kept)], dst[start+lowest:]...)
}
