package influx

import (
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/statsbridge/statsbridge/cork"
	"github.com/statsbridge/statsbridge/model"
	"github.com/statsbridge/statsbridge/model/modeltest"
	"github.com/statsbridge/statsbridge/sinks"
)

var start = time.Unix(1_800_000_000, 0)

func encode(t *testing.T, opts Options, lines ...string) ([]string, *Encoder) {
	t.Helper()
	enc := NewEncoder(opts)
	return modeltest.Lines(modeltest.Flush(modeltest.Model(t, lines...), modeltest.Interval(start)), enc.Encode), enc
}

func TestLines(t *testing.T) {
	lines := []string{"hits:3|c|#zone:b,app:x", "temp:21.5|g", "bad:nan|g", "empty:1|g|#zone:"}
	tests := []struct {
		name string
		opts Options
		want []string
	}{
		{"delta counters at the interval start (ms); a tag sent empty is no tag", Options{}, []string{
			"empty value=1 1800000000000", "hits,app=x,zone=b value=3 1800000000000", "temp value=21.5 1800000000000"}},
		{"cumulative at the flush time, external labels sorted in", Options{Cumulative: true,
			ExternalLabels: model.Labels{{Name: "host", Value: "relay1"}}}, []string{
			"empty,host=relay1 value=1 1800000010000",
			"hits,app=x,host=relay1,zone=b value=3 1800000010000", "temp,host=relay1 value=21.5 1800000010000"}},
		{"a series' own label wins; where a tag was sent empty, the external label applies", Options{
			ExternalLabels: model.Labels{{Name: "zone", Value: "dev"}}}, []string{
			"empty,zone=dev value=1 1800000000000",
			"hits,app=x,zone=b value=3 1800000000000", "temp,zone=dev value=21.5 1800000000000"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, enc := encode(t, tt.opts, lines...)
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			if enc.Skipped.Load() != 1 {
				t.Errorf("NaN gauge: skipped %d, want 1", enc.Skipped.Load())
			}
		})
	}
}

func TestTransportAnswers(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		want   sinks.Outcome
	}{
		{"204 delivered", 204, "", sinks.Delivered},
		{"partial write: stored, not resent", 400, `{"error":"partial write: unable to parse 'x': invalid field format dropped=0"}`,
			sinks.PartlyStored},
		{"whole batch refused", 400, `{"error":"field type conflict"}`, sinks.Refused},
		{"missing database: configuration", 404, `{"error":"database not found: \"x\""}`, sinks.ConfigError},
		{"overloaded", 503, "", sinks.ServerError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var gotBody, gotQuery, gotAuth string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				zr, err := gzip.NewReader(r.Body)
				if err != nil {
					t.Errorf("body not gzip: %v", err)
					return
				}
				b, _ := io.ReadAll(zr)
				gotBody, gotQuery, gotAuth = string(b), r.URL.RawQuery, r.Header.Get("Authorization")
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.body)
			}))
			defer srv.Close()
			tr, err := NewTransport(TransportOptions{URL: srv.URL + "/write?db=statsd", Token: "tok", Gzip: true, Timeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			err = tr.Send(context.Background(), cork.Batch{Data: []byte("m value=1 1\n"), Ends: []int{12}})
			if got, _ := sinks.OutcomeOf(err); got != tt.want {
				t.Errorf("%v: outcome %v, want %v", err, got, tt.want)
			}
			if gotBody != "m value=1 1\n" || gotQuery != "db=statsd&precision=ms" || gotAuth != "Token tok" {
				t.Errorf("request body %q query %q auth %q", gotBody, gotQuery, gotAuth)
			}
		})
	}
}

func TestTimersCarryEtsysStatistics(t *testing.T) {
	got, _ := encode(t, Options{}, "api.time:100|ms", "api.time:300|ms|@0.5", "users:a|s")
	want := []string{
		"api_time_seconds count=3,count_ps=0.3,lower=100,upper=300,mean=200,median=200,std=100,sum=400,sum_squares=100000," +
			"count_90=2,mean_90=200,upper_90=300,sum_90=400,sum_squares_90=100000 1800000000000",
		"users value=1 1800000000000",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestCreateDatabase: a missing 1.x database is created, and the batch
// written, when create_database is set.
func TestCreateDatabase(t *testing.T) {
	created := false
	var queries []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/query":
			r.ParseForm()
			queries = append(queries, r.Form.Get("q"))
			created = true
			w.WriteHeader(200)
		case "/write":
			if !created {
				w.WriteHeader(404)
				io.WriteString(w, `{"error":"database not found: \"metrics\""}`)
				return
			}
			w.WriteHeader(204)
		}
	}))
	defer srv.Close()
	batch := cork.Batch{Data: []byte("m value=1 1\n"), Ends: []int{12}}
	without, _ := NewTransport(TransportOptions{URL: srv.URL + "/write?db=metrics", Timeout: time.Second})
	if err := without.Send(context.Background(), batch); err == nil || created {
		t.Fatalf("without create_database: %v, created %v", err, created)
	}
	with, _ := NewTransport(TransportOptions{URL: srv.URL + "/write?db=metrics", Timeout: time.Second, CreateDatabase: true})
	if err := with.Send(context.Background(), batch); err != nil {
		t.Fatalf("with create_database: %v", err)
	}
	if len(queries) != 1 || queries[0] != `CREATE DATABASE "metrics"` {
		t.Errorf("queries %q", queries)
	}
}
