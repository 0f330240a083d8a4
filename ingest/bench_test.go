package ingest

import (
	"net/netip"
	"testing"
)

// The line shapes whose parse must not allocate. BENCHMARKS.md has the
// figures: go test -run '^$' -bench . -benchmem ./ingest/
var benchLines = []struct {
	name string
	line string
}{
	{"counter", "api.requests.count:1|c"},
	{"gauge", "api.memory.used:123456789|g"},
	{"timer_with_rate", "api.request.time:320.5|ms|@0.1"},
	{"dogstatsd_tags", "api.requests:1|c|#env:prod,service:web,region:eu-west-1,canary"},
	{"influx_tags", "api.requests,env=prod,service=web:1|c"},
	{"prosody_bucket", "prosody.prosody_mod_csi_simple.buffer_hold_seconds.localhost.bucket.0_001:1|c"},
	{"prosody_gauge", "prosody.prosody_mod_c2s.connections.localhost.c2s.ipv4:2|g"},
	{"prosody_float", "prosody.prosody_stats_processing_seconds.sum:5.4836273193359e-06|g"},
	{"etsy_multi_value", "api.request.time:320.5|ms:12|ms|@0.1"}, // both fields: ns per line
}

func BenchmarkParse(b *testing.B) {
	p := Parser{Dialect: Dialect{RelativeGauges: true, LiteralPrefix: []byte("prosody.")}}
	for _, bl := range benchLines {
		b.Run(bl.name, func(b *testing.B) {
			line := []byte(bl.line)
			var s Sample
			b.SetBytes(int64(len(line)))
			b.ReportAllocs()
			for b.Loop() {
				if p.Parse(line, &s) != ReasonNone {
					b.Fatal("rejected")
				}
				for s.More() {
					if p.Next(&s, &s) != ReasonNone {
						b.Fatal("rejected")
					}
				}
			}
		})
	}
}

// discard is a Handler that only looks at what it is given.
type discard struct{ n int }

func (d *discard) Handle(batch []Sample) { d.n += len(batch) }

// BenchmarkReaderDatagram measures splitting a read buffer into lines and
// parsing them into a batch, up to the Handler.
func BenchmarkReaderDatagram(b *testing.B) {
	datagram := []byte("a.b:1|c\nc.d:2|g\ne.f:3|ms|@0.5\ng.h:1|c|#k:v\n")
	r := NewReader(ReaderConfig{Parser: Parser{Dialect: Dialect{RelativeGauges: true}}, Handler: &discard{}, Stats: &Stats{}, MaxLine: 1024})
	b.SetBytes(int64(len(datagram)))
	b.ReportAllocs()
	for b.Loop() {
		r.Datagram(datagram, netip.Addr{})
		r.Flush()
	}
}
