// Package openmetrics serves the model for scraping: OpenMetrics 1.0 text,
// or the Prometheus text format 0.0.4 to clients that do not ask for
// OpenMetrics, with access limited to allowed addresses.
package openmetrics

import (
	"bufio"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/statsbridge/statsbridge/model"
)

// ContentType is the OpenMetrics 1.0 media type.
const ContentType = "application/openmetrics-text; version=1.0.0; charset=utf-8"

// Options shape the exposition.
type Options struct {
	// LEFormat spells le and quantile label values: as the client sent
	// them, for Prometheus 2.x scraping text; or as Prometheus 3 stores
	// them.
	LEFormat model.LEFormat
}

// Write writes every family of m as OpenMetrics text.
//
// It is written here rather than with expfmt because expfmt re-spells
// bucket bounds (le="1" becomes le="1.0"), and in Prometheus 2.x those are
// different series: a Prosody dashboard written against Prosody's own
// exposition must find the same ones here.
func Write(w io.Writer, m *model.Model, opts Options) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	var line []byte
	m.Gather(func(f *model.Family, points []model.Point) {
		line = appendMetadata(line[:0], f)
		for i := range points {
			line = appendPoint(line, f, &points[i], opts.LEFormat)
			if len(line) > 32<<10 {
				bw.Write(line)
				line = line[:0]
			}
		}
		bw.Write(line)
	})
	bw.WriteString("# EOF\n")
	return bw.Flush()
}

func appendMetadata(b []byte, f *model.Family) []byte {
	b = append(b, "# TYPE "...)
	b = append(b, f.Name...)
	b = append(b, ' ')
	b = append(b, f.Type.String()...)
	b = append(b, '\n')
	if f.Unit != "" {
		b = append(b, "# UNIT "...)
		b = append(b, f.Name...)
		b = append(b, ' ')
		b = append(b, f.Unit...)
		b = append(b, '\n')
	}
	if f.Help != "" {
		b = append(b, "# HELP "...)
		b = append(b, f.Name...)
		b = append(b, ' ')
		b = appendEscaped(b, f.Help)
		b = append(b, '\n')
	}
	return b
}

func appendPoint(b []byte, f *model.Family, p *model.Point, le model.LEFormat) []byte {
	labels := p.Series.Labels()
	switch {
	case p.Histogram != nil:
		h := p.Histogram
		for i, bucket := range h.Layout {
			b = appendSeries(b, f.Name, "_bucket", labels, model.Label{Name: "le", Value: le.LE(bucket)})
			b = appendValue(b, h.Buckets[i])
		}
		b = appendSample(b, f.Name, "_sum", labels, h.Sum)
		b = appendSample(b, f.Name, "_count", labels, h.Count)
		b = appendCreated(b, f.Name, labels, p.Series.Created())
	case p.Summary != nil:
		sm := p.Summary
		for i, q := range f.Summary.Quantiles {
			if i < len(sm.Quantiles) {
				b = appendSeries(b, f.Name, "", labels, model.Label{Name: "quantile", Value: le.Quantile(q)})
				b = appendValue(b, sm.Quantiles[i])
			}
		}
		b = appendSample(b, f.Name, "_sum", labels, sm.Sum)
		b = appendSample(b, f.Name, "_count", labels, sm.Count)
		b = appendCreated(b, f.Name, labels, p.Series.Created())
	case f.Type == model.Counter:
		b = appendSample(b, f.Name, "_total", labels, p.Value)
		b = appendCreated(b, f.Name, labels, p.Series.Created())
	default:
		b = appendSample(b, f.Name, "", labels, p.Value)
	}
	return b
}

func appendSample(b []byte, name, suffix string, labels model.Labels, v float64) []byte {
	return appendValue(appendSeries(b, name, suffix, labels), v)
}

func appendValue(b []byte, v float64) []byte {
	b = AppendFloat(b, v)
	return append(b, '\n')
}

// appendCreated writes a _created sample as seconds with a fraction, as
// Prosody does, rather than in exponent form.
func appendCreated(b []byte, name string, labels model.Labels, t time.Time) []byte {
	b = appendSeries(b, name, "_created", labels)
	b = strconv.AppendFloat(b, float64(t.UnixNano())/1e9, 'f', -1, 64)
	return append(b, '\n')
}

// appendSeries writes "name{labels} ", with extra labels (le, quantile)
// after the series' own.
func appendSeries(b []byte, name, suffix string, labels model.Labels, extra ...model.Label) []byte {
	b = append(b, name...)
	b = append(b, suffix...)
	if len(labels)+len(extra) > 0 {
		b = append(b, '{')
		for i, l := range labels {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendLabel(b, l)
		}
		for i, l := range extra {
			if i > 0 || len(labels) > 0 {
				b = append(b, ',')
			}
			b = appendLabel(b, l)
		}
		b = append(b, '}')
	}
	return append(b, ' ')
}

func appendLabel(b []byte, l model.Label) []byte {
	b = append(b, l.Name...)
	b = append(b, '=', '"')
	b = appendEscaped(b, l.Value)
	return append(b, '"')
}

// AppendFloat writes a sample value as OpenMetrics spells special values.
func AppendFloat(b []byte, v float64) []byte {
	switch {
	case math.IsNaN(v):
		return append(b, "NaN"...)
	case math.IsInf(v, 1):
		return append(b, "+Inf"...)
	case math.IsInf(v, -1):
		return append(b, "-Inf"...)
	}
	return strconv.AppendFloat(b, v, 'g', -1, 64)
}

var escaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)

// appendEscaped escapes a label value or help text.
func appendEscaped(b []byte, s string) []byte {
	if !strings.ContainsAny(s, "\\\n\"") {
		return append(b, s...)
	}
	return append(b, escaper.Replace(s)...)
}
