package prosody

import (
	"bufio"
	"encoding/json"
	"math"
	"os"
	"strings"
	"testing"

	"github.com/statsbridge/statsbridge/ingest"
	"github.com/statsbridge/statsbridge/model"
)

// FuzzMap feeds the Prosody mapper arbitrary names, seeded with every name
// in the capture: it must never panic, and what it maps must be a valid
// family with its fixed labels and a part that exists.
func FuzzMap(f *testing.F) {
	file, err := os.Open("../../testdata/prosody/capture.jsonl")
	if err != nil {
		f.Fatal(err)
	}
	sc := bufio.NewScanner(file)
	for sc.Scan() {
		var d struct{ Text string }
		json.Unmarshal(sc.Bytes(), &d)
		if i := strings.LastIndexByte(d.Text, ':'); i > 0 {
			f.Add(d.Text[:i], d.Text[strings.LastIndexByte(d.Text, '|')+1:] == "c")
		}
	}
	file.Close()
	m := testMapper()
	f.Fuzz(func(t *testing.T, name string, counter bool) {
		typ := ingest.Gauge
		if counter {
			typ = ingest.Counter
		}
		mp, ok := m.Map(name, typ, nil)
		if !ok || mp.Drop {
			return
		}
		if model.SanitizeMetricName(mp.Family.Name) != mp.Family.Name {
			t.Fatalf("%q: family name %q", name, mp.Family.Name)
		}
		if len(mp.Labels) < len(mp.Family.LabelNames) {
			t.Fatalf("%q: labels %v for %v", name, mp.Labels, mp.Family.LabelNames)
		}
		if mp.Part >= 0 {
			t.Fatalf("%q: part %d: a mapper names a bucket by its bound, never by an index", name, mp.Part)
		}
		if b := mp.Bucket; mp.Part == model.PartBucket && (b.LE == "" || math.IsNaN(b.Bound) || math.IsInf(b.Bound, -1) ||
			(b.LE == "+Inf") != math.IsInf(b.Bound, 1) || mp.Guesses == nil) {
			t.Fatalf("%q: bucket %+v, guesses %v", name, b, mp.Guesses)
		}
		if !strings.HasPrefix(name, mp.Key) {
			t.Fatalf("%q: key %q", name, mp.Key)
		}
	})
}
