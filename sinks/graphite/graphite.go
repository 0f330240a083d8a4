// Package graphite renders flushes as carbon plaintext ("path value
// timestamp\n") and writes them to carbon over TCP.
package graphite

import (
	"bytes"
	"math"
	"strconv"
	"strings"
	"sync/atomic"
	"unicode/utf8"

	"github.com/statsbridge/statsbridge/cork"
	"github.com/statsbridge/statsbridge/model"
)

// Layout is how a series becomes a carbon path.
type Layout uint8

// The layouts.
const (
	// Etsy is what Etsy statsd's Graphite backend writes with its defaults:
	// counters as stats.<key> (per second) and stats_counts.<key>, gauges as
	// stats.gauges.<key>, sets as stats.sets.<key>.count, timers as
	// stats.timers.<key>.<statistic>.
	Etsy Layout = iota
	// Paths is the StatsD key as a dot-path, unchanged but for sanitising;
	// timers' statistics are <key>.<statistic>.
	Paths
	// Tags is Graphite 1.1 tagged series named after the OpenMetrics
	// family: family;label=value.
	Tags
)

// Options shape the paths.
type Options struct {
	Layout Layout
	// LegacyNamespace is Etsy's legacyNamespace (Etsy layout only): false
	// writes counters as stats.counters.<key>.rate and .count.
	LegacyNamespace bool
	Prefix          string
	// Cumulative sends counters' totals rather than their per-interval deltas.
	Cumulative bool
	// DeleteIdle leaves out series that received nothing in the interval.
	DeleteIdle     bool
	ExternalLabels model.Labels
}

// Encoder renders points as carbon plaintext lines. Keys are sanitised as
// Etsy statsd does, and tags (and external labels) are written as Graphite
// 1.1 tags.
type Encoder struct {
	opts Options
	tags model.Labels // a point's tags with the external labels
	// stamp is the flush's timestamp, written once for all its lines.
	stamp []byte
	// Skipped counts values carbon cannot store (NaN, ±Inf).
	Skipped atomic.Uint64
}

// NewEncoder returns an encoder.
func NewEncoder(opts Options) *Encoder { return &Encoder{opts: opts} }

// Encode implements sinks.Encoder. All the lines of one point are one
// record, so a batch never splits them.
func (e *Encoder) Encode(f *model.Flush, buf *cork.Buffer) {
	e.stamp = strconv.AppendInt(e.stamp[:0], f.Stamp(e.opts.Cumulative).Unix(), 10)
	seconds := f.Length.Seconds()
	for i := range f.Points {
		p := &f.Points[i]
		if e.opts.DeleteIdle && !p.Touched {
			continue
		}
		buf.Append(func(b []byte) []byte {
			w := lineWriter{enc: e, b: b, series: p.Series, seconds: seconds}
			if e.opts.Layout == Tags {
				w.tags = p.Series.Labels().AppendMerged(e.tags[:0], e.opts.ExternalLabels)
				w.tagged(p)
			} else {
				w.tags = p.Series.Tags().AppendMerged(e.tags[:0], e.opts.ExternalLabels)
				w.statsd(p)
			}
			e.tags = w.tags
			return w.b
		})
	}
}

// lineWriter appends the carbon lines of one point.
type lineWriter struct {
	enc     *Encoder
	b       []byte
	series  *model.Series
	tags    model.Labels // written on every line: merged and sorted once
	seconds float64      // the interval's length, for per-second rates
}

// statsd writes a point under its StatsD key, for the etsy and paths
// layouts: timers as Etsy's statistics, and Prosody's histograms and
// summaries under the names Prosody sent (key.bucket.<le>, key.count,
// key.sum).
func (w *lineWriter) statsd(p *model.Point) {
	key := w.series.Key()
	switch w.series.Kind() {
	case model.KindCounter:
		w.count(key, "", p.Delta, p.Value)
	case model.KindGauge:
		w.at("stats.gauges.", key, "", p.Value)
	case model.KindSet:
		w.at("stats.sets.", key, ".count", p.Value)
	case model.KindHistogram, model.KindSummary:
		w.timer(key, p.Stats)
	case model.KindPrebucketed:
		h := p.Histogram
		for i, bucket := range h.Layout {
			// As Prosody writes it: ".bucket.<le>" with the le's "." as "_".
			w.count(key+".bucket."+strings.ReplaceAll(bucket.LE, ".", "_"), "", h.DeltaBuckets[i], h.Buckets[i])
		}
		w.count(key, ".count", h.DeltaCount, h.Count)
		w.count(key, ".sum", h.DeltaSum, h.Sum)
	case model.KindPresummed:
		w.count(key, ".count", p.Summary.DeltaCount, p.Summary.Count)
		w.count(key, ".sum", p.Summary.DeltaSum, p.Summary.Sum)
	}
}

