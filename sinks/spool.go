package sinks

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/statsbridge/statsbridge/cork"
)

// Spool is a push sink's queue on disk, for what does not fit the memory
// queue while its backend is down, and for what shutdown could not deliver.
// It is a directory of append-only segment files, read back oldest first:
//
//	segment:  record*
//	record:   length uint32 | crc32c(payload) uint32 | payload
//	payload:  created unix nanoseconds uint64 | n uint32 | n record ends uint32 | data
//
// A record whose checksum fails, or a torn one at the end of a segment (a
// crash mid-write), ends that segment's reading: the rest of it is skipped
// and counted, never fatal. A segment is deleted once every record in it is
// delivered; a crash before that delivers its records again, which the
// backends take as the same points (they carry their timestamps). Past
// maxBytes the oldest segment goes, counted.
//
// A Spool is not safe for concurrent use; its Push serialises access.
type Spool struct {
	dir        string
	maxBytes   int64
	segmentMax int64

	segments []*segment // oldest first; the last is being written
	file     *os.File   // the last segment, open for appending
	bytes    int64

	// reading: the oldest segment, loaded whole
	readSeq  uint64
	readBuf  []byte
	readOff  int
	readNext int // offset after the record handed out by Peek

	// Corrupt counts records lost to damage (checksums, torn tails).
	Corrupt uint64
}

type segment struct {
	seq  uint64
	size int64
}

const (
	spoolSuffix  = ".spool"
	recordHeader = 8
	crcTable     = crc32.Castagnoli
)

var castagnoli = crc32.MakeTable(crcTable)

// OpenSpool opens (or creates) a spool directory. What an earlier run left
// is kept and read first; writing starts a new segment, so that a torn tail
// of the last run stays where it is.
func OpenSpool(dir string, maxBytes int64) (*Spool, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	s := &Spool{dir: dir, maxBytes: maxBytes, segmentMax: min(max(maxBytes/8, 64<<10), 8<<20)}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		seq, ok := segmentSeq(e)
		if !ok {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return nil, err
		}
		s.segments = append(s.segments, &segment{seq: seq, size: info.Size()})
		s.bytes += info.Size()
	}
	sort.Slice(s.segments, func(i, j int) bool { return s.segments[i].seq < s.segments[j].seq })
	if err := s.rotate(); err != nil {
		return nil, err
	}
	return s, nil
}

func segmentSeq(e fs.DirEntry) (uint64, bool) {
	name, ok := strings.CutSuffix(e.Name(), spoolSuffix)
	if !ok || e.IsDir() {
		return 0, false
	}
	seq, err := strconv.ParseUint(name, 10, 64)
	return seq, err == nil
}

func (s *Spool) path(seq uint64) string {
	return filepath.Join(s.dir, fmt.Sprintf("%020d%s", seq, spoolSuffix))
}

