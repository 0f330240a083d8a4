package remotewrite

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"

	"github.com/statsbridge/statsbridge/cork"
	"github.com/statsbridge/statsbridge/model"
	"github.com/statsbridge/statsbridge/model/modeltest"
	"github.com/statsbridge/statsbridge/sinks"
)

var start = time.Unix(1_800_000_000, 0)

// TestRequestsDecode checks what Prometheus would decode from a batch: the
// series, their labels and samples, and the families' metadata.
func TestRequestsDecode(t *testing.T) {
	m := modeltest.Model(t, "hits:3|c|#zone:b", "temp:21.5|g")
	f := modeltest.Flush(m, modeltest.Interval(start))
	var batches []cork.Batch
	buf := cork.NewBuffer(cork.Limits{Records: 100, Bytes: 1 << 20}, func(b cork.Batch) { batches = append(batches, b) })
	buf.Cork()
	NewEncoder(Options{ExternalLabels: model.Labels{{Name: "instance", Value: "relay1"}}}).Encode(f, buf)
	buf.Uncork()
	if len(batches) != 1 {
		t.Fatalf("%d batches", len(batches))
	}
	var req prompb.WriteRequest
	if err := req.Unmarshal(batches[0].Data); err != nil {
		t.Fatal(err)
	}
	got := map[string]prompb.TimeSeries{}
	for _, ts := range req.Timeseries {
		got[ts.Labels[0].Value] = ts
		for i := 1; i < len(ts.Labels); i++ {
			if ts.Labels[i-1].Name >= ts.Labels[i].Name {
				t.Errorf("labels not sorted: %v", ts.Labels)
			}
		}
	}
	hits := got["hits_total"]
	if len(hits.Labels) != 3 || hits.Labels[1].Name != "instance" || hits.Labels[1].Value != "relay1" ||
		hits.Labels[2].Name != "zone" || hits.Labels[2].Value != "b" || len(hits.Samples) != 1 ||
		hits.Samples[0].Value != 3 || hits.Samples[0].Timestamp != start.Add(10*time.Second).UnixMilli() {
		t.Errorf("hits_total: %+v", hits)
	}
	if temp := got["temp"]; len(temp.Samples) != 1 || temp.Samples[0].Value != 21.5 {
		t.Errorf("temp: %+v", temp)
	}
	types := map[string]prompb.MetricMetadata_MetricType{}
	for _, md := range req.Metadata {
		types[md.MetricFamilyName] = md.Type
	}
	if types["hits"] != prompb.MetricMetadata_COUNTER || types["temp"] != prompb.MetricMetadata_GAUGE {
		t.Errorf("metadata %v", req.Metadata)
	}
}

func TestTransportAnswers(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		want   sinks.Outcome
	}{
		{"204", 204, "", sinks.Delivered},
		{"out of order", 400, "out of order sample", sinks.Refused},
		{"too old sample (2.x answers 500): refused, never retried as is", 500, "too old sample", sinks.Refused},
		{"empty labelset (500): refused", 500, "empty labelset: invalid sample", sinks.Refused},
		{"a Prometheus 2.x without native histograms (500): unsupported, sent again without them", 500,
			"native histograms are disabled", sinks.Unsupported},
		{"other 500", 500, "internal", sinks.ServerError},
		{"429", 429, "", sinks.Throttled},
		{"401", 401, "", sinks.ConfigError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				if _, err := snappy.Decode(nil, b); err != nil || r.Header.Get("Content-Encoding") != "snappy" {
					t.Errorf("body is not snappy: %v", err)
				}
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.body)
			}))
			defer srv.Close()
			err := NewTransport(srv.URL, nil, sinks.ClientOptions{Timeout: time.Second}).Send(context.Background(), cork.Batch{Data: []byte{}, Ends: nil})
			if got, _ := sinks.OutcomeOf(err); got != tt.want {
				t.Errorf("%v: got %v, want %v", err, got, tt.want)
			}
		})
	}
}

