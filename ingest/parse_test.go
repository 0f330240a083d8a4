package ingest

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"math"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// parsed is a Sample with plain types, for comparing.
type parsed struct {
	Name      string
	Type      Type
	Values    []float64
	Member    string
	Relative  bool
	Rate      float64
	Tags      map[string]string
	Timestamp int64
	Container string
}

func flatten(s *Sample) parsed {
	p := parsed{Name: string(s.Name), Type: s.Type, Member: string(s.Member), Relative: s.Relative,
		Rate: s.Rate, Timestamp: s.Timestamp, Container: string(s.Container)}
	p.Values = append([]float64(nil), s.Values...)
	if len(s.Tags) > 0 {
		p.Tags = map[string]string{}
		for _, t := range s.Tags {
			p.Tags[string(t.Key)] = string(t.Value)
		}
	}
	return p
}

var etsy = Parser{Dialect: Dialect{RelativeGauges: true, LiteralPrefix: []byte("prosody.")}}

func TestParseGood(t *testing.T) {
	tests := []struct {
		line string
		want parsed
	}{
		{"hits:1|c", parsed{Name: "hits", Type: Counter, Values: []float64{1}, Rate: 1}},
		{"hits:2.5|c|@0.1", parsed{Name: "hits", Type: Counter, Values: []float64{2.5}, Rate: 0.1}},
		{"hits:-3|c", parsed{Name: "hits", Type: Counter, Values: []float64{-3}, Rate: 1}},
		{"temp:21.5|g", parsed{Name: "temp", Type: Gauge, Values: []float64{21.5}, Rate: 1}},
		{"temp:+4|g", parsed{Name: "temp", Type: Gauge, Values: []float64{4}, Relative: true, Rate: 1}},
		{"temp:-4|g", parsed{Name: "temp", Type: Gauge, Values: []float64{-4}, Relative: true, Rate: 1}},
		{"temp:4|g|@0.5", parsed{Name: "temp", Type: Gauge, Values: []float64{4}, Rate: 0.5}},
		{"t:320|ms", parsed{Name: "t", Type: Timer, Values: []float64{320}, Rate: 1}},
		{"t:1:2:3|ms|@0.25", parsed{Name: "t", Type: Timer, Values: []float64{1, 2, 3}, Rate: 0.25}},
		{"size:1e3|h", parsed{Name: "size", Type: Histogram, Values: []float64{1000}, Rate: 1}},
		{"t:-0|ms", parsed{Name: "t", Type: Timer, Values: []float64{0}, Rate: 1}},
		{"delta:-2.5|h", parsed{Name: "delta", Type: Histogram, Values: []float64{-2.5}, Rate: 1}},
		{"delta:-2.5:-1|d", parsed{Name: "delta", Type: Distribution, Values: []float64{-2.5, -1}, Rate: 1}},
		{"d:0.5:0.25|d", parsed{Name: "d", Type: Distribution, Values: []float64{0.5, 0.25}, Rate: 1}},
		{"users:alice|s", parsed{Name: "users", Type: Set, Member: "alice", Rate: 1}},
		{"users:a:b|s", parsed{Name: "users:a", Type: Set, Member: "b", Rate: 1}},
		{"g:inf|g", parsed{Name: "g", Type: Gauge, Values: []float64{math.Inf(1)}, Rate: 1}},
		{"g:0x1p-2|g", parsed{Name: "g", Type: Gauge, Values: []float64{0.25}, Rate: 1}},
		// Tabs and the other whitespace controls are read as spaces, as
		// Etsy statsd reads them (JavaScript's \s): the name keeps them.
		{"a\tb:1|c", parsed{Name: "a b", Type: Counter, Values: []float64{1}, Rate: 1}},
		{"a\vb\fc\rd:1|c|#k:x\ty", parsed{Name: "a b c d", Type: Counter, Values: []float64{1}, Rate: 1,
			Tags: map[string]string{"k": "x y"}}},
		// DogStatsD tags, bare tags, timestamps, containers, extensions.
		{"req:1|c|#env:prod,canary,url:http://x", parsed{Name: "req", Type: Counter, Values: []float64{1}, Rate: 1,
			Tags: map[string]string{"env": "prod", "canary": "true", "url": "http://x"}}},
		{"req:1|c|@0.5|#a:b|T1795353780|c:abc123", parsed{Name: "req", Type: Counter, Values: []float64{1}, Rate: 0.5,
			Tags: map[string]string{"a": "b"}, Timestamp: 1795353780, Container: "abc123"}},
		{"req:1|c|#a:b|e:ext|card:low", parsed{Name: "req", Type: Counter, Values: []float64{1}, Rate: 1,
			Tags: map[string]string{"a": "b"}}},
		{"req:1|c|#env:", parsed{Name: "req", Type: Counter, Values: []float64{1}, Rate: 1, Tags: map[string]string{"env": ""}}},
		// Influx- and Graphite-style tags.
		{"req,env=prod,dc=eu:1|c", parsed{Name: "req", Type: Counter, Values: []float64{1}, Rate: 1,
			Tags: map[string]string{"env": "prod", "dc": "eu"}}},
		{"req;env=prod;dc=eu:1|c", parsed{Name: "req", Type: Counter, Values: []float64{1}, Rate: 1,
			Tags: map[string]string{"env": "prod", "dc": "eu"}}},
		// Prosody: names with ':' and spaces, taken literally; gauges absolute.
		{"prosody.prosody_mod_s2s.closed.:unknown.incoming.not-well-formed:1|c",
			parsed{Name: "prosody.prosody_mod_s2s.closed.:unknown.incoming.not-well-formed", Type: Counter, Values: []float64{1}, Rate: 1}},
		{"prosody.prosody_mod_csi_simple.flushes.localhost.subscription request:1|c",
			parsed{Name: "prosody.prosody_mod_csi_simple.flushes.localhost.subscription request", Type: Counter, Values: []float64{1}, Rate: 1}},
		{"prosody.x.a,b=c:-5|g", parsed{Name: "prosody.x.a,b=c", Type: Gauge, Values: []float64{-5}, Rate: 1}},
		{"prosody.prosody_stats_processing_seconds.sum:5.4836273193359e-06|g",
			parsed{Name: "prosody.prosody_stats_processing_seconds.sum", Type: Gauge, Values: []float64{5.4836273193359e-06}, Rate: 1}},
		{"prosody.m.sum:-nan|g", parsed{Name: "prosody.m.sum", Type: Gauge, Values: []float64{math.NaN()}, Rate: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			var s Sample
			if r := etsy.Parse([]byte(tt.line), &s); r != ReasonNone {
				t.Fatalf("rejected: %v", r)
			}
			got := flatten(&s)
			if !equalParsed(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func equalParsed(a, b parsed) bool {
	if len(a.Values) != len(b.Values) {
		return false
	}
	for i := range a.Values {
		if a.Values[i] != b.Values[i] && !(math.IsNaN(a.Values[i]) && math.IsNaN(b.Values[i])) {
			return false
		}
	}
	a.Values, b.Values = nil, nil
	return reflect.DeepEqual(a, b)
}

func TestParseBad(t *testing.T) {
	tests := []struct {
		line string
		want Reason
	}{
		{"hits", ReasonMissingType},
		{"hits:1", ReasonMissingType},
		{"hits|c", ReasonMissingValue},
		{"hits:1|x", ReasonBadType},
		{"hits:1|", ReasonBadType},
		{"hits:1|msx", ReasonBadType},
		{":1|c", ReasonEmptyName},
		{"hits:|c", ReasonBadValue},
		{"hits:abc|c", ReasonBadValue},
		{"hits:inf|c", ReasonBadValue},
		{"t:nan|ms", ReasonBadValue},
		{"users:|s", ReasonBadValue},
		// A duration cannot be negative: Etsy statsd drops the line.
		{"t:-1|ms", ReasonBadValue},
		{"t:1:-2|ms", ReasonBadValue},
		{"t:-1:2|ms", ReasonBadValue},
		{"hits:1|c|", ReasonBadSection},
		{"hits:1|c||@0.5", ReasonBadSection},
		{"hits:1|c|@0.5|@0.5", ReasonBadSection},
		{"hits:1|c|#a|#b", ReasonBadSection},
		{"hits:1|c|what", ReasonBadSection},
		{"hits:1|c|@0", ReasonBadRate},
		{"hits:1|c|@", ReasonBadRate},
		{"hits:1|c|@1.5", ReasonBadRate},
		{"hits:1|c|@-0.5", ReasonBadRate},
		{"hits:1|c|@x", ReasonBadRate},
		{"hits:1|c|#:v", ReasonBadTags},
		{"hits,env:1|c", ReasonBadTags},
		{"hits;=v:1|c", ReasonBadTags},
		{"hits,a=b;c=d:1|c", ReasonMixedTags},
		{"hits,a=b:1|c|#c:d", ReasonMixedTags},
		{"hits:1|c|T17x", ReasonBadTimestamp},
		{"hits:1|c|T", ReasonBadTimestamp},
		{"hi\x00ts:1|c", ReasonBadBytes},
		{"hits:1|c\x01", ReasonBadBytes},
		{"h\xffits:1|c", ReasonBadBytes},
		{",a=b:1|c", ReasonEmptyName},
	}
	for _, tt := range tests {
		t.Run(strings.ToValidUTF8(tt.line, "?"), func(t *testing.T) {
			var s Sample
			if got := etsy.Parse([]byte(tt.line), &s); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// TestParseSampleRateBounds: a sample rate scales a counter by 1/r and an
// observation's weight to 1/r, so a tiny rate would make them +Inf. Rates
// below MinSampleRate, and counter values that 1/r would carry past the
// float range, are bad lines; everything accepted scales to finite numbers.
func TestParseSampleRateBounds(t *testing.T) {
	tests := []struct {
		line string
		want Reason
	}{
		{"x:1|c|@1", ReasonNone},
		{"x:1|c|@0.5", ReasonNone},
		{"x:1|c|@1e-6", ReasonNone},
		{"x:1|c|@0.000001", ReasonNone},
		{"t:5|ms|@1e-6", ReasonNone},
		{"g:5|g|@1e-6", ReasonNone},
		{"x:1|c|@1e-320", ReasonBadRate},
		{"x:1|c|@4.9e-324", ReasonBadRate},
		{"x:1|c|@0x1p-1074", ReasonBadRate},
		{"x:1|c|@1e-7", ReasonBadRate},
		{"x:1|c|@0.00000099", ReasonBadRate},
		{"t:5|ms|@1e-300", ReasonBadRate},
		{"h:5|h|@1e-300", ReasonBadRate},
		{"d:5|d|@1e-300", ReasonBadRate},
		{"g:5|g|@1e-320", ReasonBadRate},
		{"u:a|s|@1e-320", ReasonBadRate},
		{"x:1|c|@inf", ReasonBadRate},
		{"x:1|c|@+inf", ReasonBadRate},
		{"x:1|c|@-inf", ReasonBadRate},
		{"x:1|c|@nan", ReasonBadRate},
		{"x:1|c|@1.0000001", ReasonBadRate},
		{"x:1|c|@1e308", ReasonBadRate},
		{"x:1e303|c|@1e-6", ReasonBadValue}, // 1e309 is past the float range
		{"x:-1e303|c|@1e-6", ReasonBadValue},
		{"x:1e300|c|@1e-6", ReasonNone},
		{"t:1e303|ms|@1e-6", ReasonBadValue},
		{"t:1:1e303|ms|@1e-6", ReasonBadValue},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			var s Sample
			got := etsy.Parse([]byte(tt.line), &s)
			if got != tt.want {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			if got != ReasonNone {
				return
			}
			if w := s.Weight(); !finite(w) {
				t.Errorf("weight %v", w)
			}
			for _, v := range s.Values {
				if s.Type != Gauge && !finite(v/s.Rate) {
					t.Errorf("%v / rate %v is not finite", v, s.Rate)
				}
			}
		})
	}
}

func TestParseAbsoluteGauges(t *testing.T) {
	p := Parser{Dialect: Dialect{RelativeGauges: false}}
	var s Sample
	if r := p.Parse([]byte("temp:-4|g"), &s); r != ReasonNone || s.Relative || s.Values[0] != -4 {
		t.Errorf("gauges = absolute: got %+v (%v)", flatten(&s), r)
	}
}

// capturedDatagram is one line of the Prosody capture.
type capturedDatagram struct {
	Seq  int    `json:"seq"`
	B64  string `json:"b64"`
	Text string `json:"text"`
}

func readCapture(t testing.TB) []capturedDatagram {
	t.Helper()
	f, err := os.Open("../testdata/prosody/capture.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []capturedDatagram
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var d capturedDatagram
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			t.Fatal(err)
		}
		out = append(out, d)
	}
	return out
}

// TestProsodyCapture parses all 603 datagrams Prosody 0.12.3 sent. The
// expected name, value and type of each come from splitting the text by the
// rule Prosody's util/statsd.lua writes it with: name..":"..value.."|"..type.
func TestProsodyCapture(t *testing.T) {
	capture := readCapture(t)
	if len(capture) != 603 {
		t.Fatalf("capture has %d datagrams, want 603", len(capture))
	}
	var s Sample
	for _, d := range capture {
		payload, err := base64.StdEncoding.DecodeString(d.B64)
		if err != nil {
			t.Fatal(err)
		}
		bar := strings.LastIndexByte(d.Text, '|')
		colon := strings.LastIndexByte(d.Text[:bar], ':')
		wantName, wantValue, wantType := d.Text[:colon], d.Text[colon+1:bar], d.Text[bar+1:]

		if r := etsy.Parse(payload, &s); r != ReasonNone {
			t.Errorf("datagram %d %q rejected: %v", d.Seq, d.Text, r)
			continue
		}
		want, err := strconv.ParseFloat(wantValue, 64)
		if err != nil {
			t.Fatalf("datagram %d: %v", d.Seq, err)
		}
		if string(s.Name) != wantName || s.Type.String() != wantType || len(s.Values) != 1 ||
			s.Values[0] != want || len(s.Tags) != 0 || s.Relative {
			t.Errorf("datagram %d %q: got name %q type %v values %v tags %d relative %v",
				d.Seq, d.Text, s.Name, s.Type, s.Values, len(s.Tags), s.Relative)
		}
	}
}

// field is what one field of a line became: a sample, or why it was
// rejected.
type field struct {
	want   parsed
	reason Reason
}

// parseLine parses every field of a line as a Reader does: Parse for the
// first, Next for each further one of Etsy's multi-value form.
func parseLine(p *Parser, line string) []field {
	var s Sample
	var out []field
	r := p.Parse([]byte(line), &s)
	for {
		f := field{reason: r}
		if r == ReasonNone {
			f.want = flatten(&s)
		}
		out = append(out, f)
		if !s.More() {
			return out
		}
		r = p.Next(&s, &s)
	}
}

// TestParseMultiValue: Etsy statsd and Telegraf read "t:1|ms:2|ms" as one
// key with several "value|type[|@rate]" fields, each with its own type and
// rate; the tags and the other sections after the last field apply to all.
// A bad field is rejected alone, as Etsy counts it alone.
func TestParseMultiValue(t *testing.T) {
	ok := func(p parsed) field { return field{want: p} }
	bad := func(r Reason) field { return field{reason: r} }
	tests := []struct {
		line string
		want []field
	}{
		{"t:1|ms:2|ms", []field{
			ok(parsed{Name: "t", Type: Timer, Values: []float64{1}, Rate: 1}),
			ok(parsed{Name: "t", Type: Timer, Values: []float64{2}, Rate: 1})}},
		{"a:1|c:2|g:x|s:3|h:4|d", []field{
			ok(parsed{Name: "a", Type: Counter, Values: []float64{1}, Rate: 1}),
			ok(parsed{Name: "a", Type: Gauge, Values: []float64{2}, Rate: 1}),
			ok(parsed{Name: "a", Type: Set, Member: "x", Rate: 1}),
			ok(parsed{Name: "a", Type: Histogram, Values: []float64{3}, Rate: 1}),
			ok(parsed{Name: "a", Type: Distribution, Values: []float64{4}, Rate: 1})}},
		{"t:1|ms|@0.5:2|ms:3|c|@0.1", []field{
			ok(parsed{Name: "t", Type: Timer, Values: []float64{1}, Rate: 0.5}),
			ok(parsed{Name: "t", Type: Timer, Values: []float64{2}, Rate: 1}),
			ok(parsed{Name: "t", Type: Counter, Values: []float64{3}, Rate: 0.1})}},
		{"g:+1|g:-2|g:5|g", []field{
			ok(parsed{Name: "g", Type: Gauge, Values: []float64{1}, Relative: true, Rate: 1}),
			ok(parsed{Name: "g", Type: Gauge, Values: []float64{-2}, Relative: true, Rate: 1}),
			ok(parsed{Name: "g", Type: Gauge, Values: []float64{5}, Rate: 1})}},
		{"t:1:2|ms:3|ms", []field{
			ok(parsed{Name: "t", Type: Timer, Values: []float64{1, 2}, Rate: 1}),
			ok(parsed{Name: "t", Type: Timer, Values: []float64{3}, Rate: 1})}},
		{"t:1|ms:2|ms|#env:prod|T1795353780", []field{
			ok(parsed{Name: "t", Type: Timer, Values: []float64{1}, Rate: 1, Tags: map[string]string{"env": "prod"}, Timestamp: 1795353780}),
			ok(parsed{Name: "t", Type: Timer, Values: []float64{2}, Rate: 1, Tags: map[string]string{"env": "prod"}, Timestamp: 1795353780})}},
		{"t,env=dev:1|ms|@0.5:2|ms|c:abc", []field{
			ok(parsed{Name: "t", Type: Timer, Values: []float64{1}, Rate: 0.5, Tags: map[string]string{"env": "dev"}, Container: "abc"}),
			ok(parsed{Name: "t", Type: Timer, Values: []float64{2}, Rate: 1, Tags: map[string]string{"env": "dev"}, Container: "abc"})}},
		{"prosody.a b:1|c:2|c", []field{
			ok(parsed{Name: "prosody.a b", Type: Counter, Values: []float64{1}, Rate: 1}),
			ok(parsed{Name: "prosody.a b", Type: Counter, Values: []float64{2}, Rate: 1})}},
		// A bad field is rejected alone.
		{"t:1|ms:x|ms:3|ms", []field{
			ok(parsed{Name: "t", Type: Timer, Values: []float64{1}, Rate: 1}),
			bad(ReasonBadValue),
			ok(parsed{Name: "t", Type: Timer, Values: []float64{3}, Rate: 1})}},
		{"t:1|x:2|ms", []field{
			bad(ReasonBadType),
			ok(parsed{Name: "t", Type: Timer, Values: []float64{2}, Rate: 1})}},
		{"t:x|ms|@2:2|ms", []field{
			bad(ReasonBadRate),
			ok(parsed{Name: "t", Type: Timer, Values: []float64{2}, Rate: 1})}},
		{"t:x|ms:2|ms", []field{
			bad(ReasonBadValue),
			ok(parsed{Name: "t", Type: Timer, Values: []float64{2}, Rate: 1})}},
		{"t:1|ms:2:3|ms", []field{
			ok(parsed{Name: "t", Type: Timer, Values: []float64{1}, Rate: 1}),
			bad(ReasonMissingType),
			ok(parsed{Name: "t", Type: Timer, Values: []float64{3}, Rate: 1})}},
		{"t:1|ms:2|zz:|s:", []field{
			ok(parsed{Name: "t", Type: Timer, Values: []float64{1}, Rate: 1}),
			bad(ReasonBadType), bad(ReasonBadValue), bad(ReasonMissingType)}},
		{"t:1|ms:2|ms|@0", []field{
			ok(parsed{Name: "t", Type: Timer, Values: []float64{1}, Rate: 1}),
			bad(ReasonBadRate)}},
		{"t:-1|ms:2|ms:-3|ms", []field{
			bad(ReasonBadValue),
			ok(parsed{Name: "t", Type: Timer, Values: []float64{2}, Rate: 1}),
			bad(ReasonBadValue)}},
		// What is wrong with the line itself rejects it whole.
		{"t:1|ms:2|ms|#env:a|@0.5", []field{bad(ReasonBadSection)}},
		{"t:1|ms:2|ms|", []field{bad(ReasonBadSection)}},
		{"t,a=b:1|ms:2|ms|#c:d", []field{bad(ReasonMixedTags)}},
		{":1|ms:2|ms", []field{bad(ReasonEmptyName)}},
		{"t|ms:2|ms", []field{bad(ReasonMissingValue)}},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			got := parseLine(&etsy, tt.line)
			if len(got) != len(tt.want) {
				t.Fatalf("got %d fields %+v, want %d", len(got), got, len(tt.want))
			}
			for i := range got {
				if got[i].reason != tt.want[i].reason || !equalParsed(got[i].want, tt.want[i].want) {
					t.Errorf("field %d: got %v %+v\nwant %v %+v", i, got[i].reason, got[i].want, tt.want[i].reason, tt.want[i].want)
				}
			}
		})
	}
}
