// Package model keeps what statsbridge receives as OpenMetrics metric
// families: it maps each StatsD name to a family and label set, applies
// samples to cumulative series state, and hands out coalesced snapshots of
// every live series, one per flush interval, for the sinks to render.
package model

import (
	"slices"
	"strconv"
	"strings"
)

// Type is an OpenMetrics metric type.
type Type uint8

// The OpenMetrics types statsbridge keeps.
const (
	Unknown Type = iota
	Counter
	Gauge
	Histogram
	Summary
)

var typeNames = [...]string{"unknown", "counter", "gauge", "histogram", "summary"}

func (t Type) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return "unknown"
}

// ParseType reads a type name.
func ParseType(s string) (Type, bool) {
	for i, n := range typeNames {
		if n == s {
			return Type(i), true
		}
	}
	return Unknown, false
}

// Kind is how a series keeps its state. It is finer than the OpenMetrics
// type: a set is exposed as a gauge, and Prosody's histograms arrive in
// parts rather than as observations.
type Kind uint8

// The kinds of series.
const (
	KindCounter Kind = iota + 1
	KindGauge
	// KindSet counts distinct StatsD set members per interval; it is a gauge.
	KindSet
	// KindHistogram puts observations (StatsD ms, h, d) into buckets.
	KindHistogram
	// KindSummary keeps observations' quantiles over a sliding window.
	KindSummary
	// KindPrebucketed is a histogram whose bucket, count and sum arrive
	// separately, as Prosody sends them.
	KindPrebucketed
	// KindPresummed is a summary whose sum and count arrive as deltas,
	// as Prosody sends them.
	KindPresummed
)

// Observes reports whether series of the kind take raw observations.
func (k Kind) Observes() bool { return k == KindHistogram || k == KindSummary }

// Family is an OpenMetrics metric family. A Family is immutable once the
// model has registered it.
type Family struct {
	Name string
	Type Type
	Unit string
	Help string
	// LabelNames are the labels the family fixes, in exposition order.
	// Series may carry more (from tags or source_label) after them.
	LabelNames []string
	// Buckets is a histogram's layout, +Inf last. A histogram that
	// arrives in parts (KindPrebucketed) has no layout of its own: each
	// series has its sender's (HistogramPoint.Layout), and Buckets is the
	// first guess.
	Buckets []Bucket
	// Summary shapes a summary's quantiles.
	Summary SummaryOptions
	// Native turns on a histogram's native buckets, beside its classic
	// ones. A family keeps the settings it was made with.
	Native NativeOptions
}

// Label is one label of a series.
type Label struct {
	Name, Value string
}

// Labels is a series' label set.
type Labels []Label

// Get returns the value of the named label, or "".
func (ls Labels) Get(name string) string {
	for _, l := range ls {
		if l.Name == name {
			return l.Value
		}
	}
	return ""
}

// String writes the labels as an exposition does: {a="1",b="2"}.
func (ls Labels) String() string {
	var b strings.Builder
	b.WriteByte('{')
	for i, l := range ls {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(l.Name)
		b.WriteByte('=')
		b.WriteString(strconv.Quote(l.Value))
	}
	b.WriteByte('}')
	return b.String()
}

// Has reports whether the named label is set.
func (ls Labels) Has(name string) bool {
	for _, l := range ls {
		if l.Name == name {
			return true
		}
	}
	return false
}

// AppendMerged appends to dst a sink's label set for a series: its labels
// that have a value, and each external label it does not set, sorted by
// name. A label with an empty value is absent, as in Prometheus (and
// InfluxDB refuses empty tag values), so an external label of its name
// applies. An external label that would make some series invalid (le,
// quantile, a reserved or invalid name) is never added; the configuration
// refuses those.
func (ls Labels) AppendMerged(dst, external Labels) Labels {
	start := len(dst)
	for _, l := range ls {
		if l.Value != "" {
			dst = append(dst, l)
		}
	}
	for _, l := range external {
		if ls.Get(l.Name) == "" && externalLabelOK(l.Name) {
			dst = append(dst, l)
		}
	}
	slices.SortFunc(dst[start:], func(a, b Label) int { return strings.Compare(a.Name, b.Name) })
	return dst
}
