package model

import (
	"hash/maphash"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/statsbridge/statsbridge/cork"
	"github.com/statsbridge/statsbridge/ingest"
)

// Options bound and tune a Model.
type Options struct {
	MaxSeries          int
	MaxSeriesPerFamily int
	// SeriesTTL removes series that received nothing for this long; 0 keeps
	// them for ever.
	SeriesTTL time.Duration
	Logger    *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// DropReason says why a sample did not reach a series.
type DropReason uint8

// The reasons the model drops a sample.
const (
	DropUnsupportedType    DropReason = iota // a StatsD type this build does not aggregate
	DropTypeConflict                         // the family exists with another type
	DropMaxSeries                            // limits.max_series reached
	DropMaxSeriesPerFamily                   // limits.max_series_per_family reached
	numDropReasons
)

var dropReasonNames = [numDropReasons]string{
	"unsupported_type", "type_conflict", "max_series", "max_series_per_family",
}

func (r DropReason) String() string { return dropReasonNames[r] }

const cacheShards = 64

// Model is the registry of families and series. Readers apply samples
// through Writers without a global lock: a name is looked up in a sharded
// cache and the series has a lock of its own. Only a name seen for the first
// time takes the registry lock.
type Model struct {
	opts Options
	now  func() time.Time
	seed maphash.Seed

	cache [cacheShards]cacheShard

	mu       sync.RWMutex
	families map[string]*familyEntry
	byID     map[string]*Series
	nseries  int

	dropped [numDropReasons]atomic.Uint64
	logged  atomic.Int64 // unix seconds of the last drop logged
}

type cacheShard struct {
	mu sync.RWMutex
	m  map[string]*Series
}

type familyEntry struct {
	family *Family
	series []*Series
}

// New returns an empty model.
func New(opts Options) *Model {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	m := &Model{
		opts:     opts,
		now:      opts.Now,
		seed:     maphash.MakeSeed(),
		families: map[string]*familyEntry{},
		byID:     map[string]*Series{},
	}
	if m.now == nil {
		m.now = time.Now
	}
	for i := range m.cache {
		m.cache[i].m = map[string]*Series{}
	}
	return m
}

// Writer applies samples to the model for one reader goroutine. It keeps the
// reader's scratch space, so that applying a sample to a series that exists
// allocates nothing.
type Writer struct {
	m   *Model
	key []byte
}

// NewWriter returns a Writer for one reader goroutine.
func (m *Model) NewWriter() *Writer { return &Writer{m: m} }

// Handle applies a batch of samples. It implements ingest.Handler.
func (w *Writer) Handle(batch []ingest.Sample) {
	now := w.m.now().UnixNano()
	for i := range batch {
		w.apply(&batch[i], now)
	}
}

func (w *Writer) apply(smp *ingest.Sample, now int64) {
	w.key = appendCacheKey(w.key[:0], smp)
	shard := &w.m.cache[maphash.Bytes(w.m.seed, w.key)%cacheShards]
	shard.mu.RLock()
	s := shard.m[string(w.key)]
	shard.mu.RUnlock()
	if s != nil && s.apply(smp, now) {
		return
	}
	s = w.m.bind(shard, w.key, smp, now)
	if s != nil {
		s.apply(smp, now)
	}
}

// appendCacheKey writes what identifies a line's series before mapping: its
// type, name and tags as sent.
func appendCacheKey(b []byte, smp *ingest.Sample) []byte {
	b = append(b, byte(smp.Type))
	b = append(b, smp.Name...)
	for _, t := range smp.Tags {
		b = append(b, 0x1e)
		b = append(b, t.Key...)
		b = append(b, 0x1f)
		b = append(b, t.Value...)
	}
	return b
}

// bind maps a name seen for the first time (or again after it expired) to
// its series, creating family and series as needed, and caches the result.
func (m *Model) bind(shard *cacheShard, key []byte, smp *ingest.Sample, now int64) *Series {
	fam, labels, tags, ok := m.mapSample(smp)
	if !ok {
		return nil
	}
	id := identity(fam.Name, labels)

	m.mu.Lock()
	s := m.byID[id]
	if s == nil {
		s = m.register(fam, labels, string(smp.Name), tags, id, now)
	} else if s.family.Type != fam.Type {
		s = nil
		m.drop(DropTypeConflict, fam.Name)
	}
	m.mu.Unlock()
	if s == nil {
		return nil
	}
	shard.mu.Lock()
	shard.m[string(key)] = s
	shard.mu.Unlock()
	return s
}

// mapSample turns a StatsD line into a family and labels: the name,
// sanitised, is the family; tags are labels.
func (m *Model) mapSample(smp *ingest.Sample) (Family, Labels, Labels, bool) {
	var typ Type
	switch smp.Type {
	case ingest.Counter:
		typ = Counter
	case ingest.Gauge:
		typ = Gauge
	default:
		m.drop(DropUnsupportedType, string(smp.Name))
		return Family{}, nil, nil, false
	}
	name := SanitizeMetricName(string(smp.Name))
	if typ == Counter {
		// The exposition adds _total; a name that has it already would
		// otherwise be exposed as name_total_total.
		if trimmed := strings.TrimSuffix(name, "_total"); trimmed != "" {
			name = trimmed
		}
	}
	tags := tagLabels(smp.Tags)
	return Family{Name: name, Type: typ, Help: "StatsD " + smp.Type.String() + " " + string(smp.Name)}, tags, tags, true
}

// tagLabels turns a line's tags into labels sorted by name. A later tag
// overrides an earlier one of the same name; a tag with an empty value is no
// label at all, as in Prometheus.
func tagLabels(tags []ingest.Tag) Labels {
	if len(tags) == 0 {
		return nil
	}
	ls := make(Labels, 0, len(tags))
	for _, t := range tags {
		name := SanitizeLabelName(string(t.Key))
		ls = slices.DeleteFunc(ls, func(l Label) bool { return l.Name == name })
		if len(t.Value) > 0 {
			ls = append(ls, Label{Name: name, Value: string(t.Value)})
		}
	}
	sort.Slice(ls, func(i, j int) bool { return ls[i].Name < ls[j].Name })
	return ls
}

// register creates a series (and its family when new). m.mu is held.
func (m *Model) register(fam Family, labels Labels, key string, tags Labels, id string, now int64) *Series {
	fe := m.families[fam.Name]
	switch {
	case fe != nil && fe.family.Type != fam.Type:
		m.drop(DropTypeConflict, fam.Name)
		return nil
	case m.nseries >= m.opts.MaxSeries:
		m.drop(DropMaxSeries, fam.Name)
		return nil
	case fe != nil && len(fe.series) >= m.opts.MaxSeriesPerFamily:
		m.drop(DropMaxSeriesPerFamily, fam.Name)
		return nil
	}
	if fe == nil {
		f := fam
		fe = &familyEntry{family: &f}
		m.families[fam.Name] = fe
	}
	// lastSeen starts at now so that an expiry running before the first
	// sample is applied cannot take the series away.
	s := &Series{family: fe.family, labels: labels, key: key, tags: tags, created: time.Unix(0, now), lastSeen: now}
	fe.series = append(fe.series, s)
	m.byID[id] = s
	m.nseries++
	return s
}

// drop counts a dropped sample and logs the family it concerned, at most once
// a second: the counter has no family label, as that label would grow
// without bound exactly when a limit bites.
func (m *Model) drop(r DropReason, family string) {
	m.dropped[r].Add(1)
	now := m.now().Unix()
	if last := m.logged.Load(); now > last && m.logged.CompareAndSwap(last, now) {
		m.opts.Logger.Warn("dropped a sample", "reason", r.String(), "family", family)
	}
}

// Dropped returns how many samples were dropped for a reason.
func (m *Model) Dropped(r DropReason) uint64 { return m.dropped[r].Load() }

// DropReasons lists every reason the model drops a sample.
func DropReasons() []DropReason {
	rs := make([]DropReason, numDropReasons)
	for i := range rs {
		rs[i] = DropReason(i)
	}
	return rs
}

// Register adds a series whose value is read from elsewhere when the model is
// flushed or scraped: statsbridge's own metrics. A counter's read must never
// decrease.
func (m *Model) Register(fam Family, labels Labels, read func() float64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	id := identity(fam.Name, labels)
	if m.byID[id] != nil {
		return
	}
	fe := m.families[fam.Name]
	if fe == nil {
		f := fam
		fe = &familyEntry{family: &f}
		m.families[fam.Name] = fe
	}
	s := &Series{family: fe.family, labels: labels, key: fam.Name, created: m.now(), read: read}
	fe.series = append(fe.series, s)
	m.byID[id] = s
}

// Series returns how many series the model holds.
func (m *Model) Series() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.nseries
}

