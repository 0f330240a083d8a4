package cork

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// records turns a batch back into its records, as strings.
func records(b Batch) []string {
	out := make([]string, b.Len())
	for i := range out {
		out[i] = string(b.Record(i))
	}
	return out
}

func appendText(buf *Buffer, s string) {
	buf.Append(func(b []byte) []byte { return append(b, s...) })
}

func TestBuffer(t *testing.T) {
	tests := []struct {
		name   string
		limits Limits
		corked bool
		add    []string
		want   [][]string // batches emitted, in order
	}{
		{"corked: one batch on uncork", Limits{Records: 10, Bytes: 100}, true,
			[]string{"a", "b", "c"}, [][]string{{"a", "b", "c"}}},
		{"uncorked: every record at once", Limits{Records: 10, Bytes: 100}, false,
			[]string{"a", "b"}, [][]string{{"a"}, {"b"}}},
		{"record limit: full batches at once", Limits{Records: 2, Bytes: 100}, true,
			[]string{"a", "b", "c", "d", "e"}, [][]string{{"a", "b"}, {"c", "d"}, {"e"}}},
		{"byte limit: a record is never split", Limits{Records: 10, Bytes: 5}, true,
			[]string{"aa", "bb", "cc", "dddddddd", "e"}, [][]string{{"aa", "bb"}, {"cc"}, {"dddddddd"}, {"e"}}},
		{"empty records are no records", Limits{Records: 2, Bytes: 100}, true,
			[]string{"", "a", "", "b", ""}, [][]string{{"a", "b"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got [][]string
			buf := NewBuffer(tt.limits, func(b Batch) { got = append(got, records(b)) })
			if tt.corked {
				buf.Cork()
			}
			for _, s := range tt.add {
				appendText(buf, s)
			}
			buf.Uncork()
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("batches %v, want %v", got, tt.want)
			}
		})
	}
}

func TestUncorkWithoutCorkIsHarmless(t *testing.T) {
	emitted := 0
	buf := NewBuffer(Limits{Records: 10, Bytes: 100}, func(Batch) { emitted++ })
	buf.Uncork()
	buf.Uncork()
	if emitted != 0 || buf.Pending() != 0 {
		t.Errorf("emitted %d batches with nothing pending", emitted)
	}
}

func TestEmittedBatchesOwnTheirMemory(t *testing.T) {
	var batches []Batch
	buf := NewBuffer(Limits{Records: 2, Bytes: 100}, func(b Batch) { batches = append(batches, b) })
	buf.Cork()
	for _, s := range []string{"one", "two", "three", "four"} {
		appendText(buf, s)
	}
	buf.Uncork()
	if got := fmt.Sprint(records(batches[0]), records(batches[1])); got != "[one two] [three four]" {
		t.Errorf("a later batch overwrote an earlier one: %s", got)
	}
}

func TestSplit(t *testing.T) {
	var b Batch
	buf := NewBuffer(Limits{Records: 100, Bytes: 1000}, func(x Batch) { b = x })
	buf.Cork()
	for _, s := range []string{"a", "bb", "ccc", "dddd", "eeeee"} {
		appendText(buf, s)
	}
	buf.Uncork()
	first, second := b.Split()
	if got := fmt.Sprint(records(first), records(second)); got != "[a bb] [ccc dddd eeeee]" {
		t.Errorf("split into %s", got)
	}
	x, y := second.Split()
	if got := fmt.Sprint(records(x), records(y)); got != "[ccc] [dddd eeeee]" {
		t.Errorf("split again into %s", got)
	}
}

