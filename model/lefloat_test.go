package model

import (
	"math"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
)

// TestFloatLabelIsPrometheus3sSpelling holds FloatLabel to the function
// Prometheus 3's scrape parsers rewrite le and quantile with.
func TestFloatLabelIsPrometheus3sSpelling(t *testing.T) {
	for _, v := range []float64{0, 1, -1, 0.001, 0.5, 0.99, 2, 10, 1024, 4096, 65536, 4194304, 16777216, 268435456,
		86400, 1e-05, 1.0 / 1024, 1.0 / 3, 123456.789, 1e21, 1e100, -0.25, math.Inf(1), math.Inf(-1), math.NaN()} {
		want := labels.FormatOpenMetricsFloat(v)
		if got := FloatLabel(v); got != want {
			t.Errorf("%v: %q, Prometheus %q", v, got, want)
		}
		b := NewBucket(v, "as sent")
		if got := LEFloat.LE(b); got != want {
			t.Errorf("%v: bucket %q, Prometheus %q", v, got, want)
		}
		if got := LEAsSent.LE(b); got != "as sent" {
			t.Errorf("%v: as sent %q", v, got)
		}
		if got := LEFloat.LE(Bucket{Bound: v}); got != want {
			t.Errorf("%v: a bucket made without NewBucket %q, Prometheus %q", v, got, want)
		}
	}
	if LEAsSent.Quantile(0.5) != "0.5" || LEFloat.Quantile(1) != "1.0" {
		t.Errorf("quantiles %q %q", LEAsSent.Quantile(0.5), LEFloat.Quantile(1))
	}
}
