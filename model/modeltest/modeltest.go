// Package modeltest builds models and flushes from StatsD lines, for the
// tests of the packages that render them.
package modeltest

import (
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/statsbridge/statsbridge/cork"
	"github.com/statsbridge/statsbridge/ingest"
	"github.com/statsbridge/statsbridge/model"
	"github.com/statsbridge/statsbridge/model/prosody"
)

// Model returns a model holding the given StatsD lines (Etsy dialect,
// Prosody's prefix "prosody", the 90th percentile for timer statistics).
func Model(t testing.TB, lines ...string) *model.Model {
	t.Helper()
	m := model.New(model.Options{MaxSeries: 1 << 20, MaxSeriesPerFamily: 1 << 20, Percentiles: []float64{90}})
	Feed(t, m, lines...)
	return m
}

// ProsodyModel is Model with the Prosody dialect and its built-in catalog,
// the hosts localhost and conference.localhost.
func ProsodyModel(t testing.TB, lines ...string) *model.Model {
	t.Helper()
	mp := prosody.NewMapper("prosody", prosody.Builtin(), []string{"localhost", "conference.localhost"}, prosody.NewState())
	m := model.New(model.Options{MaxSeries: 1 << 20, MaxSeriesPerFamily: 1 << 20, Percentiles: []float64{90},
		Mappers: []model.Mapper{mp}})
	Feed(t, m, lines...)
	return m
}

// Feed applies StatsD lines to m.
func Feed(t testing.TB, m *model.Model, lines ...string) {
	t.Helper()
	p := ingest.Parser{Dialect: ingest.Dialect{RelativeGauges: true, LiteralPrefix: []byte("prosody.")}}
	batch := make([]ingest.Sample, len(lines))
	for i, l := range lines {
		if r := p.Parse([]byte(l), &batch[i]); r != ingest.ReasonNone {
			t.Fatalf("modeltest: %q: %v", l, r)
		}
	}
	m.NewWriter().Handle(batch)
}

// Interval is a 10s interval starting at start.
func Interval(start time.Time) cork.Interval {
	return cork.Interval{Start: start, End: start.Add(10 * time.Second), Length: 10 * time.Second}
}

// Lines encodes f with encode, corked as a sink does, and returns the text
// lines of all the batches, sorted: for sinks whose records are text lines.
func Lines(f *model.Flush, encode func(*model.Flush, *cork.Buffer)) []string {
	var out []string
	buf := cork.NewBuffer(cork.Limits{Records: 1000, Bytes: 1 << 20}, func(b cork.Batch) {
		out = append(out, strings.Split(strings.TrimSuffix(string(b.Data), "\n"), "\n")...)
	})
	buf.Cork()
	encode(f, buf)
	buf.Uncork()
	sort.Strings(out)
	return out
}

// Flush collects m over iv.
func Flush(m *model.Model, iv cork.Interval) *model.Flush {
	f := &model.Flush{Interval: iv}
	m.Collect(f)
	return f
}

// NativeLines are timers, histograms and distributions, sampled at rates
// whose inverse is whole and is not, with negative and zero values.
var NativeLines = []string{"api.time:250|ms", "api.time:1500|ms|@0.25", "api.time:3|ms|@0.3", "size:-3|h", "size:0|d", "hits:1|c"}

// NativeFlushes collects NativeLines from two models over the interval from
// start: one that keeps no native histograms, and one that keeps them with
// a cap of two buckets (so that the schema is halved). What the push sinks
// render from the two must be the same.
func NativeFlushes(t testing.TB, start time.Time) (without, with *model.Flush) {
	t.Helper()
	flush := func(native model.NativeOptions) *model.Flush {
		obs := model.DefaultObservers
		obs.Native = native
		m := model.New(model.Options{MaxSeries: 100, MaxSeriesPerFamily: 100, Percentiles: []float64{90}, Observers: obs})
		Feed(t, m, NativeLines...)
		return Flush(m, Interval(start))
	}
	return flush(model.NativeOptions{}), flush(model.NativeOptions{BucketFactor: 1.1, MaxBuckets: 2})
}

// HostileLines are StatsD lines whose tags would make invalid series if
// taken as sent: le on histograms, quantile on summaries, names that are
// equal once sanitised, reserved names, tags that repeat a Prosody family's
// labels. HostileModel maps them.
var HostileLines = []string{
	"h:1|h|#le:5", "h:2|h|#le:5",
	"t:1|ms|#le:5,exported_le:6",
	"summary.x:1|ms|#quantile:0.5",
	"hist.7:1|h|#quantile:0.5",
	"c:1|c|#a.b:1,a_b:2",
	"i,a.b=1,a_b=2,le=3:1|h",
	"g:1|g|#__x:1,_x:2,__name__:evil",
	"prosody.prosody_stats_collection_seconds.bucket.0_001:1|c|#le:9",
	"prosody.prosody_stats_collection_seconds.count:1|c|#le:9",
	"prosody.prosody_mod_c2s.connections.localhost.c2s.ipv4:1|g|#host:evil,__host:x",
	"prosody.unknown_thing.x.bucket.1:1|c|#le:2",
}

// hostileMapping makes summary.* a summary with a label of a reserved name,
// hist.* a histogram with an le label, and other observers histograms.
const hostileMapping = `
defaults:
  observer_type: histogram
mappings:
- match: "summary.*"
  observer_type: summary
  name: "summary"
  labels:
    __origin: "$1"
- match: "hist.*"
  observer_type: histogram
  name: "hist"
  labels:
    le: "$1"
`

// HostileModel returns a model holding HostileLines, with the Prosody
// dialect and a mapping file that adds reserved labels of its own.
func HostileModel(t testing.TB) *model.Model {
	t.Helper()
	fm, err := model.ParseMapping(hostileMapping)
	if err != nil {
		t.Fatal(err)
	}
	mp := prosody.NewMapper("prosody", prosody.Builtin(), []string{"localhost"}, prosody.NewState())
	m := model.New(model.Options{MaxSeries: 1 << 20, MaxSeriesPerFamily: 1 << 20, Percentiles: []float64{90},
		Mappers: []model.Mapper{mp, fm}, Observers: fm.Observers()})
	Feed(t, m, HostileLines...)
	return m
}
