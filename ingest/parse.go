package ingest

import (
	"bytes"
	"math"
	"strconv"
	"unicode/utf8"
)

// Reason says why a line was rejected. Reasons are few and fixed, so they
// can label a counter.
type Reason uint8

// The reasons a line is rejected.
const (
	ReasonNone         Reason = iota
	ReasonMissingType         // no '|'
	ReasonBadType             // not c, g, ms, h, d or s
	ReasonMissingValue        // no ':' before the '|'
	ReasonBadValue            // not a number (or an empty set member), or not finite once scaled by the rate
	ReasonEmptyName           // nothing before the value
	ReasonBadRate             // '@' without a number in [MinSampleRate, 1]
	ReasonBadTags             // a tag without a key, or a name tag without '='
	ReasonMixedTags           // more than one tag style on a line
	ReasonBadTimestamp        // 'T' without a unix time
	ReasonBadSection          // an empty, repeated or unknown '|' section
	ReasonBadBytes            // control characters or invalid UTF-8
	ReasonTooLong             // longer than max_line
	numReasons
)

var reasonNames = [numReasons]string{
	"", "missing_type", "bad_type", "missing_value", "bad_value", "empty_name",
	"bad_rate", "bad_tags", "mixed_tag_styles", "bad_timestamp", "bad_section",
	"bad_bytes", "too_long",
}

func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// Reasons lists every rejection reason, for exporting counters by reason.
func Reasons() []Reason {
	rs := make([]Reason, 0, numReasons-1)
	for r := ReasonNone + 1; r < numReasons; r++ {
		rs = append(rs, r)
	}
	return rs
}

// MinSampleRate is the smallest sample rate taken. A counter adds value/rate
// and an observation weighs 1/rate: a rate of 1e-320 would make them +Inf,
// and no client samples one event in more than a million.
const MinSampleRate = 1e-6

// Dialect is what differs between the StatsD flavours a listener accepts.
type Dialect struct {
	// RelativeGauges makes a gauge written with a sign ("+3", "-3") an
	// adjustment of the current value, as Etsy statsd does.
	RelativeGauges bool
	// LiteralPrefix marks names that are taken exactly as written: no tags
	// are looked for in the name (';', ',' and '=' are part of it) and gauges
	// are absolute even when negative. Prosody's names start with its
	// prefix and a dot, and its label values may hold any of those bytes.
	LiteralPrefix []byte
}

// Parser parses StatsD lines. It keeps no state between lines; it is a type
// so that the dialect is fixed once per listener.
type Parser struct {
	Dialect Dialect
}

// Parse parses one line (without its line terminator) into s, reusing s's
// slices. It returns ReasonNone, or why the line is rejected, in which case s
// holds nothing useful. It rewrites tabs and the other whitespace controls
// in line to spaces (see cleanBytes).
//
// Grammar: <name>:<value>[:<value>...]|<type>[|@<rate>][|#<tags>][|T<unix>][|c:<container>]
//
// Etsy's multi-value form, <name>:<value>|<type>[|@<rate>]:<value>|<type>[|@<rate>]...,
// holds a sample per field, each with its own type and rate, and the
// sections after the last field apply to all of them. Parse fills s with
// the first field; while s.More(), Next parses the next one. A bad field is
// rejected alone (Parse or Next returns its reason, and More still tells
// whether others follow), as Etsy statsd counts it alone; what is wrong with
// the line itself (its name, its tags, its sections) rejects every field.
func (p *Parser) Parse(line []byte, s *Sample) Reason {
	if !cleanBytes(line) {
		return ReasonBadBytes
	}
	pipe := bytes.IndexByte(line, '|')
	if pipe < 0 {
		return ReasonMissingType
	}
	head := line[:pipe]
	typ, rate, rest, after := cutTail(line[pipe+1:])
	*s = Sample{Values: s.Values[:0], Tags: s.Tags[:0], Rate: 1, Type: parseType(typ)}
	var more, sections []byte
	switch after {
	case ':':
		more = line[len(line)-len(rest)-1:] // from the ':'
		more, sections = splitFields(more)
	case '|':
		sections = rest
	}
	multi := len(more) > 0
	reason := s.parseRate(rate)
	if s.Type == 0 {
		reason = ReasonBadType
	}
	if reason != ReasonNone && !multi {
		return reason
	}
	if sections != nil {
		if r := p.parseSections(sections, rate != nil || multi, s); r != ReasonNone {
			return r
		}
	}
	colon := bytes.LastIndexByte(head, ':')
	if colon < 0 {
		return ReasonMissingValue
	}
	s.Name = head[:colon]
	s.literal = len(p.Dialect.LiteralPrefix) > 0 && bytes.HasPrefix(head, p.Dialect.LiteralPrefix)
	if reason == ReasonNone {
		reason = p.parseHead(head[colon+1:], s)
		if reason != ReasonNone && !multi {
			return reason
		}
	}
	if !s.literal {
		if r := parseNameTags(s); r != ReasonNone {
			return r
		}
	}
	if len(s.Name) == 0 {
		return ReasonEmptyName
	}
	s.lineTags = len(s.Tags)
	s.more = more
	return reason
}

