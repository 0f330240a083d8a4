package remotewrite

import (
	"context"
	"math"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/prometheus/prompb"

	"github.com/statsbridge/statsbridge/cork"
	"github.com/statsbridge/statsbridge/model"
	"github.com/statsbridge/statsbridge/model/modeltest"
	"github.com/statsbridge/statsbridge/sinks"
)

// nativeModel is a model whose timers keep native histograms at a bucket
// factor of 1.1, fed lines.
func nativeModel(t *testing.T, lines ...string) *model.Model {
	obs := model.DefaultObservers
	obs.Native = model.NativeOptions{BucketFactor: 1.1, MaxBuckets: 256}
	m := model.New(model.Options{MaxSeries: 100, MaxSeriesPerFamily: 100, Observers: obs})
	modeltest.Feed(t, m, lines...)
	return m
}

// encode renders a flush of m as one WriteRequest.
func encode(t *testing.T, enc *Encoder, m *model.Model, iv cork.Interval) (prompb.WriteRequest, cork.Batch) {
	t.Helper()
	var batches []cork.Batch
	buf := cork.NewBuffer(cork.Limits{Records: 1000, Bytes: 1 << 20}, func(b cork.Batch) { batches = append(batches, b) })
	buf.Cork()
	enc.Encode(modeltest.Flush(m, iv), buf)
	buf.Uncork()
	if len(batches) != 1 {
		t.Fatalf("%d batches", len(batches))
	}
	var req prompb.WriteRequest
	if err := req.Unmarshal(batches[0].Data); err != nil {
		t.Fatal(err)
	}
	return req, batches[0]
}

func seriesNamed(req prompb.WriteRequest, name string) []prompb.TimeSeries {
	var out []prompb.TimeSeries
	for _, ts := range req.Timeseries {
		for _, l := range ts.Labels {
			if l.Name == "__name__" && l.Value == name {
				out = append(out, ts)
			}
		}
	}
	return out
}

// TestNativeHistogramsAreClientGolangs: a timer's native histogram goes as
// a series of its own under the family's name, beside the classic
// _bucket, _sum and _count, with the schema, spans and counts that
// client_golang's native histogram has for the same observations (a value
// sent with @0.25 observed four times), the first with reset hint YES.
func TestNativeHistogramsAreClientGolangs(t *testing.T) {
	lines := []string{"api.time:250|ms", "api.time:1500|ms|@0.25", "api.time:0|ms", "api.time:12|ms", "api.time:13|ms", "api.time:900000|ms"}
	values := map[float64]int{0.25: 1, 1.5: 4, 0: 1, 0.012: 1, 0.013: 1, 900: 1}
	m := nativeModel(t, lines...)
	enc := NewEncoder(Options{NativeHistograms: true, ExternalLabels: model.Labels{{Name: "relay", Value: "a"}}})
	req, _ := encode(t, enc, m, modeltest.Interval(start))

	ch := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "api_time_seconds", Help: "x",
		Buckets: model.DefaultBuckets, NativeHistogramBucketFactor: 1.1, NativeHistogramMaxBucketNumber: 256})
	for v, n := range values {
		for range n {
			ch.Observe(v)
		}
	}
	var dm dto.Metric
	if err := ch.Write(&dm); err != nil {
		t.Fatal(err)
	}
	want := dm.GetHistogram()

	native := seriesNamed(req, "api_time_seconds")
	if len(native) != 1 || len(native[0].Histograms) != 1 || len(native[0].Samples) != 0 {
		t.Fatalf("native series: %+v", native)
	}
	if got := native[0].Labels; len(got) != 2 || got[1].Name != "relay" || got[1].Value != "a" {
		t.Errorf("labels %v", got)
	}
	h := native[0].Histograms[0]
	if h.GetCountInt() != want.GetSampleCount() || h.Sum != want.GetSampleSum() || h.Schema != want.GetSchema() ||
		h.ZeroThreshold != want.GetZeroThreshold() || h.GetZeroCountInt() != want.GetZeroCount() {
		t.Errorf("count %d sum %v schema %d zero %v/%d; client_golang's %d %v %d %v/%d", h.GetCountInt(), h.Sum, h.Schema,
			h.ZeroThreshold, h.GetZeroCountInt(), want.GetSampleCount(), want.GetSampleSum(), want.GetSchema(),
			want.GetZeroThreshold(), want.GetZeroCount())
	}
	if spans, deltas := spansOf(want.GetPositiveSpan()), want.GetPositiveDelta(); !reflect.DeepEqual(h.PositiveSpans, spans) ||
		!reflect.DeepEqual(h.PositiveDeltas, deltas) || len(h.NegativeSpans) != 0 || len(h.PositiveCounts) != 0 {
		t.Errorf("spans %v deltas %v; client_golang's %v %v", h.PositiveSpans, h.PositiveDeltas, spans, deltas)
	}
	if h.ResetHint != prompb.Histogram_YES || h.Timestamp != start.Add(10*time.Second).UnixMilli() {
		t.Errorf("first histogram: reset hint %v at %d", h.ResetHint, h.Timestamp)
	}
	for _, classic := range []string{"api_time_seconds_bucket", "api_time_seconds_sum", "api_time_seconds_count"} {
		if ss := seriesNamed(req, classic); len(ss) == 0 || len(ss[0].Histograms) != 0 {
			t.Errorf("%s: %+v", classic, ss)
		}
	}

	req, _ = encode(t, enc, m, modeltest.Interval(start.Add(10*time.Second)))
	if h := seriesNamed(req, "api_time_seconds")[0].Histograms[0]; h.ResetHint != prompb.Histogram_UNKNOWN || h.GetCountInt() != 9 {
		t.Errorf("second histogram: reset hint %v, count %d", h.ResetHint, h.GetCountInt())
	}
}

