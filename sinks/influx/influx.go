// Package influx renders flushes as InfluxDB line protocol and writes them
// over HTTP to InfluxDB 1.x (/write) or 2.x (/api/v2/write).
package influx

import (
	"math"
	"sort"
	"sync/atomic"

	"github.com/influxdata/line-protocol/v2/lineprotocol"

	"github.com/statsbridge/statsbridge/cork"
	"github.com/statsbridge/statsbridge/model"
)

// Options shape the points.
type Options struct {
	// Cumulative sends counters' totals rather than their per-interval deltas.
	Cumulative bool
	// DeleteIdle leaves out series that received nothing in the interval.
	DeleteIdle     bool
	ExternalLabels model.Labels
}

// Encoder writes one line per series: the family name is the measurement,
// the labels (and external labels) are tags, sorted, and the value is the
// field "value".
type Encoder struct {
	opts Options
	enc  lineprotocol.Encoder
	tags model.Labels
	// Skipped counts values InfluxDB cannot store (NaN, ±Inf) and points
	// the line-protocol encoder refused.
	Skipped atomic.Uint64
}

// NewEncoder returns an encoder writing millisecond timestamps.
func NewEncoder(opts Options) *Encoder {
	e := &Encoder{opts: opts}
	e.enc.SetPrecision(lineprotocol.Millisecond)
	return e
}

// Encode implements sinks.Encoder.
func (e *Encoder) Encode(f *model.Flush, buf *cork.Buffer) {
	ts := f.Start
	if e.opts.Cumulative {
		ts = f.End
	}
	for i := range f.Points {
		p := &f.Points[i]
		if e.opts.DeleteIdle && !p.Touched {
			continue
		}
		v := p.Value
		if p.Series.Family().Type == model.Counter && !e.opts.Cumulative {
			v = p.Delta
		}
		value, ok := lineprotocol.FloatValue(v)
		if !ok || math.IsNaN(v) {
			e.Skipped.Add(1)
			continue
		}
		buf.Append(func(b []byte) []byte {
			e.enc.SetBuffer(b)
			e.enc.StartLine(p.Series.Family().Name)
			for _, t := range e.sortedTags(p.Series.Labels()) {
				e.enc.AddTag(t.Name, t.Value)
			}
			e.enc.AddField("value", value)
			e.enc.EndLine(ts)
			if err := e.enc.Err(); err != nil {
				e.Skipped.Add(1)
				e.enc.ClearErr()
			}
			return e.enc.Bytes()
		})
	}
}

// sortedTags merges a series' labels with the external labels (the series'
// own win), sorted by name as line protocol wants.
func (e *Encoder) sortedTags(labels model.Labels) model.Labels {
	if len(e.opts.ExternalLabels) == 0 && sort.SliceIsSorted(labels, func(i, j int) bool { return labels[i].Name < labels[j].Name }) {
		return labels
	}
	e.tags = append(e.tags[:0], labels...)
	for _, l := range e.opts.ExternalLabels {
		if labels.Get(l.Name) == "" {
			e.tags = append(e.tags, l)
		}
	}
	sort.Slice(e.tags, func(i, j int) bool { return e.tags[i].Name < e.tags[j].Name })
	return e.tags
}
