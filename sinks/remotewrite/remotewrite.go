// Package remotewrite renders flushes as Prometheus remote-write 1.0
// requests (snappy-compressed prompb.WriteRequest) and posts them.
package remotewrite

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"

	"github.com/statsbridge/statsbridge/cork"
	"github.com/statsbridge/statsbridge/model"
	"github.com/statsbridge/statsbridge/sinks"
)

// Options shape the series.
type Options struct {
	ExternalLabels model.Labels
	// DeleteIdle leaves out series that received nothing in the interval.
	DeleteIdle bool
	// CreatedSeries sends each counter's, histogram's and summary's
	// name_created series, as Prometheus 2.x stores them when it scrapes
	// OpenMetrics (Prosody's mod_http_openmetrics, say).
	CreatedSeries bool
	// LEFormat spells le and quantile label values: as the client sent
	// them (what Prometheus 2.x stores from a text scrape of Prosody), or
	// as Prometheus 3 stores them.
	LEFormat model.LEFormat
	// NativeHistograms sends the native histograms of the histograms that
	// keep one, beside their classic series (see appendNative).
	NativeHistograms bool
}

// Encoder writes OpenMetrics names (counters as name_total, histograms as
// name_bucket{le}, name_sum and name_count), cumulative values stamped with
// the flush time, and each family's metadata.
//
// A record is one or more length-delimited fields of a WriteRequest:
// TimeSeries (field 1) or a MetricMetadata (field 3). Records concatenate
// into a valid WriteRequest, so a batch needs no re-encoding, and halves of
// a batch are requests too. All the series of one point (a histogram's
// buckets, sum and count) are one record, so a batch never splits them.
type Encoder struct {
	opts   Options
	ts     prompb.TimeSeries
	merged model.Labels // a point's labels with the external labels
	labels []prompb.Label
	ms     int64

	// native is when the backend last refused native histograms.
	native nativeRefusal
	// Skipped counts the native histograms left out since.
	Skipped atomic.Uint64
	// scratch for native histograms
	positive, negative             []prompb.BucketSpan
	positiveDeltas, negativeDeltas []int64
}

// NewEncoder returns an encoder.
func NewEncoder(opts Options) *Encoder { return &Encoder{opts: opts} }

const (
	fieldTimeSeries = 1
	fieldMetadata   = 3
)

// Encode implements sinks.Encoder.
func (e *Encoder) Encode(f *model.Flush, buf *cork.Buffer) {
	e.ms = f.End.UnixMilli()
	native := e.opts.NativeHistograms && !e.native.refusing(time.Now())
	var family model.Family
	started := false
	for i := range f.Points {
		p := &f.Points[i]
		if e.opts.DeleteIdle && !p.Touched {
			continue
		}
		// Families have names of their own: a new name is a new family.
		if fam := p.Series.Family(); !started || fam.Name != family.Name {
			family, started = fam, true
			buf.Append(func(b []byte) []byte { return appendMetadata(b, &family) })
		}
		buf.Append(func(b []byte) []byte { return e.appendPoint(b, &family, p) })
		switch {
		case p.Histogram == nil || p.Histogram.Native == nil || !e.opts.NativeHistograms:
		case native:
			buf.Append(func(b []byte) []byte { return e.appendNative(b, &family, p) })
		default:
			e.Skipped.Add(1)
		}
	}
}

func (e *Encoder) appendPoint(b []byte, f *model.Family, p *model.Point) []byte {
	e.merged = p.Series.Labels().AppendMerged(e.merged[:0], e.opts.ExternalLabels)
	labels := e.merged
	created := float64(p.Series.Created().UnixNano()) / 1e9
	switch {
	case p.Histogram != nil:
		for i, bucket := range p.Histogram.Layout {
			b = e.appendSeries(b, f.Name+"_bucket", labels, p.Histogram.Buckets[i], model.Label{Name: "le", Value: e.opts.LEFormat.LE(bucket)})
		}
		b = e.appendSeries(b, f.Name+"_sum", labels, p.Histogram.Sum)
		b = e.appendSeries(b, f.Name+"_count", labels, p.Histogram.Count)
	case p.Summary != nil:
		for i, q := range f.Summary.Quantiles {
			if i < len(p.Summary.Quantiles) {
				b = e.appendSeries(b, f.Name, labels, p.Summary.Quantiles[i], model.Label{Name: "quantile", Value: e.opts.LEFormat.Quantile(q)})
			}
		}
		b = e.appendSeries(b, f.Name+"_sum", labels, p.Summary.Sum)
		b = e.appendSeries(b, f.Name+"_count", labels, p.Summary.Count)
	case f.Type == model.Counter:
		b = e.appendSeries(b, f.Name+"_total", labels, p.Value)
	default:
		return e.appendSeries(b, f.Name, labels, p.Value)
	}
	if e.opts.CreatedSeries {
		b = e.appendSeries(b, f.Name+"_created", labels, created)
	}
	return b
}

