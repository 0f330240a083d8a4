package graphite

import (
	"slices"
	"testing"

	"github.com/statsbridge/statsbridge/model/modeltest"
)

// TestNativeHistogramsChangeNothingHere: Graphite gets the same paths and
// values, in every layout, whether timers keep native histograms or not:
// each interval's statistics of the same observations.
func TestNativeHistogramsChangeNothingHere(t *testing.T) {
	flushWithout, flushWith := modeltest.NativeFlushes(t, start)
	for _, opts := range []Options{{Layout: Etsy, LegacyNamespace: true}, {Layout: Paths}, {Layout: Tags}} {
		without := modeltest.Lines(flushWithout, NewEncoder(opts).Encode)
		with := modeltest.Lines(flushWith, NewEncoder(opts).Encode)
		if len(without) < 10 || !slices.Equal(with, without) {
			t.Errorf("layout %v with native histograms:\n%v\nwithout:\n%v", opts.Layout, with, without)
		}
	}
}
