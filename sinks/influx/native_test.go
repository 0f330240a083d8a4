package influx

import (
	"slices"
	"testing"

	"github.com/statsbridge/statsbridge/model"
	"github.com/statsbridge/statsbridge/model/modeltest"
)

// TestNativeHistogramsChangeNothingHere: InfluxDB gets the same points,
// in every shape, whether timers keep native histograms or not: each
// interval's statistics and the classic buckets, from the same
// observations.
func TestNativeHistogramsChangeNothingHere(t *testing.T) {
	lines := []string{"api.time:250|ms", "api.time:1500|ms|@0.25", "api.time:3|ms|@0.3", "size:-3|h", "size:0|d", "hits:1|c"}
	flush := func(native model.NativeOptions) *model.Flush {
		obs := model.DefaultObservers
		obs.Native = native
		m := model.New(model.Options{MaxSeries: 100, MaxSeriesPerFamily: 100, Percentiles: []float64{90}, Observers: obs})
		modeltest.Feed(t, m, lines...)
		return modeltest.Flush(m, modeltest.Interval(start))
	}
	for _, opts := range []Options{{Shape: ShapeTelegraf, Percentiles: []float64{90}}, {Shape: ShapeEtsy, Percentiles: []float64{90}},
		{Shape: ShapePrometheus, Cumulative: true}} {
		without := modeltest.Lines(flush(model.NativeOptions{}), NewEncoder(opts).Encode)
		with := modeltest.Lines(flush(model.NativeOptions{BucketFactor: 1.1, MaxBuckets: 2}), NewEncoder(opts).Encode)
		if len(without) < 3 || !slices.Equal(with, without) {
			t.Errorf("shape %v with native histograms:\n%v\nwithout:\n%v", opts.Shape, with, without)
		}
	}
}
