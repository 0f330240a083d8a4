package influx

import (
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
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
		{"delta counters at the interval start (ms); a tag sent empty is no tag", Options{Shape: ShapeEtsy}, []string{
			"empty value=1 1800000000000", "hits,app=x,zone=b value=3 1800000000000", "temp value=21.5 1800000000000"}},
		{"cumulative at the flush time, external labels sorted in", Options{Shape: ShapeEtsy, Cumulative: true,
			ExternalLabels: model.Labels{{Name: "host", Value: "relay1"}}}, []string{
			"empty,host=relay1 value=1 1800000010000",
			"hits,app=x,host=relay1,zone=b value=3 1800000010000", "temp,host=relay1 value=21.5 1800000010000"}},
		{"a series' own label wins; where a tag was sent empty, the external label applies", Options{Shape: ShapeEtsy,
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

// TestTimersCarryEtsysStatistics: in milliseconds, so never under a
// measurement named _seconds.
func TestTimersCarryEtsysStatistics(t *testing.T) {
	got, _ := encode(t, Options{Shape: ShapeEtsy, Percentiles: []float64{90}}, "api.time:100|ms", "api.time:300|ms|@0.5", "users:a|s")
	want := []string{
		"api_time count=3,count_ps=0.3,lower=100,upper=300,mean=200,median=200,std=100,sum=400,sum_squares=100000," +
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

// TestV2WriteFollowsTheAPIContract holds a 2.x URL to InfluxDB OSS 2's
// documented write contract: POST /api/v2/write with org (or orgID) and
// bucket in the query, precision stated, "Authorization: Token <token>",
// and line protocol as text/plain, gzip with Content-Encoding. A 2.x
// write is whole or nothing: its 400 is never a partial write, so the batch
// is split to find the refused lines, unlike 1.x's "partial write" (the
// good lines stored).
func TestV2WriteFollowsTheAPIContract(t *testing.T) {
	type request struct {
		method, path, auth, contentType, encoding, body string
		query                                           url.Values
	}
	answers := []struct {
		name   string
		url    string
		status int
		body   string
		want   sinks.Outcome
	}{
		{"204 written", "/api/v2/write?org=my-org&bucket=my-bucket", 204, "", sinks.Delivered},
		{"orgID instead of org", "/api/v2/write?orgID=033a3f2c5ccaa000&bucket=my-bucket", 204, "", sinks.Delivered},
		{"2.x 400 is the whole batch refused", "/api/v2/write?org=my-org&bucket=my-bucket", 400,
			`{"code":"invalid","message":"partial write: field type conflict: input field \"value\" on measurement \"m\" is type float, already exists as type integer dropped=1"}`,
			sinks.Refused},
		{"1.x 400 partial write is partly stored", "/write?db=statsd", 400,
			`{"error":"partial write: field type conflict: input field \"value\" on measurement \"m\" is type float, already exists as type integer dropped=1"}`,
			sinks.PartlyStored},
		{"422 outside retention is refused", "/api/v2/write?org=my-org&bucket=my-bucket", 422,
			`{"code":"unprocessable entity","message":"failure writing points to database: partial write: points beyond retention policy dropped=1"}`,
			sinks.Refused},
		{"401 bad token: configuration", "/api/v2/write?org=my-org&bucket=my-bucket", 401,
			`{"code":"unauthorized","message":"unauthorized access"}`, sinks.ConfigError},
		{"404 no such bucket: configuration", "/api/v2/write?org=my-org&bucket=nope", 404,
			`{"code":"not found","message":"bucket \"nope\" not found"}`, sinks.ConfigError},
		{"429 throttled", "/api/v2/write?org=my-org&bucket=my-bucket", 429, "", sinks.Throttled},
		{"503 unavailable", "/api/v2/write?org=my-org&bucket=my-bucket", 503, "", sinks.ServerError},
	}
	for _, tt := range answers {
		t.Run(tt.name, func(t *testing.T) {
			var got request
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				got = request{method: r.Method, path: r.URL.Path, auth: r.Header.Get("Authorization"),
					contentType: r.Header.Get("Content-Type"), encoding: r.Header.Get("Content-Encoding"), query: r.URL.Query()}
				if zr, err := gzip.NewReader(r.Body); err == nil {
					b, _ := io.ReadAll(zr)
					got.body = string(b)
				}
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.body)
			}))
			defer srv.Close()
			tr, err := NewTransport(TransportOptions{URL: srv.URL + tt.url, Token: "my-token", Gzip: true, Timeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			err = tr.Send(context.Background(), cork.Batch{Data: []byte("m value=1i 1\n"), Ends: []int{14}})
			if outcome, _ := sinks.OutcomeOf(err); outcome != tt.want {
				t.Errorf("%v: outcome %v, want %v", err, outcome, tt.want)
			}
			wantPath, wantQuery, _ := strings.Cut(tt.url, "?")
			want, _ := url.ParseQuery(wantQuery)
			want.Set("precision", "ms")
			if got.method != http.MethodPost || got.path != wantPath || got.query.Encode() != want.Encode() ||
				got.auth != "Token my-token" || got.contentType != "text/plain; charset=utf-8" || got.encoding != "gzip" ||
				got.body != "m value=1i 1\n" {
				t.Errorf("request %+v, want POST %s?%s with Token my-token, text/plain, gzip", got, wantPath, want.Encode())
			}
		})
	}
}
