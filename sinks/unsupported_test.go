package sinks

import (
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/statsbridge/statsbridge/cork"
)

// strippingTransport is a backend that does not take records starting
// with "native" (Prometheus without native histograms): a batch holding
// one is refused whole, as Unsupported.
type strippingTransport struct {
	fakeTransport
	strips atomic.Int32
}

func (s *strippingTransport) Strip(b cork.Batch) (cork.Batch, int) {
	s.strips.Add(1)
	var kept cork.Batch
	left := 0
	for i := range b.Len() {
		r := b.Record(i)
		if strings.HasPrefix(string(r), "native") {
			left++
			continue
		}
		kept.Data = append(kept.Data, r...)
		kept.Ends = append(kept.Ends, len(kept.Data))
	}
	return kept, left
}

func refusesNative(recs []string) error {
	for _, r := range recs {
		if strings.HasPrefix(r, "native") {
			return &Failure{Outcome: Unsupported, Err: errors.New("500 native histograms are disabled")}
		}
	}
	return nil
}

// TestUnsupportedRecordsAreStrippedNotHeld: a backend that does not take
// a kind of record gets the rest of each batch at once, the records it
// does not take are counted as dropped, nothing waits and nothing is
// retried, and the flushes after it still go.
func TestUnsupportedRecordsAreStrippedNotHeld(t *testing.T) {
	enc := &textEncoder{}
	tr := &strippingTransport{fakeTransport: fakeTransport{answer: refusesNative}}
	p := NewPush(Options{Batch: cork.Limits{Records: 4, Bytes: 1 << 20}, QueueBytes: 1 << 20}, enc, tr)
	deliver(t, p, enc,
		[]string{"a", "native-a", "b", "c", "native-b", "native-c", "native-d", "native-e", "d"},
		[]string{"e", "native-f"})
	if got := tr.got(); !slices.Equal(got, []string{"a", "b", "c", "d", "e"}) {
		t.Errorf("delivered %v, want every record but the native ones, in order", got)
	}
	st := p.Stats()
	if n := st.Dropped[DropUnsupported].Load(); n != 6 {
		t.Errorf("%d records dropped as unsupported, want 6", n)
	}
	// Batches of four: [a native-a b c] [native-b..native-e] [d], [e native-f].
	if n := st.Failures[Unsupported].Load(); n != 3 {
		t.Errorf("%d unsupported answers, want 3: one per batch holding native records", n)
	}
	if st.Retries.Load() != 0 || st.Up.Load() != 1 {
		t.Errorf("retries %d, up %d: an unsupported kind is no outage", st.Retries.Load(), st.Up.Load())
	}
}

// TestUnsupportedWithNothingToStrip: a transport that cannot strip (or
// finds nothing to) has the batch dropped whole rather than sent for ever.
func TestUnsupportedWithNothingToStrip(t *testing.T) {
	enc := &textEncoder{}
	tr := &fakeTransport{answer: refusesNative}
	p := newTestPush(enc, tr, Options{})
	deliver(t, p, enc, []string{"a", "native-a"}, []string{"b"})
	if got := tr.got(); !slices.Equal(got, []string{"b"}) || p.Stats().Dropped[DropUnsupported].Load() != 2 || tr.attempts != 2 {
		t.Errorf("delivered %v in %d attempts, dropped %d; want [b], 2, 2", got, tr.attempts, p.Stats().Dropped[DropUnsupported].Load())
	}
}
