package remotewrite

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/prometheus/prompb"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/statsbridge/statsbridge/cork"
	"github.com/statsbridge/statsbridge/model"
)

// nativeDisabled is what a Prometheus 2.x without
// --enable-feature=native-histograms answers (500) to a request holding a
// native histogram, having stored nothing of it.
const nativeDisabled = "native histograms are disabled"

// nativeProbe is how long a sink leaves native histograms out once its
// backend refused them. Then it sends them again: an operator who turned
// the feature on needs no restart, and one who did not sees the error
// logged again.
const nativeProbe = time.Minute

// nativeRefusal is when the sink's backend last refused native
// histograms (unix nanoseconds; 0: never). The encoder reads it, the
// transport's Strip writes it.
type nativeRefusal struct{ at atomic.Int64 }

func (r *nativeRefusal) refusing(now time.Time) bool {
	at := r.at.Load()
	return at != 0 && now.UnixNano()-at < int64(nativeProbe)
}

// appendNative appends a histogram point's native histogram as a series of
// its own, under the family's name, as Prometheus stores a scraped one:
// integer counts (deltas) when every weight was whole, float counts
// otherwise. Remote-write 1.0 has no created timestamp, so a series' first
// one says it starts from zero with the reset hint.
func (e *Encoder) appendNative(b []byte, f *model.Family, p *model.Point) []byte {
	h, n := p.Histogram, p.Histogram.Native
	e.merged = p.Series.Labels().AppendMerged(e.merged[:0], e.opts.ExternalLabels)
	hp := prompb.Histogram{Sum: h.Sum, Schema: n.Schema, ZeroThreshold: n.ZeroThreshold, Timestamp: e.ms}
	if n.First {
		hp.ResetHint = prompb.Histogram_YES
	}
	hp.PositiveSpans = e.spans(e.positive[:0], n.PositiveSpans)
	hp.NegativeSpans = e.spans(e.negative[:0], n.NegativeSpans)
	e.positive, e.negative = hp.PositiveSpans, hp.NegativeSpans
	if n.Integer {
		hp.Count = &prompb.Histogram_CountInt{CountInt: uint64(h.Count)}
		hp.ZeroCount = &prompb.Histogram_ZeroCountInt{ZeroCountInt: uint64(n.ZeroCount)}
		hp.PositiveDeltas = appendDeltas(e.positiveDeltas[:0], n.PositiveCounts)
		hp.NegativeDeltas = appendDeltas(e.negativeDeltas[:0], n.NegativeCounts)
		e.positiveDeltas, e.negativeDeltas = hp.PositiveDeltas, hp.NegativeDeltas
	} else {
		hp.Count = &prompb.Histogram_CountFloat{CountFloat: h.Count}
		hp.ZeroCount = &prompb.Histogram_ZeroCountFloat{ZeroCountFloat: n.ZeroCount}
		hp.PositiveCounts, hp.NegativeCounts = n.PositiveCounts, n.NegativeCounts
	}
	e.ts.Labels = e.seriesLabels(f.Name, e.merged, nil)
	e.ts.Samples = e.ts.Samples[:0]
	e.ts.Histograms = append(e.ts.Histograms[:0], hp)
	b = appendMessage(b, fieldTimeSeries, &e.ts)
	e.ts.Histograms = e.ts.Histograms[:0]
	return b
}

func (e *Encoder) spans(dst []prompb.BucketSpan, spans []model.NativeSpan) []prompb.BucketSpan {
	for _, s := range spans {
		dst = append(dst, prompb.BucketSpan{Offset: s.Offset, Length: s.Length})
	}
	return dst
}

// appendDeltas writes integer counts as remote-write's deltas: each from
// the bucket before it, across spans, the first from 0.
func appendDeltas(dst []int64, counts []float64) []int64 {
	var prev int64
	for _, c := range counts {
		dst = append(dst, int64(c)-prev)
		prev = int64(c)
	}
	return dst
}

// Strip implements sinks.Stripper: after a Prometheus refused native
// histograms, the batch without them (each is a record of its own), and
// the encoder leaves them out for nativeProbe.
func (t *Transport) Strip(b cork.Batch) (cork.Batch, int) {
	var kept cork.Batch
	left := 0
	for i := range b.Len() {
		r := b.Record(i)
		if isNative(r) {
			left++
			continue
		}
		kept.Data = append(kept.Data, r...)
		kept.Ends = append(kept.Ends, len(kept.Data))
	}
	if left > 0 && t.native != nil {
		t.native.at.Store(time.Now().UnixNano())
	}
	return kept, left
}

// isNative reports whether a record is one TimeSeries (WriteRequest field
// 1) that holds histograms (TimeSeries field 4).
func isNative(record []byte) bool {
	num, typ, n := protowire.ConsumeTag(record)
	if n < 0 || num != fieldTimeSeries || typ != protowire.BytesType {
		return false
	}
	ts, m := protowire.ConsumeBytes(record[n:])
	if m < 0 {
		return false
	}
	for len(ts) > 0 {
		num, typ, n := protowire.ConsumeTag(ts)
		if n < 0 {
			return false
		}
		if num == fieldHistograms {
			return true
		}
		m := protowire.ConsumeFieldValue(num, typ, ts[n:])
		if m < 0 {
			return false
		}
		ts = ts[n+m:]
	}
	return false
}

// fieldHistograms is TimeSeries' histograms field.
const fieldHistograms = 4
