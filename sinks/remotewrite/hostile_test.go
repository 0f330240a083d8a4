package remotewrite

import (
	"strings"
	"testing"

	"github.com/prometheus/prometheus/prompb"

	"github.com/statsbridge/statsbridge/cork"
	"github.com/statsbridge/statsbridge/model"
	"github.com/statsbridge/statsbridge/model/modeltest"
)

// TestHostileTagsMakeAcceptableRequests: tags that collide with le,
// quantile, each other or reserved names, and external labels a series
// cannot carry, still give requests Prometheus accepts: no series with two
// labels of one name, le only on buckets, quantile only on quantiles.
func TestHostileTagsMakeAcceptableRequests(t *testing.T) {
	m := modeltest.HostileModel(t)
	var batches []cork.Batch
	buf := cork.NewBuffer(cork.Limits{Records: 1000, Bytes: 1 << 20}, func(b cork.Batch) { batches = append(batches, b) })
	buf.Cork()
	external := model.Labels{{Name: "instance", Value: "relay1"}, {Name: "le", Value: "x"}, {Name: "quantile", Value: "y"}}
	NewEncoder(Options{ExternalLabels: external, CreatedSeries: true}).Encode(modeltest.Flush(m, modeltest.Interval(start)), buf)
	buf.Uncork()
	types := map[string]prompb.MetricMetadata_MetricType{}
	var series []prompb.TimeSeries
	for _, b := range batches {
		var req prompb.WriteRequest
		if err := req.Unmarshal(b.Data); err != nil {
			t.Fatal(err)
		}
		for _, md := range req.Metadata {
			types[md.MetricFamilyName] = md.Type
		}
		series = append(series, req.Timeseries...)
	}
	if len(series) < 40 {
		t.Fatalf("only %d series", len(series))
	}
	for _, ts := range series {
		if problem := requestProblem(types, ts.Labels); problem != "" {
			t.Errorf("%v: %s", ts.Labels, problem)
		}
	}
}

// requestProblem says why Prometheus would refuse or misread a series, or "".
func requestProblem(types map[string]prompb.MetricMetadata_MetricType, ls []prompb.Label) string {
	seen := map[string]bool{}
	name := ""
	for _, l := range ls {
		switch {
		case seen[l.Name]:
			return "duplicate label " + l.Name
		case l.Name == "__name__":
			name = l.Value
		case strings.HasPrefix(l.Name, "__"):
			return "reserved label " + l.Name
		}
		seen[l.Name] = true
	}
	for family, typ := range types {
		switch {
		case typ == prompb.MetricMetadata_HISTOGRAM && strings.HasPrefix(name, family+"_") &&
			(name == family+"_bucket") != seen["le"]:
			return "le on a histogram's series other than its buckets, or a bucket without"
		case typ == prompb.MetricMetadata_SUMMARY && (name == family || strings.HasPrefix(name, family+"_")) &&
			(name == family) != seen["quantile"]:
			return "quantile on a summary's series other than its quantiles, or a quantile without"
		}
	}
	return ""
}
