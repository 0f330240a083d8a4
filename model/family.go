// Package model keeps what statsbridge receives as OpenMetrics metric
// families: it maps each StatsD name to a family and label set, applies
// samples to cumulative series state, and hands out coalesced snapshots of
// every live series, one per flush interval, for the sinks to render.
package model

import "strings"

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

// Family is an OpenMetrics metric family. A Family is immutable once the
// model has registered it.
type Family struct {
	Name       string
	Type       Type
	Unit       string
	Help       string
	LabelNames []string // in exposition order, where the family fixes them
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

// identity is the key a series is registered under: its family name and
// labels. Separator bytes cannot occur in names or values (the parser
// rejects control characters).
func identity(family string, labels Labels) string {
	n := len(family)
	for _, l := range labels {
		n += len(l.Name) + len(l.Value) + 2
	}
	var b strings.Builder
	b.Grow(n)
	b.WriteString(family)
	for _, l := range labels {
		b.WriteByte(0x1e)
		b.WriteString(l.Name)
		b.WriteByte(0x1f)
		b.WriteString(l.Value)
	}
	return b.String()
}
