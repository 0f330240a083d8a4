package e2e

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// corpusDatagrams are sent once over each transport. Each datagram holds
// one or more lines; the comments say what each line must do.
var corpusDatagrams = []string{
	"corpus.hits:1|c\ncorpus.hits:2|c|@0.5",                  // +1, +4
	"corpus.hits:1|c|#env:prod",                              // another series
	"corpus.temp:20|g\ncorpus.temp:+5|g\r\ncorpus.temp:-3|g", // 20, 25, 22; \r\n tolerated
	"corpus.lat:100|ms\ncorpus.lat:200:300|ms",               // three observations: 0.6 s
	"corpus.tagged,env=dev:1|c",                              // Influx-style tags
	"corpus.tagged;env=stage:1|c",                            // Graphite-style tags
	"corpus.dog:1|c|#env:qa,canary|T1795353780|c:abc",        // DogStatsD tags, timestamp, container
	"\n\n\n", // only newlines: nothing, and nothing bad
	// One bad line per reason, between good ones that must still count.
	"corpus.bad\ncorpus.after:1|c",
	"corpus.bad:1|x",
	"corpus.bad|c",
	"corpus.bad:abc|c",
	":1|c",
	"corpus.bad:1|c|@0",
	"corpus.bad:1|c|#:v",
	"corpus.bad,a=b:1|c|#c:d",
	"corpus.bad:1|c|Tx",
	"corpus.bad:1|c|",
	"corpus.b\x00ad:1|c",
	"corpus.b\xffad:1|c",
}

// corpusWant is what /metrics must show after the corpus went over all
// three transports.
var corpusWant = map[string]string{
	`corpus_hits_total`:                                             "15",
	`corpus_hits_total{env="prod"}`:                                 "3",
	`corpus_temp`:                                                   "22",
	`corpus_lat_seconds_count`:                                      "9",
	`corpus_lat_seconds_sum`:                                        "1.8000000000000003",
	`corpus_lat_seconds_bucket{le="0.1"}`:                           "3",
	`corpus_lat_seconds_bucket{le="0.25"}`:                          "6",
	`corpus_tagged_total{env="dev"}`:                                "3",
	`corpus_tagged_total{env="stage"}`:                              "3",
	`corpus_dog_total{canary="true",env="qa"}`:                      "3",
	`corpus_after_total`:                                            "3",
	`statsbridge_ingest_bad_lines_total{reason="missing_type"}`:     "3",
	`statsbridge_ingest_bad_lines_total{reason="bad_type"}`:         "3",
	`statsbridge_ingest_bad_lines_total{reason="missing_value"}`:    "3",
	`statsbridge_ingest_bad_lines_total{reason="bad_value"}`:        "3",
	`statsbridge_ingest_bad_lines_total{reason="empty_name"}`:       "3",
	`statsbridge_ingest_bad_lines_total{reason="bad_rate"}`:         "3",
	`statsbridge_ingest_bad_lines_total{reason="bad_tags"}`:         "3",
	`statsbridge_ingest_bad_lines_total{reason="mixed_tag_styles"}`: "3",
	`statsbridge_ingest_bad_lines_total{reason="bad_timestamp"}`:    "3",
	`statsbridge_ingest_bad_lines_total{reason="bad_section"}`:      "3",
	`statsbridge_ingest_bad_lines_total{reason="bad_bytes"}`:        "6",
	`statsbridge_ingest_bad_lines_total{reason="too_long"}`:         "0",
}

// TestIngestCorpusOverEveryTransport sends a corpus of good and bad lines
// over UDP, TCP and unixgram to the running binary and checks /metrics.
func TestIngestCorpusOverEveryTransport(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "statsd.sock")
	r := startRelay(t, fmt.Sprintf(`
[statsd]
udp = ["127.0.0.1:0"]
tcp = ["127.0.0.1:0"]
unixgram = [%q]
flush_interval = "1s"
[http]
listen = "127.0.0.1:0"
`, sock))

	waitFor := func(hits string) {
		eventually(t, 5*time.Second, "corpus_hits_total "+hits, func() (bool, string) {
			v, _ := sample(r.scrape(t), "corpus_hits_total")
			return v == hits, v
		})
	}
	r.sendUDP(t, corpusDatagrams...)
	waitFor("5")

	// TCP frames lines, not datagrams: each datagram's lines, then a newline.
	r.sendTCP(t, strings.Join(corpusDatagrams, "\n")+"\n")
	waitFor("10")

	c, err := net.Dial("unixgram", sock)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range corpusDatagrams {
		if _, err := c.Write([]byte(d)); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	waitFor("15")

	body := r.scrape(t)
	for series, want := range corpusWant {
		if got, ok := sample(body, series); got != want {
			t.Errorf("%s = %q (present %v), want %s", series, got, ok, want)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", body)
	}
	r.stop(t)
}