// appendSeries appends one TimeSeries with one sample. labels are the
// point's, merged and sorted; extra is an le or quantile label, at most one.
func (e *Encoder) appendSeries(b []byte, name string, labels model.Labels, v float64, extra ...model.Label) []byte {
	e.ts.Labels = e.seriesLabels(name, labels, extra)
	e.ts.Samples = append(e.ts.Samples[:0], prompb.Sample{Value: v, Timestamp: e.ms})
	return appendMessage(b, fieldTimeSeries, &e.ts)
}

// seriesLabels puts __name__ and extra into the sorted labels, keeping them
// sorted by name as remote-write expects. __name__ is not always first:
// upper-case label names sort before '_'.
func (e *Encoder) seriesLabels(name string, labels model.Labels, extra []model.Label) []prompb.Label {
	fixed := [2]model.Label{{Name: "__name__", Value: name}}
	n := 1
	if len(extra) > 0 {
		fixed[1], n = extra[0], 2
		if fixed[1].Name < fixed[0].Name {
			fixed[0], fixed[1] = fixed[1], fixed[0]
		}
	}
	e.labels = e.labels[:0]
	i := 0
	for _, l := range labels {
		for ; i < n && fixed[i].Name < l.Name; i++ {
			e.labels = append(e.labels, prompb.Label{Name: fixed[i].Name, Value: fixed[i].Value})
		}
		e.labels = append(e.labels, prompb.Label{Name: l.Name, Value: l.Value})
	}
	for ; i < n; i++ {
		e.labels = append(e.labels, prompb.Label{Name: fixed[i].Name, Value: fixed[i].Value})
	}
	return e.labels
}

var metadataTypes = map[model.Type]prompb.MetricMetadata_MetricType{
	model.Unknown:   prompb.MetricMetadata_UNKNOWN,
	model.Counter:   prompb.MetricMetadata_COUNTER,
	model.Gauge:     prompb.MetricMetadata_GAUGE,
	model.Histogram: prompb.MetricMetadata_HISTOGRAM,
	model.Summary:   prompb.MetricMetadata_SUMMARY,
}

func appendMetadata(b []byte, f *model.Family) []byte {
	md := prompb.MetricMetadata{Type: metadataTypes[f.Type], MetricFamilyName: f.Name, Help: f.Help, Unit: f.Unit}
	return appendMessage(b, fieldMetadata, &md)
}

type sizedMarshaler interface {
	Size() int
	MarshalToSizedBuffer([]byte) (int, error)
}

// appendMessage appends m as field number field (wire type 2) of the
// enclosing message.
func appendMessage(b []byte, field int, m sizedMarshaler) []byte {
	size := m.Size()
	b = binary.AppendUvarint(b, uint64(field<<3|2))
	b = binary.AppendUvarint(b, uint64(size))
	start := len(b)
	b = slices.Grow(b, size)[:start+size]
	if _, err := m.MarshalToSizedBuffer(b[start:]); err != nil {
		return b[:start]
	}
	return b
}

// Transport posts snappy-compressed batches. It is safe for concurrent
// Sends: a sink may have several requests in flight.
type Transport struct {
	url    string
	header http.Header
	client *http.Client
	zbufs  sync.Pool // *[]byte
	// native is told when the backend refuses native histograms (Tell).
	native *nativeRefusal
}

// Tell makes the transport tell e when its backend refuses native
// histograms, so that e leaves them out for a while.
func (t *Transport) Tell(e *Encoder) { t.native = &e.native }

// NewTransport returns a transport. headers may carry authentication.
func NewTransport(url string, headers map[string]string, client sinks.ClientOptions) *Transport {
	h := http.Header{
		"Content-Encoding":                  {"snappy"},
		"Content-Type":                      {"application/x-protobuf"},
		"User-Agent":                        {"statsbridge"},
		"X-Prometheus-Remote-Write-Version": {"0.1.0"},
	}
	for k, v := range headers {
		h.Set(k, v)
	}
	return &Transport{url: url, header: h, client: sinks.NewHTTPClient(client)}
}

// Send implements sinks.Transport. Prometheus refuses a whole request for one
// bad sample, with 400 (out of order, duplicate, out of bounds) or, in 2.x,
// 500 ("too old sample", "empty labelset"): both are refusals of the content,
// never retried as they are. A 2.x without native histograms refuses a
// request holding one with 500 "native histograms are disabled": the
// batch goes again without them (see Strip).
func (t *Transport) Send(ctx context.Context, b cork.Batch) error {
	zbuf, _ := t.zbufs.Get().(*[]byte)
	if zbuf == nil {
		zbuf = new([]byte)
	}
	defer t.zbufs.Put(zbuf)
	*zbuf = snappy.Encode((*zbuf)[:cap(*zbuf)], b.Data)
	a, err := sinks.Post(ctx, t.client, t.url, t.header, *zbuf)
	if err != nil {
		return fmt.Errorf("remote write: %w", err)
	}
	err = sinks.Classify(a)
	if a.Status == http.StatusInternalServerError && strings.Contains(a.Body, nativeDisabled) {
		return &sinks.Failure{Outcome: sinks.Unsupported, Err: err}
	}
	if a.Status == http.StatusInternalServerError &&
		(strings.Contains(a.Body, "too old sample") || strings.Contains(a.Body, "empty labelset")) {
		return &sinks.Failure{Outcome: sinks.Refused, Err: err}
	}
	return err
}