func spansOf(ss []*dto.BucketSpan) []prompb.BucketSpan {
	out := make([]prompb.BucketSpan, len(ss))
	for i, s := range ss {
		out[i] = prompb.BucketSpan{Offset: s.GetOffset(), Length: s.GetLength()}
	}
	return out
}

// TestNativeHistogramsWithFractionalWeights are float histograms: a
// value sent with @0.3 counts 1/0.3.
func TestNativeHistogramsWithFractionalWeights(t *testing.T) {
	m := nativeModel(t, "t:5|ms|@0.3", "t:-5|h", "t:5|ms")
	req, _ := encode(t, NewEncoder(Options{NativeHistograms: true}), m, modeltest.Interval(start))
	h := seriesNamed(req, "t_seconds")[0].Histograms[0]
	rate := 0.3
	want := 1/rate + 1
	if h.GetCountFloat() != want || len(h.PositiveCounts) != 1 || h.PositiveCounts[0] != want || len(h.PositiveDeltas) != 0 {
		t.Errorf("count %v, counts %v, deltas %v; want floats of %v", h.GetCountFloat(), h.PositiveCounts, h.PositiveDeltas, want)
	}
	if ts := seriesNamed(req, "t"); len(ts) != 1 || ts[0].Histograms[0].GetCountInt() != 1 || ts[0].Histograms[0].NegativeDeltas[0] != 1 {
		t.Errorf("t (a histogram of -5): %+v", ts)
	}
	if math.IsNaN(h.Sum) {
		t.Error("sum NaN")
	}
}

// TestNativeHistogramsAreOptIn: without native_histograms, a sink sends
// what it sent before: classic series only.
func TestNativeHistogramsAreOptIn(t *testing.T) {
	m := nativeModel(t, "api.time:250|ms")
	req, _ := encode(t, NewEncoder(Options{}), m, modeltest.Interval(start))
	for _, ts := range req.Timeseries {
		if len(ts.Histograms) > 0 {
			t.Errorf("a native histogram: %v", ts.Labels)
		}
	}
	if len(seriesNamed(req, "api_time_seconds_count")) != 1 {
		t.Error("no classic count")
	}
}

// TestAPrometheusWithoutNativeHistograms: its 500 is Unsupported; Strip
// takes out the native histograms and nothing else, and the encoder leaves
// them out (counted) until it is time to try again.
func TestAPrometheusWithoutNativeHistograms(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "native histograms are disabled", http.StatusInternalServerError)
	}))
	defer srv.Close()
	enc := NewEncoder(Options{NativeHistograms: true})
	tr := NewTransport(srv.URL, nil, sinks.ClientOptions{Timeout: time.Second})
	tr.Tell(enc)
	m := nativeModel(t, "a.time:250|ms", "b.time:5|ms", "hits:1|c")
	req, batch := encode(t, enc, m, modeltest.Interval(start))
	if o, _ := sinks.OutcomeOf(tr.Send(context.Background(), batch)); o != sinks.Unsupported {
		t.Fatalf("outcome %v, want unsupported", o)
	}
	kept, left := tr.Strip(batch)
	if left != 2 || kept.Len() != batch.Len()-2 {
		t.Fatalf("stripped %d of %d records, kept %d; want the 2 native histograms", left, batch.Len(), kept.Len())
	}
	var stripped prompb.WriteRequest
	if err := stripped.Unmarshal(kept.Data); err != nil {
		t.Fatal(err)
	}
	if len(stripped.Timeseries) != len(req.Timeseries)-2 || len(stripped.Metadata) != len(req.Metadata) {
		t.Errorf("kept %d series and %d metadata of %d and %d", len(stripped.Timeseries), len(stripped.Metadata), len(req.Timeseries), len(req.Metadata))
	}
	for _, ts := range stripped.Timeseries {
		if len(ts.Histograms) > 0 {
			t.Errorf("kept a native histogram: %v", ts.Labels)
		}
	}
	req, _ = encode(t, enc, m, modeltest.Interval(start.Add(10*time.Second)))
	for _, ts := range req.Timeseries {
		if len(ts.Histograms) > 0 {
			t.Errorf("sent a native histogram after the refusal: %v", ts.Labels)
		}
	}
	if n := enc.Skipped.Load(); n != 2 {
		t.Errorf("%d native histograms counted as skipped, want 2", n)
	}
	enc.native.at.Store(time.Now().Add(-nativeProbe).UnixNano())
	req, _ = encode(t, enc, m, modeltest.Interval(start.Add(20*time.Second)))
	if n := len(seriesNamed(req, "a_time_seconds")); n != 1 {
		t.Errorf("%d native histograms once the probe time passed, want 1", n)
	}
}
