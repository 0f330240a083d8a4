package ingest

import (
	"reflect"
	"testing"
)

// reuseLines are lines of every shape, each leaving something in a Sample
// (values, tags, a member, a rate, a timestamp, a container, a relative
// sign) that the next line parsed into it must not inherit.
var reuseLines = []string{
	"a.b:1|c",
	"t:1:2:3|ms|@0.25",
	"req:1|c|@0.5|#a:b,c:d|T1795353780|c:abc123",
	"users:alice|s",
	"temp:+4|g",
	"req,env=prod,dc=eu:1|c",
	"req;env=prod:2|c",
	"prosody.prosody_mod_c2s.connections.localhost.c2s.ipv4:2|g",
	"d:0.5:0.25|d|#x",
}

// TestParseIntoAReusedSample: a Sample that held any other line parses a
// line exactly as a new one does: reuse leaks nothing from line to line.
func TestParseIntoAReusedSample(t *testing.T) {
	p := Parser{Dialect: Dialect{RelativeGauges: true, LiteralPrefix: []byte("prosody.")}}
	for _, first := range reuseLines {
		for _, second := range reuseLines {
			var fresh, reused Sample
			if p.Parse([]byte(second), &fresh) != ReasonNone {
				t.Fatalf("%q rejected", second)
			}
			p.Parse([]byte(first), &reused)
			p.Parse([]byte(second), &reused)
			if got, want := flatten(&reused), flatten(&fresh); !reflect.DeepEqual(got, want) {
				t.Errorf("%q after %q: %+v, want %+v", second, first, got, want)
			}
		}
	}
}
