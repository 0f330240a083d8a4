package influx

import (
	"strings"
	"testing"

	"github.com/statsbridge/statsbridge/model"
	"github.com/statsbridge/statsbridge/model/modeltest"
)

func TestTelegrafShape(t *testing.T) {
	telegraf := Options{Shape: ShapeTelegraf, Percentiles: []float64{90}}
	tests := []struct {
		name  string
		opts  Options
		lines []string
		want  []string
	}{
		{"counters are integers with a metric_type tag; DogStatsD tags are tags", telegraf,
			[]string{"hits:3|c|#zone:b,app:x", "sampled:1|c|@0.1"},
			[]string{"hits,app=x,metric_type=counter,zone=b value=3i 1800000000000",
				"sampled,metric_type=counter value=10i 1800000000000"}},
		{"a fractional interval total is rounded", telegraf,
			[]string{"frac:1.4|c", "frac:1.4|c"},
			[]string{"frac,metric_type=counter value=3i 1800000000000"}},
		{"gauges are floats, sets integers", telegraf,
			[]string{"temp:21.5|g", "users:a|s", "users:b|s", "users:a|s"},
			[]string{"temp,metric_type=gauge value=21.5 1800000000000",
				"users,metric_type=set value=2i 1800000000000"}},
		{"timers keep their name and milliseconds; a value at @0.5 counts twice", telegraf,
			[]string{"api.time:100|ms|@0.5", "api.time:300|ms|@0.5"},
			[]string{"api_time,metric_type=timing count=4i,lower=100,upper=300,mean=200,median=200,stddev=100,sum=800," +
				"90_percentile=300 1800000000000"}},
		{"histograms", telegraf,
			[]string{"size:3|h"},
			[]string{"size,metric_type=histogram count=1i,lower=3,upper=3,mean=3,median=3,stddev=0,sum=3,90_percentile=3 1800000000000"}},
		{"the name up to its first space, dots as _, other bytes as sent", telegraf,
			[]string{"my metric.x:1|g", "a-b/c.é:2|g"},
			[]string{"a-b/c_é,metric_type=gauge value=2 1800000000000",
				"my,metric_type=gauge value=1 1800000000000"}},
		{"a DogStatsD tag metric_type wins, as in Telegraf", telegraf,
			[]string{"typed:1|c|#metric_type:custom"},
			[]string{"typed,metric_type=custom value=1i 1800000000000"}},
		{"external labels are tags, sorted with metric_type", Options{Shape: ShapeTelegraf,
			ExternalLabels: model.Labels{{Name: "host", Value: "relay1"}, {Name: "zone", Value: "eu"}}},
			[]string{"hits:1|c"},
			[]string{"hits,host=relay1,metric_type=counter,zone=eu value=1i 1800000000000"}},
		{"the default shape is telegraf", Options{}, []string{"hits:1|c"},
			[]string{"hits,metric_type=counter value=1i 1800000000000"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _ := encode(t, tt.opts, tt.lines...)
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

// TestTelegrafShapeLeavesIdleSeriesOut: Telegraf's delete_* defaults write
// a series only in an interval that received it, whatever delete_idle says.
func TestTelegrafShapeLeavesIdleSeriesOut(t *testing.T) {
	m := modeltest.Model(t, "hits:1|c", "temp:1|g", "users:a|s", "t:1|ms")
	enc := NewEncoder(Options{Shape: ShapeTelegraf, DeleteIdle: false})
	if got := modeltest.Lines(modeltest.Flush(m, modeltest.Interval(start)), enc.Encode); len(got) != 4 {
		t.Fatalf("first interval: %q", got)
	}
	modeltest.Feed(t, m, "temp:2|g")
	got := modeltest.Lines(modeltest.Flush(m, modeltest.Interval(start.Add(10e9))), enc.Encode)
	if want := "temp,metric_type=gauge value=2 1800000010000"; strings.Join(got, "\n") != want {
		t.Errorf("second interval\n%s\nwant\n%s", strings.Join(got, "\n"), want)
	}
}

func TestTelegrafShapeSkipsWhatInfluxCannotStore(t *testing.T) {
	got, enc := encode(t, Options{Shape: ShapeTelegraf}, "bad:nan|g", "huge:1e300|c", "ok:1|g")
	if want := "ok,metric_type=gauge value=1 1800000000000"; strings.Join(got, "\n") != want {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), want)
	}
	if enc.Skipped.Load() != 2 {
		t.Errorf("skipped %d, want 2", enc.Skipped.Load())
	}
}

// TestTelegrafShapeKeepsProsodysFamilies: Prosody's families keep their
// family, labels and float fields (their deltas and sums can be
// fractional), and a histogram stays one line per series.
func TestTelegrafShapeKeepsProsodysFamilies(t *testing.T) {
	m := modeltest.ProsodyModel(t,
		"prosody.prosody_mod_c2s.connections.localhost.c2s.ipv4:2|g",
		"prosody.prosody_mod_smacks.tx_acked_stanzas.localhost.bucket.1:1|c",
		"prosody.prosody_mod_smacks.tx_acked_stanzas.localhost.count:1|c",
		"prosody.prosody_mod_smacks.tx_acked_stanzas.localhost.sum:1|g",
	)
	enc := NewEncoder(Options{Shape: ShapeTelegraf, ProsodyPrefix: "prosody"})
	got := modeltest.Lines(modeltest.Flush(m, modeltest.Interval(start)), enc.Encode)
	if len(got) != 2 {
		t.Fatalf("got %q", got)
	}
	if want := "prosody_mod_c2s__connections,host=localhost,ip_family=ipv4,metric_type=gauge,type=c2s value=2 1800000000000"; got[0] != want {
		t.Errorf("gauge\n%s\nwant\n%s", got[0], want)
	}
	if want := "prosody_mod_smacks__tx_acked_stanzas,host=localhost,metric_type=histogram count=1,sum=1,0=0,1=1,"; !strings.HasPrefix(got[1], want) ||
		strings.Contains(got[1], "i,") {
		t.Errorf("histogram\n%s\nwant float fields, starting\n%s", got[1], want)
	}
}

// TestPrometheusShape: what Telegraf's prometheus input (metric_version 1)
// reads from the same series' exposition.
func TestPrometheusShape(t *testing.T) {
	got, _ := encode(t, Options{Shape: ShapePrometheus},
		"hits:3|c|#zone:b", "temp:21.5|g", "users:a|s", "api.time:250|ms", "api.time:1500|ms|@0.5")
	want := []string{
		"api_time_seconds count=3,sum=3.25,0.005=0,0.01=0,0.025=0,0.05=0,0.1=0,0.25=1,0.5=1,1=1,2.5=3,5=3,10=3,+Inf=3 1800000010000",
		"hits_total,zone=b counter=3 1800000010000",
		"temp gauge=21.5 1800000010000",
		"users gauge=1 1800000010000",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestPrometheusShapeFollowsTheSendersLayout: a Prosody histogram whose
// layout the wire shows shorter than the catalog's (mod_http_file_share at
// a 3 MiB limit stops at 4194304) has a field per bound it has, never one
// it lacks.
func TestPrometheusShapeFollowsTheSendersLayout(t *testing.T) {
	m := modeltest.ProsodyModel(t,
		"prosody.prosody_mod_http_file_share.upload_bytes.localhost.bucket.4194304:1|c",
		"prosody.prosody_mod_http_file_share.upload_bytes.localhost.bucket.+Inf:1|c",
		"prosody.prosody_mod_http_file_share.upload_bytes.localhost.count:1|c",
		"prosody.prosody_mod_http_file_share.upload_bytes.localhost.sum:2000000|g",
	)
	enc := NewEncoder(Options{Shape: ShapePrometheus, Cumulative: true, ProsodyPrefix: "prosody"})
	got := modeltest.Lines(modeltest.Flush(m, modeltest.Interval(start)), enc.Encode)
	if len(got) != 1 {
		t.Fatalf("got %q", got)
	}
	if !strings.Contains(got[0], "4.194304e+06=1,+Inf=1") || strings.Contains(got[0], "1.6777216e+07") {
		t.Errorf("got %s: want the sender's buckets, up to 4194304 and +Inf", got[0])
	}
}

// TestTelegrafShapeWritesSelfMetricsAsFamilies: statsbridge's own series
// are not StatsD names: a measurement per family and its labels as tags,
// not the graphite key that keeps them apart in carbon.
func TestTelegrafShapeWritesSelfMetricsAsFamilies(t *testing.T) {
	m := modeltest.Model(t)
	m.Register(model.Family{Name: "statsbridge_ingest_bad_lines", Type: model.Counter, LabelNames: []string{"reason"}},
		"statsbridge.ingest_bad_lines.bad_type", model.Labels{{Name: "reason", Value: "bad_type"}}, func() float64 { return 2 })
	enc := NewEncoder(Options{Shape: ShapeTelegraf})
	got := modeltest.Lines(modeltest.Flush(m, modeltest.Interval(start)), enc.Encode)
	want := "statsbridge_ingest_bad_lines,metric_type=counter,reason=bad_type value=2 1800000000000"
	if len(got) != 1 || got[0] != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