// count writes a counter: in the etsy layout as a per-second rate and a
// count, otherwise as the delta (or the total, cumulative).
func (w *lineWriter) count(key, tail string, delta, total float64) {
	v := delta
	if w.enc.opts.Cumulative {
		v = total
	}
	switch {
	case w.enc.opts.Layout != Etsy:
		w.line("", key, tail, v)
	case w.enc.opts.LegacyNamespace:
		w.line("stats.", key, tail, perSecond(delta, w.seconds))
		w.line("stats_counts.", key, tail, v)
	default:
		w.line("stats.counters.", key, tail+".rate", perSecond(delta, w.seconds))
		w.line("stats.counters.", key, tail+".count", v)
	}
}

// at writes a value under an Etsy namespace (stats.gauges., stats.sets.),
// or, in the paths layout, under the key alone.
func (w *lineWriter) at(etsyHead, key, etsyTail string, v float64) {
	if w.enc.opts.Layout == Etsy {
		w.line(etsyHead, key, etsyTail, v)
	} else {
		w.line("", key, "", v)
	}
}

// timer writes Etsy's timer statistics, in the unit the client sent. A
// timer that got nothing in the interval writes count and count_ps 0, as
// Etsy does.
func (w *lineWriter) timer(key string, st *model.TimerStats) {
	head := ""
	if w.enc.opts.Layout == Etsy {
		head = "stats.timers."
	}
	st.EachEtsy(w.seconds, func(name string, v float64) { w.line(head, key, "."+name, v) })
}

// tagged writes a point as Graphite 1.1 tagged series named after its
// OpenMetrics family: histograms as name_bucket;le=..., name_sum and
// name_count; summaries as name;quantile=..., name_sum and name_count.
func (w *lineWriter) tagged(p *model.Point) {
	f := w.series.Family()
	cumulative := w.enc.opts.Cumulative
	pick := func(delta, total float64) float64 {
		if cumulative {
			return total
		}
		return delta
	}
	switch {
	case p.Histogram != nil:
		h := p.Histogram
		for i, bucket := range h.Layout {
			w.taggedLine(f.Name+"_bucket", pick(h.DeltaBuckets[i], h.Buckets[i]), model.Label{Name: "le", Value: bucket.LE})
		}
		w.taggedLine(f.Name+"_sum", pick(h.DeltaSum, h.Sum))
		w.taggedLine(f.Name+"_count", pick(h.DeltaCount, h.Count))
	case p.Summary != nil:
		for i, q := range f.Summary.Quantiles {
			if i < len(p.Summary.Quantiles) {
				w.taggedLine(f.Name, p.Summary.Quantiles[i], model.Label{Name: "quantile", Value: model.FormatLE(q)})
			}
		}
		w.taggedLine(f.Name+"_sum", pick(p.Summary.DeltaSum, p.Summary.Sum))
		w.taggedLine(f.Name+"_count", pick(p.Summary.DeltaCount, p.Summary.Count))
	case f.Type == model.Counter:
		w.taggedLine(f.Name, pick(p.Delta, p.Value))
	default:
		w.taggedLine(f.Name, p.Value)
	}
}

func (w *lineWriter) taggedLine(name string, v float64, extra ...model.Label) {
	w.write("", name, "", v, extra)
}

func perSecond(v, seconds float64) float64 {
	if seconds <= 0 {
		return 0
	}
	return v / seconds
}

// line writes "<prefix><head><key><tail>[;tags] <v> <ts>\n"; head and
// tail are written as they are, key is sanitised.
func (w *lineWriter) line(head, key, tail string, v float64) {
	w.write(head, key, tail, v, nil)
}

// write writes a line with w.tags and extra (an le or quantile, at most
// one) among them.
func (w *lineWriter) write(head, key, tail string, v float64, extra []model.Label) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		w.enc.Skipped.Add(1)
		return
	}
	start := len(w.b)
	w.b = append(w.b, w.enc.opts.Prefix...)
	w.b = append(w.b, head...)
	mark := len(w.b)
	w.b = AppendSanitized(w.b, key)
	if len(w.b) == mark {
		w.b = w.b[:start] // nothing of the key survived sanitising
		return
	}
	w.b = append(w.b, tail...)
	w.b = appendTags(w.b, w.tags, extra)
	w.b = append(w.b, ' ')
	w.b = appendNumber(w.b, v)
	w.b = append(w.b, ' ')
	w.b = append(w.b, w.enc.stamp...)
	w.b = append(w.b, '\n')
}