func TestHistogramsAndCreatedSeries(t *testing.T) {
	m := modeltest.Model(t, "api.time:100|ms", "hits:1|c")
	f := modeltest.Flush(m, modeltest.Interval(start))
	for _, created := range []bool{true, false} {
		var data []byte
		var records int
		buf := cork.NewBuffer(cork.Limits{Records: 100, Bytes: 1 << 20}, func(b cork.Batch) { data = append(data, b.Data...); records += b.Len() })
		buf.Cork()
		NewEncoder(Options{CreatedSeries: created}).Encode(f, buf)
		buf.Uncork()
		var req prompb.WriteRequest
		if err := req.Unmarshal(data); err != nil {
			t.Fatal(err)
		}
		names := map[string]int{}
		values := map[string]float64{}
		for _, ts := range req.Timeseries {
			name, le := "", ""
			for _, l := range ts.Labels {
				switch l.Name {
				case "__name__":
					name = l.Value
				case "le":
					le = l.Value
				}
			}
			names[name]++
			values[name+le] = ts.Samples[0].Value
		}
		want := map[string]int{"api_time_seconds_bucket": 12, "api_time_seconds_sum": 1, "api_time_seconds_count": 1, "hits_total": 1}
		if created {
			want["api_time_seconds_created"], want["hits_created"] = 1, 1
		}
		if fmt.Sprint(names) != fmt.Sprint(want) {
			t.Errorf("created=%v: series %v, want %v", created, names, want)
		}
		if values["api_time_seconds_bucket0.1"] != 1 || values["api_time_seconds_bucket0.05"] != 0 || values["api_time_seconds_sum"] != 0.1 {
			t.Errorf("values %v", values)
		}
		// Two families' metadata and two points: a histogram is one record.
		if records != 4 {
			t.Errorf("%d records, want 4", records)
		}
	}
}

// TestSeriesLabelsAreMergedAndSorted: each TimeSeries holds __name__, the
// series' labels, the external labels the series does not set, and its le
// or quantile, sorted by name wherever __name__ falls.
func TestSeriesLabelsAreMergedAndSorted(t *testing.T) {
	tests := []struct {
		line, series, want string
	}{
		{"g:1|g|#instance:own", "g", "__name__=g instance=own"},
		{"e:1|g|#instance:", "e", "__name__=e instance=relay1"},
		{"u:1|g|#Zone:x", "u", "Zone=x __name__=u instance=relay1"},
		{"h:100|ms|#Zone:x", "h_seconds_bucket", "Zone=x __name__=h_seconds_bucket instance=relay1 le=0.005"},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			m := modeltest.Model(t, tt.line)
			var batches []cork.Batch
			buf := cork.NewBuffer(cork.Limits{Records: 100, Bytes: 1 << 20}, func(b cork.Batch) { batches = append(batches, b) })
			buf.Cork()
			NewEncoder(Options{ExternalLabels: model.Labels{{Name: "instance", Value: "relay1"}}}).
				Encode(modeltest.Flush(m, modeltest.Interval(start)), buf)
			buf.Uncork()
			var req prompb.WriteRequest
			if err := req.Unmarshal(batches[0].Data); err != nil {
				t.Fatal(err)
			}
			for _, ts := range req.Timeseries {
				var got []string
				name := ""
				for _, l := range ts.Labels {
					got = append(got, l.Name+"="+l.Value)
					if l.Name == "__name__" {
						name = l.Value
					}
				}
				if name == tt.series {
					if s := strings.Join(got, " "); s != tt.want {
						t.Errorf("got  %s\nwant %s", s, tt.want)
					}
					return
				}
			}
			t.Errorf("no series %s", tt.series)
		})
	}
}

// TestLEFormat sends a Prosody histogram's le as Prosody spells it, or as
// Prometheus 3 would have stored it from a scrape.
func TestLEFormat(t *testing.T) {
	m := modeltest.ProsodyModel(t, "prosody.prosody_mod_http_file_share.upload_bytes.upload_localhost.bucket.4194304:1|c",
		"prosody.prosody_mod_http_file_share.upload_bytes.upload_localhost.bucket.+Inf:1|c",
		"prosody.prosody_mod_http_file_share.upload_bytes.upload_localhost.count:1|c")
	for _, tt := range []struct {
		format model.LEFormat
		want   string
	}{
		{model.LEAsSent, "1024 4096 16384 65536 262144 1048576 4194304 +Inf"},
		{model.LEFloat, "1024.0 4096.0 16384.0 65536.0 262144.0 1.048576e+06 4.194304e+06 +Inf"},
	} {
		f := modeltest.Flush(m, modeltest.Interval(start))
		var batches []cork.Batch
		buf := cork.NewBuffer(cork.Limits{Records: 100, Bytes: 1 << 20}, func(b cork.Batch) { batches = append(batches, b) })
		buf.Cork()
		NewEncoder(Options{LEFormat: tt.format}).Encode(f, buf)
		buf.Uncork()
		var les []string
		for _, b := range batches {
			var req prompb.WriteRequest
			if err := req.Unmarshal(b.Data); err != nil {
				t.Fatal(err)
			}
			for _, ts := range req.Timeseries {
				for _, l := range ts.Labels {
					if l.Name == "le" {
						les = append(les, l.Value)
					}
				}
			}
		}
		if got := strings.Join(les, " "); got != tt.want {
			t.Errorf("format %d: le %s, want %s", tt.format, got, tt.want)
		}
	}
}
