package cork_test

import (
	"strings"
	"testing"
	"time"

	"github.com/statsbridge/statsbridge/cork"
	"github.com/statsbridge/statsbridge/model/modeltest"
	"github.com/statsbridge/statsbridge/sinks/graphite"
)

// TestUpdatesCoalesceIntoOnePointPerInterval: the model is corked between
// flushes, so 10,000 updates to one gauge within an interval reach a sink as
// one point, and so does a counter's.
func TestUpdatesCoalesceIntoOnePointPerInterval(t *testing.T) {
	lines := make([]string, 0, 20000)
	for i := 1; i <= 10000; i++ {
		lines = append(lines, "busy.gauge:"+strings.Repeat("1", 1+i%3)+"|g", "busy.counter:1|c")
	}
	m := modeltest.Model(t, lines...)
	f := modeltest.Flush(m, cork.Interval{Start: time.Unix(1_800_000_000, 0), End: time.Unix(1_800_000_010, 0), Length: 10 * time.Second})
	var batches []cork.Batch
	buf := cork.NewBuffer(cork.Limits{Records: 1000, Bytes: 1 << 20}, func(b cork.Batch) { batches = append(batches, b) })
	buf.Cork()
	graphite.NewEncoder(graphite.Options{Layout: graphite.Paths}).Encode(f, buf)
	buf.Uncork()
	if len(batches) != 1 {
		t.Fatalf("%d batches", len(batches))
	}
	got := string(batches[0].Data)
	if want := "busy.counter 10000 1800000000\nbusy.gauge 11 1800000000\n"; got != want {
		t.Errorf("sent %q, want one point each: %q", got, want)
	}
}
