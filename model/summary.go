package model

import (
	"math"
	"time"

	"github.com/DataDog/sketches-go/ddsketch"
)

// SummaryOptions shape a summary family's quantiles, as statsd_exporter's
// summary_options do: quantiles over a window of MaxAge that slides in
// AgeBuckets steps.
type SummaryOptions struct {
	Quantiles  []float64
	MaxAge     time.Duration
	AgeBuckets int
}

// DefaultSummaryOptions are statsd_exporter's defaults.
var DefaultSummaryOptions = SummaryOptions{Quantiles: []float64{0.5, 0.9, 0.99}, MaxAge: 10 * time.Minute, AgeBuckets: 5}

// summary is the state of a summary series: exact cumulative sum and
// count, and quantiles from DDSketches (1% relative error) that each start
// over in turn, as client_golang's summaries do. Every observation goes
// into every sketch; the oldest one answers, covering up to MaxAge.
type summary struct {
	sketches []*ddsketch.DDSketch
	head     int   // the oldest sketch
	rotateAt int64 // unix nanoseconds when the head starts over
	step     int64
	count    float64
	sum      float64
}

func newSummary(o SummaryOptions, now int64) *summary {
	s := &summary{sketches: make([]*ddsketch.DDSketch, o.AgeBuckets), step: int64(o.MaxAge) / int64(o.AgeBuckets)}
	for i := range s.sketches {
		s.sketches[i], _ = ddsketch.LogCollapsingLowestDenseDDSketch(sketchAccuracy, 2048)
	}
	s.rotateAt = now + s.step
	return s
}

func (s *summary) rotate(now int64) {
	for now >= s.rotateAt {
		s.sketches[s.head].Clear()
		s.head = (s.head + 1) % len(s.sketches)
		s.rotateAt += s.step
		if now-s.rotateAt > int64(len(s.sketches))*s.step {
			// Idle for longer than the window: everything is stale.
			for _, sk := range s.sketches {
				sk.Clear()
			}
			s.rotateAt = now + s.step
		}
	}
}

func (s *summary) observe(v, w float64, now int64) {
	s.rotate(now)
	for _, sk := range s.sketches {
		sk.AddWithCount(v, w)
	}
	s.count += w
	s.sum += v * w
}

// SummaryPoint is a summary series at a moment.
type SummaryPoint struct {
	// Quantiles has one value per family quantile; NaN when no value was
	// observed within MaxAge.
	Quantiles []float64
	Count     float64
	Sum       float64
	// DeltaCount and DeltaSum are the interval's changes, for Prosody's
	// summaries (KindPresummed).
	DeltaCount float64
	DeltaSum   float64
}

func (s *summary) snapshot(p *SummaryPoint, qs []float64, arena *[]float64, now int64) {
	s.rotate(now)
	start := len(*arena)
	head := s.sketches[s.head]
	for _, q := range qs {
		v := math.NaN()
		if !head.IsEmpty() {
			v, _ = head.GetValueAtQuantile(q)
		}
		*arena = append(*arena, v)
	}
	*p = SummaryPoint{Quantiles: (*arena)[start:], Count: s.count, Sum: s.sum}
}