// More reports whether the line that filled s has another field (Etsy's
// multi-value form), for Next.
func (s *Sample) More() bool { return len(s.more) > 0 }

// Next parses the next field of the multi-value line that filled prev into
// s, which may be prev itself: the name, the line's tags, its timestamp and
// container are prev's. It returns ReasonNone, or why the field is
// rejected; s.More() tells whether another field follows either way.
func (p *Parser) Next(prev, s *Sample) Reason {
	name, tags, ts, container, literal := prev.Name, prev.Tags[:prev.lineTags], prev.Timestamp, prev.Container, prev.literal
	field := prev.more[1:] // after the ':'
	*s = Sample{Name: name, Values: s.Values[:0], Tags: append(s.Tags[:0], tags...), Rate: 1,
		Timestamp: ts, Container: container, lineTags: len(tags), literal: literal}
	end := indexFieldEnd(field)
	if end < 0 || field[end] == ':' {
		if end >= 0 {
			s.more = field[end:]
		}
		return ReasonMissingType
	}
	value := field[:end]
	typ, rate, rest, after := cutTail(field[end+1:])
	if after == ':' {
		s.more = field[len(field)-len(rest)-1:]
	}
	if s.Type = parseType(typ); s.Type == 0 {
		return ReasonBadType
	}
	if r := s.parseRate(rate); r != ReasonNone {
		return r
	}
	return p.parseValue(value, s)
}

// cutTail cuts "<type>[|@<rate>]" off the start of b (rate with its '@',
// nil without one). after is what ended it: ':' when another field of
// Etsy's multi-value form follows in rest, '|' when the line's sections do,
// 0 at the end of the line.
func cutTail(b []byte) (typ, rate, rest []byte, after byte) {
	end := indexFieldEnd(b)
	if end < 0 {
		return b, nil, nil, 0
	}
	typ, rest, after = b[:end], b[end+1:], b[end]
	if after != '|' || len(rest) == 0 || rest[0] != '@' {
		return typ, nil, rest, after
	}
	end = indexFieldEnd(rest)
	if end < 0 {
		return typ, rest, nil, 0
	}
	return typ, rest[:end], rest[end+1:], rest[end]
}

// splitFields splits what follows a multi-value line's first field (from
// the ':' on) into its further fields and the line's sections (nil when it
// has none). A field is "<value>|<type>[|@<rate>]": within one, ':' can
// only start the next field, and '|' after the type or the rate starts the
// sections.
func splitFields(b []byte) (fields, sections []byte) {
	rest := b
	for len(rest) > 0 && rest[0] == ':' {
		field := rest[1:]
		end := indexFieldEnd(field)
		switch {
		case end < 0:
			return b, nil
		case field[end] == ':': // a field without a type
			rest = field[end:]
			continue
		}
		_, _, tail, after := cutTail(field[end+1:])
		switch after {
		case ':':
			rest = field[len(field)-len(tail)-1:]
		case '|':
			return b[:len(b)-len(tail)-1], tail
		default:
			return b, nil
		}
	}
	return b, nil
}

// indexFieldEnd finds the '|' or ':' that ends a part of a field.
func indexFieldEnd(b []byte) int {
	for i, c := range b {
		if c == '|' || c == ':' {
			return i
		}
	}
	return -1
}

// parseRate reads a field's "@<rate>" (nil: none, rate 1).
func (s *Sample) parseRate(sec []byte) Reason {
	if sec == nil {
		return ReasonNone
	}
	r, ok := parseNumber(sec[1:])
	if !ok || !(r >= MinSampleRate && r <= 1) { // NaN fails too
		return ReasonBadRate
	}
	s.Rate = r
	return ReasonNone
}

// cleanBytes rejects control characters and invalid UTF-8: they cannot be
// written to carbon, line protocol or OpenMetrics without mangling. The
// whitespace controls (tab, vertical tab, form feed, and a carriage return
// inside a line) are whitespace to Etsy statsd, as to JavaScript's \s, so
// they are read as spaces: cleanBytes rewrites them in line, and every sink
// writes a space as it writes any other.
func cleanBytes(line []byte) bool {
	ascii := true
	for i := 0; i < len(line); i++ {
		c := line[i]
		if c >= 0x20 && c < 0x7f { // the common case, tested first
			continue
		}
		if c >= 0x80 {
			ascii = false
			continue
		}
		if c != '\t' && c != '\v' && c != '\f' && c != '\r' {
			return false
		}
		line[i] = ' '
	}
	return ascii || utf8.Valid(line)
}

func parseType(b []byte) Type {
	switch len(b) {
	case 1:
		switch b[0] {
		case 'c':
			return Counter
		case 'g':
			return Gauge
		case 'h':
			return Histogram
		case 'd':
			return Distribution
		case 's':
			return Set
		}
	case 2:
		if b[0] == 'm' && b[1] == 's' {
			return Timer
		}
	}
	return 0
}

