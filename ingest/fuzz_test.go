package ingest

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"
)

// FuzzParse feeds the parser arbitrary lines: it must never panic, every
// field of a line must be reached in fewer steps than the line has bytes,
// and a field it accepts must make a sample that holds together.
func FuzzParse(f *testing.F) {
	for _, d := range readCapture(f) {
		payload, _ := base64.StdEncoding.DecodeString(d.B64)
		f.Add(payload)
	}
	for _, s := range []string{
		"a:1|c|@0.5|#k:v,bare|T1795353780|c:abc", "t:1:2:3|ms", "n,k=v:1|c", "n;k=v:1|c", "u:x|s", "g:-nan|g",
		// Hostile sample rates: each would scale a value past the float range.
		"x:1|c|@1e-320", "x:1|c|@4.9e-324", "t:1|ms|@1e-300", "x:1e303|c|@1e-6", "x:1|c|@nan", "x:1|c|@inf",
		// Etsy's multi-value form, good and bad fields.
		"a\tb:1|c|#k:x\vy", "a\r\f:1|c",
		"t:1|ms:2|ms", "a:1|c|@0.5:2|g:x|s|#k:v", "t:1|ms:x|ms::|c:2|zz|@2:", "t:1|ms:2|ms|#k:v|@0.5", "t:1|ms|@0.5:1e303|c|@1e-6",
	} {
		f.Add([]byte(s))
	}
	p := Parser{Dialect: Dialect{RelativeGauges: true, LiteralPrefix: []byte("prosody.")}}
	var s Sample
	f.Fuzz(func(t *testing.T, input []byte) {
		line := bytes.Clone(input) // Parse rewrites whitespace controls; the input is the fuzzer's
		r := p.Parse(line, &s)
		for fields := 1; ; fields++ {
			if r == ReasonNone {
				checkSample(t, line, &s)
			}
			if !s.More() {
				return
			}
			if fields > len(line) {
				t.Fatalf("%q: more fields than bytes", line)
			}
			r = p.Next(&s, &s)
		}
	})
}

func checkSample(t *testing.T, line []byte, s *Sample) {
	switch {
	case len(s.Name) == 0:
		t.Fatalf("%q: accepted with an empty name", line)
	case s.Type == Set && len(s.Member) == 0:
		t.Fatalf("%q: a set without a member", line)
	case s.Type != Set && len(s.Values) == 0:
		t.Fatalf("%q: no value", line)
	case !(s.Rate >= MinSampleRate && s.Rate <= 1):
		t.Fatalf("%q: rate %v", line, s.Rate)
	}
	if s.Type != Gauge {
		for _, v := range s.Values {
			if !finite(v / s.Rate) {
				t.Fatalf("%q: %v scaled by rate %v is not finite", line, v, s.Rate)
			}
		}
	}
	for _, tag := range s.Tags {
		if len(tag.Key) == 0 {
			t.Fatalf("%q: a tag without a key", line)
		}
		if hasControl(tag.Key) || hasControl(tag.Value) {
			t.Fatalf("%q: a control character in tag %q=%q", line, tag.Key, tag.Value)
		}
	}
	if hasControl(s.Name) || hasControl(s.Member) {
		t.Fatalf("%q: a control character in %q (member %q)", line, s.Name, s.Member)
	}
}

func hasControl(b []byte) bool {
	return bytes.ContainsFunc(b, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

// FuzzDogTags feeds the DogStatsD tag parser arbitrary sections: it must
// never panic, and every tag it makes must have a key.
func FuzzDogTags(f *testing.F) {
	for _, s := range []string{"env:prod,canary,url:http://x", "", ",,", "k:", ":v", "a:b:c,d"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, section []byte) {
		var s Sample
		if parseDogTags(section, &s) != ReasonNone {
			return
		}
		for _, tag := range s.Tags {
			if len(tag.Key) == 0 {
				t.Fatalf("%q: a tag without a key", section)
			}
		}
	})
}

// FuzzNameTags feeds the Influx- and Graphite-style tag parser arbitrary
// names, seeded with every name in the Prosody capture.
func FuzzNameTags(f *testing.F) {
	for _, d := range readCapture(f) {
		if i := strings.LastIndexByte(d.Text, ':'); i > 0 {
			f.Add([]byte(d.Text[:i]))
		}
	}
	for _, s := range []string{"req,env=prod,dc=eu", "req;env=prod;dc=eu", "a,b=c;d=e", "a,", "a;=", ",x=y"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, name []byte) {
		s := Sample{Name: name}
		if parseNameTags(&s) != ReasonNone {
			return
		}
		if bytes.ContainsAny(s.Name, ",;") {
			t.Fatalf("%q: tag separators left in the name %q", name, s.Name)
		}
		for _, tag := range s.Tags {
			if len(tag.Key) == 0 || bytes.IndexByte(tag.Key, '=') >= 0 {
				t.Fatalf("%q: bad tag key %q", name, tag.Key)
			}
		}
	})
}
