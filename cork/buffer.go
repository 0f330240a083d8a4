// Package cork is statsbridge's one batching mechanism, after Prosody's
// statistics API: Cork holds writes back, Uncork lets everything pending go
// at once (and is harmless when nothing is corked), and reaching the pending
// limit lets a full batch go early, as a full segment does under TCP_CORK.
// The package also owns the flush clock that uncorks on every interval.
package cork

// Batch is a run of encoded records, back to back. A record is one series'
// point for one interval in a sink's wire format: one or more carbon lines,
// line-protocol lines, or protobuf TimeSeries. A Batch is never split inside
// a record.
type Batch struct {
	Data []byte
	Ends []int // Ends[i] is where record i ends in Data
}

// Len is the number of records.
func (b Batch) Len() int { return len(b.Ends) }

// Record returns record i.
func (b Batch) Record(i int) []byte {
	start := 0
	if i > 0 {
		start = b.Ends[i-1]
	}
	return b.Data[start:b.Ends[i]]
}

// Split divides a batch of two or more records into two halves that share
// its memory.
func (b Batch) Split() (Batch, Batch) {
	mid := len(b.Ends) / 2
	cut := b.Ends[mid-1]
	second := Batch{Data: b.Data[cut:], Ends: make([]int, len(b.Ends)-mid)}
	for i, e := range b.Ends[mid:] {
		second.Ends[i] = e - cut
	}
	return Batch{Data: b.Data[:cut:cut], Ends: b.Ends[:mid:mid]}, second
}

// Limits bound one batch. A single record larger than Bytes still goes, alone.
type Limits struct {
	Records int
	Bytes   int
}

// Buffer holds a sink's records while corked and hands them on in batches as
// large as the limits allow. It is used by one goroutine at a time.
type Buffer struct {
	limits  Limits
	emit    func(Batch)
	corked  bool
	pending Batch
}

// NewBuffer returns an uncorked buffer that hands each batch to emit. emit
// owns the batch it is given.
func NewBuffer(limits Limits, emit func(Batch)) *Buffer {
	return &Buffer{limits: limits, emit: emit}
}

// Cork holds records back until Uncork or a full batch.
func (b *Buffer) Cork() { b.corked = true }

// Uncork hands on everything pending. Without a Cork before it, it does
// nothing.
func (b *Buffer) Uncork() {
	b.corked = false
	b.release()
}

// Append adds one record, written by encode appending to the slice it is
// given. A record that encodes to nothing is no record. When the record would
// take the pending batch over a limit, the pending records go first as a full
// batch; uncorked, the record goes at once.
func (b *Buffer) Append(encode func([]byte) []byte) {
	start := len(b.pending.Data)
	b.pending.Data = encode(b.pending.Data)
	end := len(b.pending.Data)
	if end == start {
		return
	}
	if n := len(b.pending.Ends); n > 0 && (n+1 > b.limits.Records || end > b.limits.Bytes) {
		record := append([]byte(nil), b.pending.Data[start:end]...)
		b.pending.Data = b.pending.Data[:start]
		b.release()
		b.pending.Data = append(b.pending.Data, record...)
		end = len(record)
	}
	b.pending.Ends = append(b.pending.Ends, end)
	if !b.corked || len(b.pending.Ends) >= b.limits.Records || end >= b.limits.Bytes {
		b.release()
	}
}

// Pending is the number of records held.
func (b *Buffer) Pending() int { return len(b.pending.Ends) }

func (b *Buffer) release() {
	if len(b.pending.Ends) == 0 {
		return
	}
	batch := b.pending
	// The next batch starts with room for one like this one, so that the
	// batches of a large flush are allocated once each rather than grown
	// by doubling (which allocated four times the bytes a flush holds). No
	// more than the byte limit: a batch waits in its sink's queue holding
	// all its capacity, so one with an oversized record must not hand its
	// size on.
	data := min(len(batch.Data)+len(batch.Data)/8, b.limits.Bytes)
	b.pending = Batch{Data: make([]byte, 0, data), Ends: make([]int, 0, len(batch.Ends))}
	b.emit(batch)
}
