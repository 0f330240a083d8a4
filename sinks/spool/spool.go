// Package spool is a push sink's outage queue on disk. Once a sink's
// delivery fails, everything that waits goes here, so that a crash loses at
// most what was in memory for about one flush interval; delivery reads it
// back oldest first, also after a restart. The design follows
// VictoriaMetrics' lib/persistentqueue: append-only segment files in a
// directory of the sink's own, a reader's cursor, a lock against a second
// process, and a meta file that says whose the directory is, so that a
// spool no sink uses any more can be found and named.
package spool

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
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

	"golang.org/x/sys/unix"

	"github.com/statsbridge/statsbridge/cork"
)

// Spool is one sink's queue on disk.
// It is a directory of segment files, read back in order of their numbers:
//
//	segment:  record*
//	record:   length uint32 | crc32c(payload) uint32 | payload
//	payload:  created unix nanoseconds uint64 | n uint32 | n record ends uint32 | data
//
// Segments are appended to and never rewritten. A "cursor" file says how far
// the oldest segment was delivered, so a restart does not deliver it again;
// a segment is deleted once all of it is delivered. After a crash between a
// delivery and its cursor update, one batch is delivered twice, which the
// backends store as the same points (they carry their timestamps).
//
// A record whose checksum fails, or a torn one at the end of a segment (a
// crash mid-write), ends that segment's reading: the rest of it is skipped
// and counted, never fatal. Past maxBytes the oldest segment goes, counted.
// A lock file keeps two processes out of one directory.
//
// Durability: every Append is a write(2), so what is appended survives the
// process being killed at once. For a power loss, Sync writes it through to
// the disk; the sink calls it at most a second after an Append. A segment is
// synced when it is finished, and the directory whenever a file is created
// in it, so a segment that was synced is found again after a power loss.
//
// A Spool is not safe for concurrent use; its sink serialises access.
type Spool struct {
	dir        string
	maxBytes   int64
	segmentMax int64
	lock       *os.File

	segments []*segment // in reading order; the last is being written
	file     *os.File   // the last segment, open for appending
	bytes    int64
	dirty    bool // appended to since the last Sync

	// reading: the oldest segment, loaded whole
	readSeq  uint64
	readBuf  []byte
	readOff  int
	readNext int // offset after the record handed out by Peek
	cursor   struct {
		seq uint64
		off int
	}

	// Damaged counts the times damage (a bad checksum, a torn record, an
	// unreadable segment) cut a segment's reading short.
	Damaged uint64
	// Syncs counts the fsyncs of data written.
	Syncs uint64
}

type segment struct {
	seq  uint64
	size int64
}