// appendNumber writes v as Etsy statsd does, JavaScript's String(v): the
// shortest digits that read back as v, without an exponent from 1e-6 up to
// 1e21, and with one as short as it can be outside ("1.5e-7", "1e+21").
// Carbon reads either form; dashboards and tests comparing the text do not.
func appendNumber(b []byte, v float64) []byte {
	if v == 0 {
		return append(b, '0') // and not "-0"
	}
	a := math.Abs(v)
	if a < 1e15 && v == math.Trunc(v) {
		// Whole numbers (counts, most gauges) are their integer's digits,
		// which strconv writes several times faster than the float's.
		return strconv.AppendInt(b, int64(v), 10)
	}
	if a >= 1e-6 && a < 1e21 {
		return strconv.AppendFloat(b, v, 'f', -1, 64)
	}
	start := len(b)
	b = strconv.AppendFloat(b, v, 'e', -1, 64)
	// Go writes two exponent digits at least ("e-07").
	if e := start + bytes.LastIndexByte(b[start:], 'e'); b[e+2] == '0' {
		b = append(b[:e+2], b[e+3:]...)
	}
	return b
}

// appendTags writes ";name=value" for every tag, sorted by name as carbon
// normalises them: tags are sorted, extra (at most one) goes in its place.
func appendTags(b []byte, tags, extra model.Labels) []byte {
	for _, l := range tags {
		for len(extra) > 0 && extra[0].Name < l.Name {
			b = appendTag(b, extra[0])
			extra = extra[1:]
		}
		b = appendTag(b, l)
	}
	for _, l := range extra {
		b = appendTag(b, l)
	}
	return b
}

// appendTag writes ";name=value", or nothing when sanitising leaves the
// name or the value empty.
func appendTag(b []byte, l model.Label) []byte {
	mark := len(b)
	b = append(b, ';')
	nameStart := len(b)
	if b = appendTagPart(b, l.Name, true); len(b) == nameStart {
		return b[:mark]
	}
	b = append(b, '=')
	valueStart := len(b)
	if b = appendTagPart(b, l.Value, false); len(b) == valueStart {
		return b[:mark]
	}
	return b
}

// AppendSanitized appends key as Etsy statsd's sanitizeKeyName writes it:
// runs of whitespace become '_', '/' becomes '-', and every character
// outside [a-zA-Z0-9_.;=-] is removed. Whitespace is JavaScript's \s, which
// takes in Unicode's (a no-break space is one). Carbon splits lines on
// whitespace, so a raw space can never reach it.
func AppendSanitized(b []byte, key string) []byte {
	// Keys are nearly always clean: copy the clean head at once, and look
	// at characters one by one only from the first that is not.
	clean := 0
	for clean < len(key) && isKeyByte(key[clean]) {
		clean++
	}
	b = append(b, key[:clean]...)
	space := false
	for i := clean; i < len(key); {
		c, size := rune(key[i]), 1
		if c >= utf8.RuneSelf {
			c, size = utf8.DecodeRuneInString(key[i:])
		}
		i += size
		if isJSSpace(c) {
			if !space {
				b = append(b, '_')
			}
			space = true
			continue
		}
		space = false
		switch {
		case c == '/':
			b = append(b, '-')
		case c < utf8.RuneSelf && isKeyByte(byte(c)):
			b = append(b, byte(c))
		}
	}
	return b
}

// isJSSpace reports whether JavaScript's \s matches r: ASCII's whitespace
// and Unicode's space separators, the line and paragraph separators, and
// the byte order mark.
func isJSSpace(r rune) bool {
	switch r {
	case ' ', '\t', '\n', '\v', '\f', '\r', '\u00a0', '\u1680', '\u2028', '\u2029', '\u202f', '\u205f', '\u3000', '\ufeff':
		return true
	}
	return r >= '\u2000' && r <= '\u200a'
}

// appendTagPart writes a tag name or value as Graphite 1.1 allows it:
// whitespace, Unicode's too (carbon splits lines on it), becomes '_', ';'
// (the tag separator) is removed, and so are '=' in names and '!' '^'
// there, as are a value's leading '~'.
func appendTagPart(b []byte, s string, name bool) []byte {
	start := len(b)
	for i := 0; i < len(s); {
		c, size := rune(s[i]), 1
		if c >= utf8.RuneSelf {
			c, size = utf8.DecodeRuneInString(s[i:])
		}
		switch {
		case isJSSpace(c):
			b = append(b, '_')
		case c == ';', name && (c == '=' || c == '!' || c == '^'), !name && c == '~' && len(b) == start:
		default:
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return b
}

func isKeyByte(c byte) bool {
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		c == '_' || c == '.' || c == ';' || c == '=' || c == '-'
}
