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