const (
	spoolSuffix  = ".spool"
	recordHeader = 8
	// firstSeq leaves room below it for segments put in front (Prepend).
	firstSeq = 1 << 40
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Options say where a spool is, whose it is and how large it may grow.
type Options struct {
	// Sink describes the sink the spool belongs to ("influx
	// http://host:8086/write?db=statsd"), for the meta file; it must hold
	// no secret.
	Sink string
	// MaxBytes bounds the spool on disk; past it the oldest segment goes.
	MaxBytes int64
}

// metaFile names the sink a spool directory belongs to.
const metaFile = "meta.json"

type meta struct {
	Sink string `json:"sink"`
}

// Open opens (or creates) a spool directory. What an earlier run left
// is kept and read first, from where its cursor says; writing starts a new
// segment, so that a torn tail of the last run stays where it is.
func Open(dir string, o Options) (*Spool, error) {
	maxBytes := o.MaxBytes
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o640)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("%s is in use by another sink or process: %w", dir, err)
	}
	s := &Spool{dir: dir, maxBytes: maxBytes, segmentMax: min(max(maxBytes/8, 64<<10), 8<<20), lock: lock}
	if err := s.writeMeta(o.Sink); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.load(); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.rotate(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Spool) writeMeta(sink string) error {
	b, err := json.Marshal(meta{Sink: sink})
	if err != nil {
		return err
	}
	tmp := filepath.Join(s.dir, metaFile+".tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o640); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(s.dir, metaFile))
}

// load lists the segments and the cursor an earlier run left.
func (s *Spool) load() error {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		seq, ok := segmentSeq(e)
		if !ok {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		if info.Size() == 0 {
			os.Remove(s.path(seq))
			continue
		}
		s.segments = append(s.segments, &segment{seq: seq, size: info.Size()})
		s.bytes += info.Size()
	}
	sort.Slice(s.segments, func(i, j int) bool { return s.segments[i].seq < s.segments[j].seq })
	if b, err := os.ReadFile(filepath.Join(s.dir, "cursor")); err == nil {
		fmt.Sscanf(string(b), "%d %d", &s.cursor.seq, &s.cursor.off)
	}
	return nil
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

// rotate starts a new segment for writing. The finished one is synced
// first, and the new one's directory entry after its creation.
func (s *Spool) rotate() error {
	if s.file != nil {
		// Records are written whole or cut off (see Append): a sync or close
		// error leaves nothing to mend, and must not stop the new segment.
		_ = s.Sync()
		_ = s.file.Close()
		s.file = nil
	}
	seq := uint64(firstSeq)
	if n := len(s.segments); n > 0 {
		seq = max(s.segments[n-1].seq+1, firstSeq)
	}
	f, err := os.OpenFile(s.path(seq), os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	s.file = f
	s.segments = append(s.segments, &segment{seq: seq})
	return syncDir(s.dir)
}

// Sync writes what was appended since the last Sync through to the disk.
func (s *Spool) Sync() error {
	if !s.dirty || s.file == nil {
		return nil
	}
	s.dirty = false
	s.Syncs++
	return s.file.Sync()
}

// Dirty reports whether something was appended since the last Sync.
func (s *Spool) Dirty() bool { return s.dirty }

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// SetMaxBytes changes the spool's bound (a reloaded spool_size); a spool
// over it drops its oldest at the next Append.
func (s *Spool) SetMaxBytes(n int64) {
	if n > 0 {
		s.maxBytes = n
	}
}

// Dir is the spool's directory.
func (s *Spool) Dir() string { return s.dir }

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

func encodeRecord(b cork.Batch, created time.Time) []byte {
	size := 12 + 4*len(b.Ends) + len(b.Data)
	rec := make([]byte, recordHeader+12+4*len(b.Ends), recordHeader+size)
	payload := rec[recordHeader:]
	binary.LittleEndian.PutUint64(payload, uint64(created.UnixNano()))
	binary.LittleEndian.PutUint32(payload[8:], uint32(len(b.Ends)))
	for i, e := range b.Ends {
		binary.LittleEndian.PutUint32(payload[12+4*i:], uint32(e))
	}
	rec = append(rec, b.Data...)
	binary.LittleEndian.PutUint32(rec, uint32(size))
	binary.LittleEndian.PutUint32(rec[4:], crc32.Checksum(rec[recordHeader:], castagnoli))
	return rec
}

// Append writes a batch at the end of the spool. It returns how many
// points it had to drop from the oldest segments to stay within its size.
func (s *Spool) Append(b cork.Batch, created time.Time) (dropped int, err error) {
	rec := encodeRecord(b, created)
	last := s.segments[len(s.segments)-1]
	if last.size > 0 && last.size+int64(len(rec)) > s.segmentMax {
		if err := s.rotate(); err != nil {
			return 0, err
		}
		last = s.segments[len(s.segments)-1]
	}
	if _, err := s.file.Write(rec); err != nil {
		// A short write would end the segment's reading at its tear, and
		// every record after it with it: cut it off, start a new segment.
		s.file.Truncate(last.size)
		if rerr := s.rotate(); rerr != nil {
			return 0, errors.Join(err, rerr)
		}
		return 0, err
	}
	last.size += int64(len(rec))
	s.bytes += int64(len(rec))
	s.dirty = true
	for s.bytes > s.maxBytes && len(s.segments) > 1 {
		n, err := s.dropOldest()
		dropped += n
		if err != nil {
			return dropped, err
		}
	}
	return dropped, nil
}

// Prepend writes batches in front of everything the spool holds, in the
// order given: for batches older than all of it (those shutdown finds in
// hand or in the memory queue's place).
func (s *Spool) Prepend(batches []cork.Batch, created time.Time) error {
	if len(batches) == 0 {
		return nil
	}
	seq := s.segments[0].seq - 1
	var data []byte
	for _, b := range batches {
		data = append(data, encodeRecord(b, created)...)
	}
	if err := writeSynced(s.path(seq), data); err != nil {
		return err
	}
	s.segments = append([]*segment{{seq: seq, size: int64(len(data))}}, s.segments...)
	s.bytes += int64(len(data))
	s.Syncs++
	return syncDir(s.dir)
}

func writeSynced(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// dropOldest deletes the oldest segment, and its cursor with it (Prepend
// may give a later segment the same number), and returns how many points it
// still held that had not been handed out.
func (s *Spool) dropOldest() (int, error) {
	seg := s.segments[0]
	points := 0
	if seg.seq == s.readSeq && s.readBuf != nil {
		// The batch Peek handed out is still being delivered.
		points = countPoints(s.readBuf[s.readNext:])
		s.readBuf, s.readOff, s.readNext, s.readSeq = nil, 0, 0, 0
	} else if data, err := os.ReadFile(s.path(seg.seq)); err == nil {
		if s.cursor.seq == seg.seq && s.cursor.off <= len(data) {
			data = data[s.cursor.off:] // delivered before a restart
		}
		points = countPoints(data)
	}
	return points, s.remove(0)
}

// countPoints counts the points in the well-formed records at the start of
// data.
func countPoints(data []byte) int {
	n := 0
	for {
		b, _, next, good := decodeRecord(data)
		if !good {
			return n
		}
		n += b.Len()
		data = data[next:]
	}
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
		s.Damaged++
		if err := s.finishSegment(); err != nil {
			return cork.Batch{}, time.Time{}, false, err
		}
	}
}

// Ack removes the batch Peek returned, and notes how far the segment is
// delivered.
func (s *Spool) Ack() error {
	s.readOff = s.readNext
	if s.readOff >= len(s.readBuf) {
		return s.finishSegment()
	}
	s.cursor.seq, s.cursor.off = s.readSeq, s.readOff
	return s.saveCursor()
}

func (s *Spool) saveCursor() error {
	tmp := filepath.Join(s.dir, "cursor.tmp")
	if err := os.WriteFile(tmp, fmt.Appendf(nil, "%d %d\n", s.cursor.seq, s.cursor.off), 0o640); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(s.dir, "cursor"))
}

// loadOldest reads the oldest segment with data, from the cursor when an
// earlier run left one in it. A segment still being written is closed
// first, so that what is read no longer changes. An unreadable segment is
// counted as damage and skipped.
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
			s.Damaged++
			if err := s.remove(0); err != nil {
				return false, err
			}
			continue
		}
		s.readSeq, s.readBuf, s.readOff, s.readNext = seg.seq, data, 0, 0
		if s.cursor.seq == seg.seq && s.cursor.off <= len(data) {
			s.readOff = s.cursor.off
		}
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
	if s.cursor.seq == seg.seq {
		s.cursor.seq, s.cursor.off = 0, 0
		os.Remove(filepath.Join(s.dir, "cursor"))
	}
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
	if size < 12 || len(data)-recordHeader < size {
		return b, created, 0, false
	}
	payload := data[recordHeader : recordHeader+size]
	if crc32.Checksum(payload, castagnoli) != binary.LittleEndian.Uint32(data[4:]) {
		return b, created, 0, false
	}
	created = time.Unix(0, int64(binary.LittleEndian.Uint64(payload)))
	n := int(binary.LittleEndian.Uint32(payload[8:]))
	if n > (size-12)/4 {
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
	if prev != len(b.Data) {
		return cork.Batch{}, created, 0, false
	}
	return b, created, recordHeader + size, true
}

// Close syncs and closes the segment being written and releases the
// directory.
func (s *Spool) Close() error {
	var err error
	if s.file != nil {
		err = errors.Join(s.Sync(), s.file.Close())
		s.file = nil
	}
	if s.lock != nil {
		s.lock.Close() // releases the flock
		s.lock = nil
	}
	return err
}

// DirName is the directory, under a spool_dir, of the sink that writes to
// target (its kind, a space, its address: "graphite 127.0.0.1:2003") in
// shape (what it writes there: a graphite layout, say). It does not depend
// on the sink's place in the configuration, so reordering or adding sinks
// never hands one backend's data to another.
func DirName(target, shape string) string {
	sum := sha256.Sum256([]byte(target + "\x00" + shape))
	kind, _, _ := strings.Cut(target, " ")
	return kind + "-" + hex.EncodeToString(sum[:6])
}

// Orphan is a spool that holds data no configured sink will deliver: what
// a sink whose target or shape changed left behind.
type Orphan struct {
	Dir   string
	Sink  string // from its meta file; "" when it has none
	Bytes int64
}

// Orphans lists the spools under the roots that hold data and are not in
// used (directories of configured sinks).
func Orphans(roots, used []string) []Orphan {
	inUse := map[string]bool{}
	for _, d := range used {
		inUse[filepath.Clean(d)] = true
	}
	var out []Orphan
	for _, root := range roots {
		entries, _ := os.ReadDir(root)
		for _, e := range entries {
			dir := filepath.Join(root, e.Name())
			if !e.IsDir() || inUse[dir] {
				continue
			}
			o := Orphan{Dir: dir}
			segments, _ := os.ReadDir(dir)
			for _, seg := range segments {
				if _, ok := segmentSeq(seg); ok {
					if info, err := seg.Info(); err == nil {
						o.Bytes += info.Size()
					}
				}
			}
			if o.Bytes == 0 {
				continue
			}
			var m meta
			if b, err := os.ReadFile(filepath.Join(dir, metaFile)); err == nil && json.Unmarshal(b, &m) == nil {
				o.Sink = m.Sink
			}
			out = append(out, o)
		}
	}
	return out
}
