package spool

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/statsbridge/statsbridge/cork"
)

func batchOf(records ...string) cork.Batch {
	var b cork.Batch
	for _, r := range records {
		b.Data = append(b.Data, r...)
		b.Ends = append(b.Ends, len(b.Data))
	}
	return b
}

func recordsOf(b cork.Batch) string {
	out := make([]string, b.Len())
	for i := range out {
		out[i] = string(b.Record(i))
	}
	return strings.Join(out, ",")
}

// drain reads and acks everything, returning the batches' records.
func drain(t *testing.T, s *Spool) []string {
	t.Helper()
	var got []string
	for {
		b, _, ok, err := s.Peek()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return got
		}
		got = append(got, recordsOf(b))
		if err := s.Ack(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSpoolKeepsOrderAcrossSegmentsAndRestarts(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	created := time.Unix(1_800_000_000, 123)
	for i := 0; i < 300; i++ { // 180KiB: two segments of up to 128KiB
		recs := []string{fmt.Sprintf("a%03d %s", i, strings.Repeat("x", 600)), fmt.Sprintf("b%03d", i)}
		if _, err := s.Append(batchOf(recs...), created); err != nil {
			t.Fatal(err)
		}
		want = append(want, strings.Join(recs, ","))
	}
	// Read half, then "restart": what was not acked comes back, in order.
	half := 0
	for ; half < 150; half++ {
		b, c, ok, err := s.Peek()
		if err != nil || !ok || recordsOf(b) != want[half] || !c.Equal(created) {
			t.Fatalf("record %d: %q %v %v %v", half, recordsOf(b), c, ok, err)
		}
		s.Ack()
	}
	s.Close()
	s, err = Open(dir, Options{MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	// The cursor kept how far delivery got: the rest comes, once, in order.
	got := drain(t, s)
	if strings.Join(got, "|") != strings.Join(want[150:], "|") {
		t.Fatalf("after the restart: %d batches, want the 150 not yet delivered", len(got))
	}
	if !s.Empty() || s.Bytes() != 0 {
		t.Errorf("drained spool: empty %v, %d bytes", s.Empty(), s.Bytes())
	}
	if files, _ := filepath.Glob(filepath.Join(dir, "*.spool")); len(files) != 1 {
		t.Errorf("%d segments left, want the one being written", len(files))
	}
}

func TestSpoolDropsTheOldestWhenFull(t *testing.T) {
	s, err := Open(t.TempDir(), Options{MaxBytes: 256 << 10})
	if err != nil {
		t.Fatal(err)
	}
	dropped := 0
	for i := 0; i < 1000; i++ {
		n, err := s.Append(batchOf(fmt.Sprintf("%04d%s", i, strings.Repeat("y", 996))), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		dropped += n
	}
	if s.Bytes() > 256<<10 {
		t.Errorf("spool holds %d bytes, over its 256KiB", s.Bytes())
	}
	got := drain(t, s)
	if dropped+len(got) != 1000 || !strings.HasPrefix(got[len(got)-1], "0999") || !strings.HasPrefix(got[0], fmt.Sprintf("%04d", dropped)) {
		t.Errorf("dropped %d, kept %d from %q to %q", dropped, len(got), got[0][:4], got[len(got)-1][:4])
	}
}

func TestSpoolSkipsCorruptAndTornRecords(t *testing.T) {
	dir := t.TempDir()
	s, _ := Open(dir, Options{MaxBytes: 1 << 20})
	for i := 0; i < 3; i++ {
		s.Append(batchOf(fmt.Sprintf("first%d", i)), time.Now())
	}
	s.Close()
	files, _ := filepath.Glob(filepath.Join(dir, "*.spool"))
	first := files[0]
	data, _ := os.ReadFile(first)
	data[len(data)-3] ^= 0xff // damage the third record
	os.WriteFile(first, data, 0o640)

	s, _ = Open(dir, Options{MaxBytes: 1 << 20})
	s.Append(batchOf("second0"), time.Now())
	s.Append(batchOf("second1"), time.Now())
	s.Close()
	// A torn tail, as a crash mid-write leaves.
	files, _ = filepath.Glob(filepath.Join(dir, "*.spool"))
	f, _ := os.OpenFile(files[len(files)-1], os.O_APPEND|os.O_WRONLY, 0)
	f.Write([]byte{200, 0, 0, 0, 1, 2})
	f.Close()
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not a segment"), 0o640)

	s, err := Open(dir, Options{MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(drain(t, s), " ")
	if got != "first0 first1 second0 second1" {
		t.Errorf("read %q", got)
	}
	if s.Damaged != 2 {
		t.Errorf("damaged %d, want 2 (the damaged record and the torn tail)", s.Damaged)
	}
}

func TestSpoolSegments(t *testing.T) {
	dir := t.TempDir()
	s, _ := Open(dir, Options{MaxBytes: 1 << 20})
	for i := 0; i < 300; i++ {
		s.Append(batchOf(strings.Repeat("z", 600)), time.Now())
	}
	if files, _ := filepath.Glob(filepath.Join(dir, "*.spool")); len(files) < 2 {
		t.Errorf("%d segments for 180KiB", len(files))
	}
}

// FuzzSpoolRecord feeds the record decoder arbitrary bytes: a damaged
// spool must never crash statsbridge.
func FuzzSpoolRecord(f *testing.F) {
	s, _ := Open(f.TempDir(), Options{MaxBytes: 1 << 20})
	s.Append(batchOf("one", "two"), time.Unix(1, 2))
	s.Close()
	files, _ := filepath.Glob(filepath.Join(s.dir, "*.spool"))
	for _, file := range files {
		data, _ := os.ReadFile(file)
		f.Add(data)
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		b, _, next, good := decodeRecord(data)
		if !good {
			return
		}
		if next > len(data) || (b.Len() > 0 && b.Ends[b.Len()-1] != len(b.Data)) {
			t.Fatalf("inconsistent record: next %d of %d, ends %v, data %d", next, len(data), b.Ends, len(b.Data))
		}
		for i := 0; i < b.Len(); i++ {
			_ = b.Record(i)
		}
		countPoints(data)
	})
}

func TestSpoolPrependPutsBatchesFirst(t *testing.T) {
	s, _ := Open(t.TempDir(), Options{MaxBytes: 1 << 20})
	s.Append(batchOf("c"), time.Now())
	s.Append(batchOf("d"), time.Now())
	if err := s.Prepend([]cork.Batch{batchOf("a"), batchOf("b")}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(drain(t, s), ""); got != "abcd" {
		t.Errorf("read %q", got)
	}
}

// TestSpoolSurvivesAFailedWrite: a write that fails (a full disk, say)
// must not cost the records written after it.
func TestSpoolSurvivesAFailedWrite(t *testing.T) {
	s, _ := Open(t.TempDir(), Options{MaxBytes: 1 << 20})
	s.Append(batchOf("one"), time.Now())
	s.file.Close() // the next write fails
	if _, err := s.Append(batchOf("lost"), time.Now()); err == nil {
		t.Fatal("writing to a closed file succeeded")
	}
	s.Append(batchOf("two"), time.Now())
	if got := strings.Join(drain(t, s), " "); got != "one two" {
		t.Errorf("read %q", got)
	}
}

func TestSpoolDirectoryIsLocked(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, Options{MaxBytes: 1 << 20}); err == nil {
		t.Fatal("a second spool opened the same directory")
	}
	s.Close()
	again, err := Open(dir, Options{MaxBytes: 1 << 20})
	if err != nil {
		t.Fatalf("after Close: %v", err)
	}
	again.Close()
}

func TestSpoolLeavesNoEmptySegmentsBehind(t *testing.T) {
	dir := t.TempDir()
	for i := 0; i < 5; i++ {
		s, _ := Open(dir, Options{MaxBytes: 1 << 20})
		s.Close()
	}
	if files, _ := filepath.Glob(filepath.Join(dir, "*.spool")); len(files) > 1 {
		t.Errorf("%d segment files after five empty runs", len(files))
	}
}

// TestSpoolPrependAfterDroppingTheCursorsSegment: when the segment the
// cursor points into is dropped for size, the cursor goes with it. Else a
// batch prepended later, which takes that segment's number, would be read
// from the stale cursor's offset after a restart and lost as damage.
func TestSpoolPrependAfterDroppingTheCursorsSegment(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{MaxBytes: 256 << 10})
	if err != nil {
		t.Fatal(err)
	}
	big := func(i int) cork.Batch { return batchOf(fmt.Sprintf("%04d%s", i, strings.Repeat("z", 1020))) }
	for i := 0; i < 10; i++ {
		s.Append(big(i), time.Now())
	}
	for i := 0; i < 3; i++ { // the cursor now points 3 records into the oldest segment
		if _, _, ok, err := s.Peek(); !ok || err != nil {
			t.Fatal(ok, err)
		}
		s.Ack()
	}
	s.Close()
	if s, err = Open(dir, Options{MaxBytes: 256 << 10}); err != nil {
		t.Fatal(err)
	}
	dropped, appended := 0, 10
	for ; dropped == 0; appended++ { // until the oldest segment goes for size
		n, err := s.Append(big(appended), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		dropped = n
	}
	// Longer than the stale cursor's offset, so that a stale cursor would
	// land inside them.
	early1, early2 := "early1"+strings.Repeat("e", 4096), "early2"+strings.Repeat("e", 4096)
	if err := s.Prepend([]cork.Batch{batchOf(early1), batchOf(early2)}, time.Now()); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err = Open(dir, Options{MaxBytes: 256 << 10}); err != nil {
		t.Fatal(err)
	}
	got := drain(t, s)
	if len(got) < 2 || got[0] != early1 || got[1] != early2 {
		t.Errorf("the prepended batches were not read first: %.20q", got[:min(2, len(got))])
	}
	if s.Damaged != 0 {
		t.Errorf("damage counted %d, want 0", s.Damaged)
	}
	// The 3 delivered before the restart are not counted as dropped.
	if kept := len(got) - 2; 3+dropped+kept != appended {
		t.Errorf("3 delivered + %d dropped + %d kept, of %d appended", dropped, kept, appended)
	}
}

func TestSyncWritesThroughOnlyWhatIsNew(t *testing.T) {
	s, err := Open(t.TempDir(), Options{MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	steps := []struct {
		append    bool
		wantDirty bool
		wantSyncs uint64 // after the Sync that follows
	}{
		{append: false, wantDirty: false, wantSyncs: 0},
		{append: true, wantDirty: true, wantSyncs: 1},
		{append: false, wantDirty: false, wantSyncs: 1},
		{append: true, wantDirty: true, wantSyncs: 2},
	}
	for i, st := range steps {
		if st.append {
			if _, err := s.Append(batchOf("x"), time.Now()); err != nil {
				t.Fatal(err)
			}
		}
		if s.Dirty() != st.wantDirty {
			t.Errorf("step %d: dirty %v, want %v", i, s.Dirty(), st.wantDirty)
		}
		if err := s.Sync(); err != nil {
			t.Fatal(err)
		}
		if s.Dirty() || s.Syncs != st.wantSyncs {
			t.Errorf("step %d: after Sync dirty %v, %d syncs, want %d", i, s.Dirty(), s.Syncs, st.wantSyncs)
		}
	}
}

func TestDirNameDependsOnTargetAndShapeOnly(t *testing.T) {
	tests := []struct {
		a, b [2]string
		same bool
	}{
		{[2]string{"graphite 127.0.0.1:2003", "etsy"}, [2]string{"graphite 127.0.0.1:2003", "etsy"}, true},
		{[2]string{"graphite 127.0.0.1:2003", "etsy"}, [2]string{"graphite 127.0.0.1:2003", "paths"}, false},
		{[2]string{"graphite 127.0.0.1:2003", "etsy"}, [2]string{"graphite 127.0.0.1:2004", "etsy"}, false},
	}
	for _, tt := range tests {
		a, b := DirName(tt.a[0], tt.a[1]), DirName(tt.b[0], tt.b[1])
		if (a == b) != tt.same {
			t.Errorf("%v → %s, %v → %s: same %v, want %v", tt.a, a, tt.b, b, a == b, tt.same)
		}
		if !strings.HasPrefix(a, "graphite-") {
			t.Errorf("%s does not start with the sink's kind", a)
		}
	}
}

func TestOrphansAreSpoolsWithDataThatNoSinkUses(t *testing.T) {
	root := t.TempDir()
	open := func(name, sink string, records int) string {
		dir := filepath.Join(root, name)
		s, err := Open(dir, Options{Sink: sink, MaxBytes: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		for range records {
			s.Append(batchOf("r"), time.Now())
		}
		s.Close()
		return dir
	}
	used := open("influx-aaaa", "influx http://a/write", 3)
	orphan := open("influx-bbbb", "influx http://b/write", 2)
	open("influx-cccc", "influx http://c/write", 0) // empty: nothing to lose
	os.WriteFile(filepath.Join(root, "notes.txt"), []byte("x"), 0o600)

	got := Orphans([]string{root}, []string{used})
	if len(got) != 1 || got[0].Dir != orphan || got[0].Sink != "influx http://b/write" || got[0].Bytes == 0 {
		t.Fatalf("orphans %+v, want only %s with its sink named", got, orphan)
	}
}
