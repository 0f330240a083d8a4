package openmetrics

import (
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"

	"github.com/statsbridge/statsbridge/model"
)

// nativeDTO is a histogram with native buckets, as client_golang writes
// one: the classic buckets beside the schema, zero bucket and spans. Its
// counts are integers (deltas for the native buckets) when every weight
// was whole, as Prometheus then keeps an integer histogram; floats
// otherwise, all of them, as Prometheus reads a histogram with a float
// count as a float histogram. The text formats write the classic part
// alone.
func nativeDTO(hp *model.HistogramPoint) *dto.Histogram {
	n := hp.Native
	h := &dto.Histogram{SampleSum: proto.Float64(hp.Sum), Schema: proto.Int32(n.Schema), ZeroThreshold: proto.Float64(n.ZeroThreshold),
		PositiveSpan: spans(n.PositiveSpans), NegativeSpan: spans(n.NegativeSpans)}
	for j, b := range hp.Layout[:len(hp.Layout)-1] { // +Inf is implied by the count
		bucket := &dto.Bucket{UpperBound: proto.Float64(b.Bound)}
		if n.Integer {
			bucket.CumulativeCount = proto.Uint64(uint64(hp.Buckets[j]))
		} else {
			bucket.CumulativeCountFloat = proto.Float64(hp.Buckets[j])
		}
		h.Bucket = append(h.Bucket, bucket)
	}
	if n.Integer {
		h.SampleCount = proto.Uint64(uint64(hp.Count))
		h.ZeroCount = proto.Uint64(uint64(n.ZeroCount))
		h.PositiveDelta, h.NegativeDelta = deltas(n.PositiveCounts), deltas(n.NegativeCounts)
	} else {
		h.SampleCountFloat = proto.Float64(hp.Count)
		h.ZeroCountFloat = proto.Float64(n.ZeroCount)
		h.PositiveCount, h.NegativeCount = n.PositiveCounts, n.NegativeCounts
	}
	return h
}

func spans(ss []model.NativeSpan) []*dto.BucketSpan {
	if len(ss) == 0 {
		return nil
	}
	out := make([]*dto.BucketSpan, len(ss))
	for i, s := range ss {
		out[i] = &dto.BucketSpan{Offset: proto.Int32(s.Offset), Length: proto.Uint32(s.Length)}
	}
	return out
}

// deltas are integer counts as the exposition has them: each from the
// bucket before it, across spans, the first from 0.
func deltas(counts []float64) []int64 {
	if len(counts) == 0 {
		return nil
	}
	out := make([]int64, len(counts))
	var prev int64
	for i, c := range counts {
		out[i] = int64(c) - prev
		prev = int64(c)
	}
	return out
}