func TestClockAlignment(t *testing.T) {
	every := 10 * time.Second
	base := time.Unix(1_800_000_000, 0) // a multiple of 10s
	tests := []struct {
		name      string
		start     time.Time
		wantStart time.Time
		wantEnd   time.Time
	}{
		{"on a boundary", base, base, base.Add(every)},
		{"mid-interval: the partial slot is skipped", base.Add(3 * time.Second), base.Add(every), base.Add(2 * every)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := tt.start
			c := NewClock(every, func() time.Time { return now })
			now = tt.wantEnd
			iv := c.advance()
			if !iv.Start.Equal(tt.wantStart) || !iv.End.Equal(tt.wantEnd) || iv.Length != tt.wantEnd.Sub(tt.start) {
				t.Errorf("first interval %+v, want [%v, %v) of length %v", iv, tt.wantStart, tt.wantEnd, tt.wantEnd.Sub(tt.start))
			}
			now = now.Add(every + 5*time.Millisecond)
			next := c.advance()
			if !next.Start.Equal(iv.End) || !next.End.Equal(iv.End.Add(every)) {
				t.Errorf("second interval %+v, want it to follow the first", next)
			}
			now = next.End.Add(4 * time.Second)
			final := c.Final()
			if !final.Final || !final.Start.Equal(next.End) || final.Length != 4*time.Second {
				t.Errorf("final interval %+v", final)
			}
		})
	}
}

func TestClockSkipsMissedTicksWithoutFlushingTwice(t *testing.T) {
	every := 10 * time.Second
	base := time.Unix(1_800_000_000, 0)
	now := base
	c := NewClock(every, func() time.Time { return now })
	now = base.Add(every)
	c.advance()
	now = base.Add(3*every + 2*time.Second) // the process stalled
	late := c.advance()
	if !late.Start.Equal(base.Add(every)) || !late.End.Equal(base.Add(2*every)) {
		t.Errorf("late interval %+v", late)
	}
	next := c.cur
	if !next.Start.Equal(base.Add(2*every)) || !next.End.Equal(base.Add(4*every)) {
		t.Errorf("the interval after a stall %+v should run to the next boundary ahead", next)
	}
}

func TestClockRunFlushesOnBoundariesUntilCanceled(t *testing.T) {
	every := 50 * time.Millisecond
	c := NewClock(every, nil)
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var got []Interval
	done := make(chan struct{})
	go func() {
		c.Run(ctx, func(iv Interval) {
			mu.Lock()
			got = append(got, iv)
			mu.Unlock()
		})
		close(done)
	}()
	time.Sleep(8 * every)
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if len(got) < 3 {
		t.Fatalf("%d flushes in %v", len(got), 8*every)
	}
	var problems []string
	for i, iv := range got {
		if iv.Start.UnixNano()%int64(every) != 0 || iv.End.UnixNano()%int64(every) != 0 {
			problems = append(problems, fmt.Sprintf("unaligned %v", iv))
		}
		if i > 0 && !iv.Start.Equal(got[i-1].End) {
			problems = append(problems, fmt.Sprintf("gap before %v", iv))
		}
	}
	if len(problems) > 0 {
		t.Error(strings.Join(problems, "; "))
	}
}

func TestIntervalStampPicksStartOrEnd(t *testing.T) {
	iv := Interval{Start: time.Unix(100, 0), End: time.Unix(110, 0), Length: 10 * time.Second}
	tests := []struct {
		cumulative bool
		want       time.Time
	}{
		{cumulative: false, want: iv.Start},
		{cumulative: true, want: iv.End},
	}
	for _, tt := range tests {
		if got := iv.Stamp(tt.cumulative); !got.Equal(tt.want) {
			t.Errorf("Stamp(%v) = %v, want %v", tt.cumulative, got, tt.want)
		}
	}
}

// TestClockSetInterval: a reload's new interval takes effect after the
// interval in progress, whose end does not move, and the next interval ends
// on a boundary of the new one; intervals still follow each other.
func TestClockSetInterval(t *testing.T) {
	base := time.Unix(1_800_000_000, 0)
	now := base
	c := NewClock(10*time.Second, func() time.Time { return now })
	now = base.Add(10 * time.Second)
	first := c.Advance()
	c.SetInterval(3 * time.Second)
	if !c.Due().Equal(base.Add(20 * time.Second)) {
		t.Errorf("the interval in progress now ends at %v, want %v", c.Due(), base.Add(20*time.Second))
	}
	now = c.Due()
	second := c.Advance()
	third := c.cur
	if !second.Start.Equal(first.End) || !third.Start.Equal(second.End) {
		t.Errorf("intervals %+v, %+v, %+v do not follow each other", first, second, third)
	}
	if third.End.UnixNano()%int64(3*time.Second) != 0 || third.End.Sub(third.Start) > 3*time.Second {
		t.Errorf("the interval after the change %+v should end on the next 3s boundary", third)
	}
}
