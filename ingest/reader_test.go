package ingest

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

// typedRecorder keeps every sample it is given as "name|type=values;tags".
type typedRecorder struct{ got []string }

func (r *typedRecorder) Handle(batch []Sample) {
	for i := range batch {
		s := &batch[i]
		text := string(s.Name) + "|" + s.Type.String()
		if s.Type == Set {
			text += "=" + string(s.Member)
		}
		for _, v := range s.Values {
			text += "=" + formatValue(v)
		}
		if s.Rate != 1 {
			text += "@" + formatValue(s.Rate)
		}
		for _, t := range s.Tags {
			text += ";" + string(t.Key) + "=" + string(t.Value)
		}
		r.got = append(r.got, text)
	}
}

// TestReaderMultiValueLines: each field of Etsy's multi-value form is a
// sample of its own and counts as a line; a bad field is counted alone.
func TestReaderMultiValueLines(t *testing.T) {
	rec := &typedRecorder{}
	st := &Stats{}
	r := NewReader(ReaderConfig{Parser: Parser{Dialect: Dialect{RelativeGauges: true}}, Handler: rec, Stats: st,
		MaxLine: 1024, SourceLabel: "source"})
	from := netip.MustParseAddr("192.0.2.1")
	r.Datagram([]byte("t:1|ms|@0.5:x|ms:2|c|#env:prod\nu:a|s:b|s\nbad:1|c:2|c|"), from)
	r.Flush()
	want := []string{
		"t|ms=1@0.5;env=prod;source=192.0.2.1",
		"t|c=2;env=prod;source=192.0.2.1",
		"u|s=a;source=192.0.2.1",
		"u|s=b;source=192.0.2.1",
	}
	if fmt.Sprint(rec.got) != fmt.Sprint(want) {
		t.Errorf("got  %q\nwant %q", rec.got, want)
	}
	if st.Lines.Load() != 6 || st.BadLines[ReasonBadValue].Load() != 1 || st.BadLines[ReasonBadSection].Load() != 1 {
		t.Errorf("lines %d, bad_value %d, bad_section %d; want 6, 1, 1",
			st.Lines.Load(), st.BadLines[ReasonBadValue].Load(), st.BadLines[ReasonBadSection].Load())
	}
}

// TestReaderMultiValueLineLongerThanABatch: a line with more fields than a
// batch holds is handed over in several batches, none lost.
func TestReaderMultiValueLineLongerThanABatch(t *testing.T) {
	const fields = 3*batchSize + 7
	rec := &typedRecorder{}
	r := NewReader(ReaderConfig{Handler: rec, Stats: &Stats{}, MaxLine: 64 << 10})
	line := "t" + strings.Repeat(":1|c", fields)
	r.Datagram([]byte("before:1|c\n"+line), netip.Addr{})
	r.Flush()
	if len(rec.got) != fields+1 {
		t.Fatalf("%d samples, want %d", len(rec.got), fields+1)
	}
	for _, g := range rec.got[1:] {
		if g != "t|c=1" {
			t.Fatalf("sample %q, want t|c=1", g)
		}
	}
}

// TestReaderMultiValueAllocatesNothing: splitting a multi-value line into
// samples reuses the batch.
func TestReaderMultiValueAllocatesNothing(t *testing.T) {
	r := NewReader(ReaderConfig{Parser: Parser{Dialect: Dialect{RelativeGauges: true}}, Handler: &discard{}, Stats: &Stats{}, MaxLine: 1024})
	datagram := []byte("t:1|ms|@0.5:2|ms:3|ms|#env:prod,canary\ng:+1|g:2|g")
	r.Datagram(datagram, netip.Addr{})
	r.Flush()
	if n := testing.AllocsPerRun(100, func() { r.Datagram(datagram, netip.Addr{}); r.Flush() }); n != 0 {
		t.Errorf("%v allocations per datagram, want 0", n)
	}
}
