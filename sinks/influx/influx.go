// Package influx renders flushes as InfluxDB line protocol and writes them
// over HTTP to InfluxDB 1.x (/write) or 2.x (/api/v2/write).
package influx

import (
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
// the labels (and external labels) are tags, sorted, and the fields depend
// on the kind of series:
//
//   - counters, gauges and sets: value (a counter's delta, or its total when
//     cumulative);
//   - timers, histograms and distributions: Etsy's statistics of the
//     interval (count, count_ps, lower, upper, mean, median, std, sum,
//     sum_squares, and count_90, mean_90, upper_90, sum_90, sum_squares_90
//     per percentile), in the unit the client sent;
//   - Prosody's histograms: count, sum and one field per bucket named by
//     its le ("0.001", "+Inf"), deltas or totals like counters;
//   - Prosody's summaries: count and sum.
//
// Every field is a float, always: InfluxDB fixes a field's type per shard.
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
	ts := f.Stamp(e.opts.Cumulative)
	seconds := f.Length.Seconds()
	for i := range f.Points {
		p := &f.Points[i]
		if e.opts.DeleteIdle && !p.Touched {
			continue
		}
		buf.Append(func(b []byte) []byte {
			e.enc.SetBuffer(b)
			e.enc.StartLine(p.Series.Family().Name)
			e.tags = p.Series.Labels().AppendMerged(e.tags[:0], e.opts.ExternalLabels)
			for _, t := range e.tags {
				e.enc.AddTag(t.Name, t.Value)
			}
			if e.addFields(p, seconds) == 0 {
				return b // no field InfluxDB can store: no line
			}
			e.enc.EndLine(ts)
			if err := e.enc.Err(); err != nil {
				e.Skipped.Add(1)
				e.enc.ClearErr()
				return b
			}
			return e.enc.Bytes()
		})
	}
}

// addFields adds the point's fields and returns how many it added.
func (e *Encoder) addFields(p *model.Point, seconds float64) int {
	n := 0
	field := func(key string, v float64) {
		value, ok := lineprotocol.FloatValue(v)
		if !ok {
			e.Skipped.Add(1)
			return
		}
		e.enc.AddField(key, value)
		n++
	}
	pick := func(delta, total float64) float64 {
		if e.opts.Cumulative {
			return total
		}
		return delta
	}
	s := p.Series
	switch s.Kind() {
	case model.KindCounter:
		field("value", pick(p.Delta, p.Value))
	case model.KindGauge, model.KindSet:
		field("value", p.Value)
	case model.KindHistogram, model.KindSummary:
		p.Stats.EachEtsy(seconds, field)
	case model.KindPrebucketed:
		h := p.Histogram
		field("count", pick(h.DeltaCount, h.Count))
		field("sum", pick(h.DeltaSum, h.Sum))
		for i, bucket := range h.Layout {
			field(bucket.LE, pick(h.DeltaBuckets[i], h.Buckets[i]))
		}
	case model.KindPresummed:
		field("count", pick(p.Summary.DeltaCount, p.Summary.Count))
		field("sum", pick(p.Summary.DeltaSum, p.Summary.Sum))
	}
	return n
}