// rotate starts a new segment for writing.
func (s *Spool) rotate() error {
	if s.file != nil {
		if err := s.file.Close(); err != nil {
			return err
		}
		s.file = nil
	}
	seq := uint64(1)
	if n := len(s.segments); n > 0 {
		seq = s.segments[n-1].seq + 1
	}
	f, err := os.OpenFile(s.path(seq), os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	s.file = f
	s.segments = append(s.segments, &segment{seq: seq})
	return nil
}

// Bytes is the spool's size on disk.
func (s *Spool) Bytes() int64 { return s.bytes }

// Empty reports whether nothing waits in the spool.
func (s *Spool) Empty() bool {
	if s.readBuf != nil && s.readOff < len(s.readBuf) {
		return false
	}
	for _, seg := range s.segments {
		if seg.size > 0 && seg.seq != s.readSeq {
			return false
		}
	}
	return true
}

// Append writes a batch at the end of the spool. It returns how many
// records (points) it had to drop from the oldest segments to stay within
// its size.
func (s *Spool) Append(b cork.Batch, created time.Time) (dropped int, err error) {
	payload := make([]byte, 12+4*len(b.Ends), 12+4*len(b.Ends)+len(b.Data))
	binary.LittleEndian.PutUint64(payload, uint64(created.UnixNano()))
	binary.LittleEndian.PutUint32(payload[8:], uint32(len(b.Ends)))
	for i, e := range b.Ends {
		binary.LittleEndian.PutUint32(payload[12+4*i:], uint32(e))
	}
	payload = append(payload, b.Data...)
	rec := make([]byte, recordHeader, recordHeader+len(payload))
	binary.LittleEndian.PutUint32(rec, uint32(len(payload)))
	binary.LittleEndian.PutUint32(rec[4:], crc32.Checksum(payload, castagnoli))
	rec = append(rec, payload...)

	last := s.segments[len(s.segments)-1]
	if last.size > 0 && last.size+int64(len(rec)) > s.segmentMax {
		if err := s.rotate(); err != nil {
			return 0, err
		}
		last = s.segments[len(s.segments)-1]
	}
	if _, err := s.file.Write(rec); err != nil {
		return 0, err
	}
	last.size += int64(len(rec))
	s.bytes += int64(len(rec))
	for s.bytes > s.maxBytes && len(s.segments) > 1 {
		n, err := s.dropOldest()
		dropped += n
		if err != nil {
			return dropped, err
		}
	}
	return dropped, nil
}

// dropOldest deletes the oldest segment and returns how many records it
// still held.
func (s *Spool) dropOldest() (int, error) {
	seg := s.segments[0]
	records := 0
	if seg.seq == s.readSeq && s.readBuf != nil {
		records = countRecords(s.readBuf[s.readOff:])
		s.readBuf, s.readOff, s.readNext, s.readSeq = nil, 0, 0, 0
	} else if data, err := os.ReadFile(s.path(seg.seq)); err == nil {
		records = countRecords(data)
	}
	s.segments = s.segments[1:]
	s.bytes -= seg.size
	return records, os.Remove(s.path(seg.seq))
}

// countRecords counts the points in well-formed records.
func countRecords(data []byte) int {
	n := 0
	for len(data) >= recordHeader {
		size := int(binary.LittleEndian.Uint32(data))
		if len(data) < recordHeader+size || size < 12 {
			break
		}
		n += int(binary.LittleEndian.Uint32(data[recordHeader+8:]))
		data = data[recordHeader+size:]
	}
	return n
}

// Peek returns the oldest batch without removing it: Ack removes it once it
// is delivered. ok is false when the spool is empty.
func (s *Spool) Peek() (b cork.Batch, created time.Time, ok bool, err error) {
	for {
		if s.readBuf == nil || s.readOff >= len(s.readBuf) {
			if loaded, err := s.loadOldest(); err != nil || !loaded {
				return cork.Batch{}, time.Time{}, false, err
			}
		}
		b, created, next, good := decodeRecord(s.readBuf[s.readOff:])
		if good {
			s.readNext = s.readOff + next
			return b, created, true, nil
		}
		// Damaged: the rest of this segment cannot be trusted.
		s.Corrupt += uint64(max(countRecords(s.readBuf[s.readOff:]), 1))
		if err := s.finishSegment(); err != nil {
			return cork.Batch{}, time.Time{}, false, err
		}
	}
}

// Ack removes the batch Peek returned.
func (s *Spool) Ack() error {
	s.readOff = s.readNext
	if s.readOff >= len(s.readBuf) {
		return s.finishSegment()
	}
	return nil
}

// loadOldest reads the oldest segment with data. A segment still being
// written is closed first, so that what is read no longer changes.
func (s *Spool) loadOldest() (bool, error) {
	for len(s.segments) > 0 {
		seg := s.segments[0]
		if seg.size == 0 {
			if len(s.segments) == 1 {
				return false, nil // only the empty segment being written
			}
			if err := s.remove(0); err != nil {
				return false, err
			}
			continue
		}
		if len(s.segments) == 1 {
			if err := s.rotate(); err != nil {
				return false, err
			}
		}
		data, err := os.ReadFile(s.path(seg.seq))
		if err != nil {
			return false, err
		}
		s.readSeq, s.readBuf, s.readOff, s.readNext = seg.seq, data, 0, 0
		return true, nil
	}
	return false, nil
}

// finishSegment deletes the segment being read.
func (s *Spool) finishSegment() error {
	s.readBuf, s.readOff, s.readNext = nil, 0, 0
	for i, seg := range s.segments {
		if seg.seq == s.readSeq {
			s.readSeq = 0
			return s.remove(i)
		}
	}
	return nil
}

func (s *Spool) remove(i int) error {
	seg := s.segments[i]
	s.segments = append(s.segments[:i], s.segments[i+1:]...)
	s.bytes -= seg.size
	if err := os.Remove(s.path(seg.seq)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// decodeRecord reads one record; good is false for a damaged or torn one.
func decodeRecord(data []byte) (b cork.Batch, created time.Time, next int, good bool) {
	if len(data) < recordHeader {
		return b, created, 0, false
	}
	size := int(binary.LittleEndian.Uint32(data))
	if size < 12 || len(data) < recordHeader+size {
		return b, created, 0, false
	}
	payload := data[recordHeader : recordHeader+size]
	if crc32.Checksum(payload, castagnoli) != binary.LittleEndian.Uint32(data[4:]) {
		return b, created, 0, false
	}
	created = time.Unix(0, int64(binary.LittleEndian.Uint64(payload)))
	n := int(binary.LittleEndian.Uint32(payload[8:]))
	if 12+4*n > size {
		return b, created, 0, false
	}
	b.Data = payload[12+4*n:]
	b.Ends = make([]int, n)
	prev := 0
	for i := range b.Ends {
		e := int(binary.LittleEndian.Uint32(payload[12+4*i:]))
		if e < prev || e > len(b.Data) {
			return cork.Batch{}, created, 0, false
		}
		b.Ends[i], prev = e, e
	}
	if n > 0 && prev != len(b.Data) {
		return cork.Batch{}, created, 0, false
	}
	return b, created, recordHeader + size, true
}

// Close closes the segment being written.
func (s *Spool) Close() error {
	if s.file == nil {
		return nil
	}
	err := s.file.Close()
	s.file = nil
	return err
}