// Flush is one flush interval's snapshot: a point for every live series.
type Flush struct {
	cork.Interval
	Points []Point
}

// Collect ends the interval: it fills f with a point for every live series
// and starts the next interval. Series idle for longer than the TTL are
// removed afterwards.
func (m *Model) Collect(f *Flush) {
	f.Points = f.Points[:0]
	m.gather(func(_ *Family, series []*Series) {
		for _, s := range series {
			f.Points = append(f.Points, Point{})
			s.snapshot(&f.Points[len(f.Points)-1], true)
		}
	})
	if m.opts.SeriesTTL > 0 {
		m.expire(f.End.Add(-m.opts.SeriesTTL).UnixNano())
	}
}

// Gather calls fn for every family, in name order, with the current points
// of its series. It does not end the interval: it is for scrapes.
func (m *Model) Gather(fn func(f *Family, points []Point)) {
	var points []Point
	m.gather(func(f *Family, series []*Series) {
		points = slices.Grow(points[:0], len(series))[:len(series)]
		for i, s := range series {
			s.snapshot(&points[i], false)
		}
		fn(f, points)
	})
}

// gather calls fn for every family in name order, with a copy of its series
// list taken under the registry lock.
func (m *Model) gather(fn func(f *Family, series []*Series)) {
	m.mu.RLock()
	names := make([]string, 0, len(m.families))
	for name := range m.families {
		names = append(names, name)
	}
	m.mu.RUnlock()
	sort.Strings(names)
	var series []*Series
	for _, name := range names {
		m.mu.RLock()
		fe := m.families[name]
		if fe != nil {
			series = append(series[:0], fe.series...)
		}
		m.mu.RUnlock()
		if fe != nil && len(series) > 0 {
			fn(fe.family, series)
		}
	}
}

// expire removes series that saw no sample since before (unix nanoseconds).
func (m *Model) expire(before int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for name, fe := range m.families {
		kept := fe.series[:0]
		for _, s := range fe.series {
			if s.idleSince(before) {
				s.removed.Store(true)
				delete(m.byID, identity(name, s.labels))
				m.nseries--
				continue
			}
			kept = append(kept, s)
		}
		clear(fe.series[len(kept):])
		fe.series = kept
		if len(kept) == 0 {
			delete(m.families, name)
		}
	}
	for i := range m.cache {
		sh := &m.cache[i]
		sh.mu.Lock()
		for k, s := range sh.m {
			if s.removed.Load() {
				delete(sh.m, k)
			}
		}
		sh.mu.Unlock()
	}
}