// parseSections reads the optional sections after the type (and the rate,
// if it came first). seenRate forbids a rate among them: the line has one
// already, or is of the multi-value form, whose fields carry their own.
func (p *Parser) parseSections(b []byte, seenRate bool, s *Sample) Reason {
	var seenTags, seenTime, seenContainer bool
	for {
		end := bytes.IndexByte(b, '|')
		if end < 0 {
			end = len(b)
		}
		sec := b[:end]
		switch {
		case len(sec) == 0:
			return ReasonBadSection
		case sec[0] == '@':
			if seenRate {
				return ReasonBadSection
			}
			seenRate = true
			if r := s.parseRate(sec); r != ReasonNone {
				return r
			}
		case sec[0] == '#':
			if seenTags {
				return ReasonBadSection
			}
			seenTags = true
			if r := parseDogTags(sec[1:], s); r != ReasonNone {
				return r
			}
		case sec[0] == 'T':
			if seenTime {
				return ReasonBadSection
			}
			seenTime = true
			ts, ok := parseUnix(sec[1:])
			if !ok {
				return ReasonBadTimestamp
			}
			s.Timestamp = ts
		case len(sec) >= 2 && sec[0] == 'c' && sec[1] == ':':
			if seenContainer {
				return ReasonBadSection
			}
			seenContainer = true
			s.Container = sec[2:]
		case isExtension(sec):
			// A DogStatsD extension field ("e:...", "card:..."): newer
			// clients send them, and none of them changes the value.
		default:
			return ReasonBadSection
		}
		if end == len(b) {
			return ReasonNone
		}
		b = b[end+1:]
	}
}

// isExtension matches "<lowercase letters>:...".
func isExtension(sec []byte) bool {
	for i, c := range sec {
		if c == ':' {
			return i > 0
		}
		if c < 'a' || c > 'z' {
			return false
		}
	}
	return false
}

// parseHead reads the first field's value, which follows the last ':'
// before the first '|'; s.Name holds what precedes it. Prosody's names
// contain ':' (seen:
// "prosody.prosody_mod_s2s.closed.:unknown.incoming.not-well-formed:1|c"),
// hence the last. Types that take several values peel ':'-separated numbers
// from the right of the name while they parse; the rest is the name.
func (p *Parser) parseHead(value []byte, s *Sample) Reason {
	if r := p.parseValue(value, s); r != ReasonNone || !s.Type.observes() {
		return r
	}
	for {
		prev := bytes.LastIndexByte(s.Name, ':')
		if prev < 0 {
			break
		}
		v, ok := parseNumber(s.Name[prev+1:])
		if !ok || !finite(v) {
			break
		}
		if !finite(v/s.Rate) || (s.Type == Timer && v < 0) {
			return ReasonBadValue
		}
		s.Values = append(s.Values, v)
		s.Name = s.Name[:prev]
	}
	for i, j := 0, len(s.Values)-1; i < j; i, j = i+1, j-1 {
		s.Values[i], s.Values[j] = s.Values[j], s.Values[i]
	}
	return ReasonNone
}

// parseValue reads one field's value, once its type and rate are known. A
// negative timer value is bad, as Etsy statsd drops it: a duration cannot
// be negative.
func (p *Parser) parseValue(value []byte, s *Sample) Reason {
	if s.Type == Set {
		if len(value) == 0 {
			return ReasonBadValue
		}
		s.Member = value
		return ReasonNone
	}
	v, ok := parseNumber(value)
	switch {
	case !ok:
		return ReasonBadValue
	case s.Type == Gauge:
		s.Relative = p.Dialect.RelativeGauges && !s.literal && (value[0] == '+' || value[0] == '-')
	case !finite(v / s.Rate), s.Type == Timer && v < 0:
		return ReasonBadValue
	}
	s.Values = append(s.Values, v)
	return ReasonNone
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// parseNumber reads Go's float syntax plus the spellings Lua prints for
// special values ("inf", "-inf", "nan", "-nan"). Plain decimals of up to 15
// significant digits take a fast path that is exact: both the digits and the
// power of ten are exact in a float64, so one division rounds correctly.
func parseNumber(b []byte) (float64, bool) {
	if len(b) == 0 || len(b) > 64 {
		return 0, false
	}
	if f, ok := parseSimpleDecimal(b); ok {
		return f, true
	}
	switch string(b) {
	case "nan", "-nan", "+nan":
		return math.NaN(), true
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return 0, false
	}
	return f, true
}

var pow10 = [...]float64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15}

func parseSimpleDecimal(b []byte) (float64, bool) {
	i, neg := 0, false
	if b[0] == '-' || b[0] == '+' {
		neg = b[0] == '-'
		i++
	}
	var mant uint64
	digits, frac, dot := 0, 0, false
	for ; i < len(b); i++ {
		c := b[i]
		switch {
		case c >= '0' && c <= '9':
			mant = mant*10 + uint64(c-'0')
			digits++
			if dot {
				frac++
			}
		case c == '.' && !dot:
			dot = true
		default:
			return 0, false
		}
	}
	if digits == 0 || digits > 15 {
		return 0, false
	}
	f := float64(mant) / pow10[frac]
	if neg {
		f = -f
	}
	return f, true
}

func parseUnix(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}
