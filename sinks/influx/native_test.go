package influx

import (
	"slices"
	"testing"

	"github.com/statsbridge/statsbridge/model/modeltest"
)

// TestNativeHistogramsChangeNothingHere: InfluxDB gets the same points,
// in every shape, whether timers keep native histograms or not: each
// interval's statistics and the classic buckets, from the same
// observations.
func TestNativeHistogramsChangeNothingHere(t *testing.T) {
	flushWithout, flushWith := modeltest.NativeFlushes(t, start)
	for _, opts := range []Options{{Shape: ShapeTelegraf, Percentiles: []float64{90}}, {Shape: ShapeEtsy, Percentiles: []float64{90}},
		{Shape: ShapePrometheus, Cumulative: true}} {
		without := modeltest.Lines(flushWithout, NewEncoder(opts).Encode)
		with := modeltest.Lines(flushWith, NewEncoder(opts).Encode)
		if len(without) < 3 || !slices.Equal(with, without) {
			t.Errorf("shape %v with native histograms:\n%v\nwithout:\n%v", opts.Shape, with, without)
		}
	}
}
