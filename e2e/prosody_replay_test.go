package e2e

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"
)

// exposition is a parsed OpenMetrics page.
type exposition struct {
	families map[string]familyMeta
	series   map[string]seriesValue // `{__name__=..., labels sorted}`, _created left out
	buckets  map[string][]string
}

type familyMeta struct{ typ, unit, help string }

type seriesValue struct {
	name string
	v    float64
}

func parseExposition(t *testing.T, page []byte) exposition {
	t.Helper()
	p, err := textparse.New(page, "application/openmetrics-text", labels.NewSymbolTable(), textparse.ParserOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e := exposition{families: map[string]familyMeta{}, series: map[string]seriesValue{}, buckets: map[string][]string{}}
	for {
		entry, err := p.Next()
		if errors.Is(err, io.EOF) {
			return e
		}
		if err != nil {
			t.Fatalf("parsing: %v", err)
		}
		switch entry {
		case textparse.EntryType:
			name, typ := p.Type()
			m := e.families[string(name)]
			m.typ = string(typ)
			e.families[string(name)] = m
		case textparse.EntryHelp:
			name, help := p.Help()
			m := e.families[string(name)]
			m.help = strings.TrimSpace(string(help))
			e.families[string(name)] = m
		case textparse.EntryUnit:
			name, unit := p.Unit()
			m := e.families[string(name)]
			m.unit = string(unit)
			e.families[string(name)] = m
		case textparse.EntrySeries:
			var ls labels.Labels
			p.Labels(&ls)
			_, _, v := p.Series()
			name := ls.Get("__name__")
			if strings.HasSuffix(name, "_created") {
				continue
			}
			e.series[ls.String()] = seriesValue{name, v}
			if le := ls.Get("le"); le != "" {
				// One histogram series: its labels but le.
				key := name + labels.NewBuilder(ls).Del("le", "__name__").Labels().String()
				e.buckets[key] = append(e.buckets[key], le)
			}
		}
	}
}

// familyOf finds the family a series name belongs to.
func (e exposition) familyOf(name string) string {
	for _, suffix := range []string{"", "_total", "_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			if _, known := e.families[base]; known {
				return base
			}
		}
	}
	return ""
}

var leRE = regexp.MustCompile(`(?m)^(\w+)_bucket\{.*le="([^"]*)"`)

// rawLEs lists each histogram family's le values as written, in order of
// first appearance.
func rawLEs(page string) map[string][]string {
	out := map[string][]string{}
	for _, m := range leRE.FindAllStringSubmatch(page, -1) {
		if !slices.Contains(out[m[1]], m[2]) {
			out[m[1]] = append(out[m[1]], m[2])
		}
	}
	return out
}

// replayCapture sends the capture's datagrams, one by one as Prosody did, up
// to until seconds after the first.
func replayCapture(t *testing.T, addr string, until float64) int {
	t.Helper()
	f, err := os.Open("../testdata/prosody/capture.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sent := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var d struct {
			TRel float64 `json:"t_rel"`
			B64  string  `json:"b64"`
		}
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			t.Fatal(err)
		}
		if d.TRel > until {
			break
		}
		payload, _ := base64.StdEncoding.DecodeString(d.B64)
		if _, err := c.Write(payload); err != nil {
			t.Fatal(err)
		}
		sent++
	}
	return sent
}

// TestProsodyCaptureMatchesProsodysOwnExposition replays what Prosody 0.12.3
// sent and compares statsbridge's /metrics with the /metrics of its twin,
// the same Prosody with the internal statistics backend, under the same
// traffic, scraped 80 s in.
//
//   - Every family statsbridge rebuilt exists in the twin with the same
//     type, unit and help.
//   - Every series has the twin's name, label names and label values.
//   - Every histogram series has the twin's complete bucket layout.
//   - Values are equal, except those of families in seconds: durations
//     differ between two servers.
//
// The twin also shows series that Prosody's statsd backend never sends: a
// histogram series with no observation sends nothing at all. Those are
// listed, not required.
func TestProsodyCaptureMatchesProsodysOwnExposition(t *testing.T) {
	r := startRelay(t, `
[statsd]
udp = ["127.0.0.1:0"]
tcp = []
[prosody]
hosts = ["localhost", "conference.localhost", "upload.localhost"]
[http]
listen = "127.0.0.1:0"
`)
	sent := replayCapture(t, r.UDP, 80)
	eventually(t, 5*time.Second, "every datagram read", func() (bool, string) {
		v, _ := sample(r.scrape(t), "statsbridge_ingest_datagrams_total")
		return v == strconv.Itoa(sent), v + " of " + strconv.Itoa(sent)
	})
	ours := parseExposition(t, []byte(r.scrape(t)))
	twinPage, err := os.ReadFile("../testdata/prosody/openmetrics.txt")
	if err != nil {
		t.Fatal(err)
	}
	twin := parseExposition(t, twinPage)

	// statsbridge's own series (statsbridge_*, and client_golang's go_*
	// and process_*) are not Prosody's.
	own := func(name string) bool {
		return strings.HasPrefix(name, "statsbridge_") || strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_")
	}
	matched := 0
	for name, meta := range ours.families {
		if own(name) {
			continue
		}
		if tm, ok := twin.families[name]; !ok {
			t.Errorf("family %s is not in Prosody's exposition", name)
		} else if tm != meta {
			t.Errorf("family %s: type/unit/help %+v, Prosody's %+v", name, meta, tm)
		} else {
			matched++
		}
	}
	for series, sv := range ours.series {
		if own(sv.name) {
			continue
		}
		tv, ok := twin.series[series]
		switch {
		case !ok:
			t.Errorf("series %s is not in Prosody's exposition", series)
		case ours.families[ours.familyOf(sv.name)].unit != "seconds" && tv.v != sv.v:
			t.Errorf("series %s = %v, Prosody's %v", series, sv.v, tv.v)
		}
	}
	for key, les := range ours.buckets {
		sort.Strings(les)
		want := append([]string(nil), twin.buckets[key]...)
		sort.Strings(want)
		if strings.Join(les, ",") != strings.Join(want, ",") {
			t.Errorf("buckets of %s: %v, Prosody's %v", key, les, want)
		}
	}
	// Prometheus' parser canonicalises le (le="1" reads as le="1.0"), so the
	// spelling is checked on the raw text: it must be Prosody's, as
	// Prometheus 2.x stores le as written.
	ourPage := r.scrape(t)
	for family, les := range rawLEs(ourPage) {
		if want := rawLEs(string(twinPage))[family]; strings.Join(les, ",") != strings.Join(want, ",") {
			t.Errorf("le spellings of %s: %v, Prosody's %v", family, les, want)
		}
	}

	var unsent []string
	for series, sv := range twin.series {
		if _, ok := ours.series[series]; !ok && ours.familyOf(sv.name) != "" {
			unsent = append(unsent, series)
		}
	}
	sort.Strings(unsent)
	if v, _ := sample(r.scrape(t), "statsbridge_prosody_unknown_names_total"); v != "0" {
		t.Errorf("%s names were not in the catalog", v)
	}
	if matched < 30 {
		t.Errorf("only %d families matched", matched)
	}
	t.Logf("%d datagrams replayed; %d families match Prosody's own exposition (of %d it shows)", sent, matched, len(twin.families))
	t.Logf("%d series of those families Prosody's statsd backend never sent (histograms with no observation), e.g. %s",
		len(unsent), strings.Join(unsent[:min(2, len(unsent))], " "))
	r.stop(t)
}
