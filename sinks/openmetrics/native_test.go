package openmetrics

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/prometheus/model/textparse"
	"google.golang.org/protobuf/proto"

	"github.com/statsbridge/statsbridge/model"
	"github.com/statsbridge/statsbridge/model/modeltest"
)

// prometheusAccept is what a Prometheus with native histograms asks for.
const prometheusAccept = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.6," +
	"application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"

func nativeHandler(t *testing.T, lines ...string) *Handler {
	obs := model.DefaultObservers
	obs.Native = model.NativeOptions{BucketFactor: 1.1, MaxBuckets: 256}
	m := model.New(model.Options{MaxSeries: 100, MaxSeriesPerFamily: 100, Observers: obs})
	modeltest.Feed(t, m, lines...)
	return NewHandler(m, Access{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}, Options{}, slog.New(slog.DiscardHandler))
}

func get(h http.Handler, accept string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.RemoteAddr = "127.0.0.1:5000"
	req.Header.Set("Accept", accept)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// TestProtobufWhenNativeHistogramsExist: a scraper that prefers protobuf
// gets it once a family keeps native histograms, and the other formats
// stay what they were, the classic view.
func TestProtobufWhenNativeHistogramsExist(t *testing.T) {
	h := nativeHandler(t, "api.time:250|ms", "hits:1|c")
	tests := []struct {
		name, accept, wantType string
	}{
		{"Prometheus with native histograms: protobuf", prometheusAccept, "application/vnd.google.protobuf"},
		{"OpenMetrics asked", "application/openmetrics-text; version=1.0.0", "application/openmetrics-text"},
		{"Prometheus text asked", "text/plain;version=0.0.4", "text/plain; version=0.0.4"},
		{"anything: text, never protobuf", "*/*", "text/plain; version=0.0.4"},
		{"nothing said: text", "", "text/plain; version=0.0.4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := get(h, tt.accept)
			if rec.Code != 200 || !strings.HasPrefix(rec.Header().Get("Content-Type"), tt.wantType) {
				t.Fatalf("%d %q, want %q", rec.Code, rec.Header().Get("Content-Type"), tt.wantType)
			}
			if !strings.HasPrefix(tt.wantType, "application/vnd.google.protobuf") &&
				!strings.Contains(rec.Body.String(), `api_time_seconds_bucket{le="0.25"} 1`) {
				t.Errorf("no classic buckets in the text:\n%s", rec.Body.String())
			}
		})
	}
}

// TestProtobufNativeHistogramIsClientGolangs: the protobuf exposition's
// histogram is what client_golang writes for the same observations (a
// value sent with @0.5 observed twice): classic buckets, count, sum,
// schema, zero bucket, spans and deltas. Prometheus' own parser reads it as
// an integer native histogram; with a fractional weight, as a float one.
func TestProtobufNativeHistogramIsClientGolangs(t *testing.T) {
	h := nativeHandler(t, "api.time:250|ms", "api.time:1500|ms|@0.5", "api.time:0|ms", "api.time:3|ms", "api.time:3.1|ms", "frac:2|h|@0.3", "hits:1|c")
	rec := get(h, prometheusAccept)
	families := decodeProtobuf(t, rec.Body.Bytes())

	ch := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "api_time_seconds", Help: "StatsD timer api.time",
		Buckets: model.DefaultBuckets, NativeHistogramBucketFactor: 1.1, NativeHistogramMaxBucketNumber: 256})
	for _, v := range []float64{0.25, 1.5, 1.5, 0, 0.003, 0.0031} {
		ch.Observe(v)
	}
	var want dto.Metric
	if err := ch.Write(&want); err != nil {
		t.Fatal(err)
	}
	want.Histogram.CreatedTimestamp = nil
	got := families["api_time_seconds"]
	if got == nil || len(got.Metric) != 1 {
		t.Fatalf("api_time_seconds: %v", got)
	}
	if !proto.Equal(got.Metric[0].Histogram, want.Histogram) {
		t.Errorf("statsbridge:\n%v\nclient_golang:\n%v", got.Metric[0].Histogram, want.Histogram)
	}
	if families["hits_total"].GetMetric()[0].GetCounter().GetValue() != 1 {
		t.Errorf("hits_total: %v", families["hits_total"])
	}

	p, err := textparse.New(rec.Body.Bytes(), rec.Header().Get("Content-Type"), nil, textparse.ParserOptions{})
	if err != nil {
		t.Fatal(err)
	}
	natives := map[string]string{}
	for {
		e, err := p.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("Prometheus' parser: %v", err)
		}
		if e == textparse.EntryHistogram {
			name, _, ih, fh := p.Histogram()
			switch {
			case ih != nil:
				natives[string(name)] = "integer " + ih.String()
			case fh != nil:
				natives[string(name)] = "float " + fh.String()
			}
		}
	}
	if !strings.HasPrefix(natives["api_time_seconds"], "integer {count:6,") || !strings.HasPrefix(natives["frac"], "float {count:3.33") {
		t.Errorf("Prometheus reads the native histograms as %v", natives)
	}
}

func decodeProtobuf(t *testing.T, body []byte) map[string]*dto.MetricFamily {
	t.Helper()
	dec := expfmt.NewDecoder(bytes.NewReader(body), expfmt.NewFormat(expfmt.TypeProtoDelim))
	out := map[string]*dto.MetricFamily{}
	for {
		var mf dto.MetricFamily
		if err := dec.Decode(&mf); errors.Is(err, io.EOF) {
			return out
		} else if err != nil {
			t.Fatal(err)
		}
		out[mf.GetName()] = &mf
	}
}
