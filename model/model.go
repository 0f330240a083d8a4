package model

import (
	"hash/maphash"
	"log/slog"
	"math"
	"runtime/debug"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/statsbridge/statsbridge/cork"
	"github.com/statsbridge/statsbridge/ingest"
	"github.com/statsbridge/statsbridge/throttle"
)

// Options bound and tune a Model.
type Options struct {
	MaxSeries          int
	MaxSeriesPerFamily int
	// MaxLabels, MaxNameLength and MaxLabelValueLength bound a series'
	// labels; 0 means no bound.
	MaxLabels           int
	MaxNameLength       int
	MaxLabelValueLength int
	// SeriesTTL removes series that received nothing for this long; 0 keeps
	// them for ever. A mapping may set its own.
	SeriesTTL time.Duration
	// Percentiles are the thresholds of the interval statistics (Etsy's
	// percentThreshold).
	Percentiles []float64
	// ExactTimerValues is how many values of one series and interval are
	// kept for exact statistics; past it a DDSketch takes over.
	ExactTimerValues int
	// ExactSetMembers is how many members of one set and interval are
	// counted exactly; past it a HyperLogLog sketch takes over.
	ExactSetMembers int
	// Observers is what timers, histograms and distributions become when
	// no mapping says otherwise.
	Observers ObserverDefaults
	// Mappers map names before the default mapping, in order.
	Mappers []Mapper
	Logger  *slog.Logger
	// Events throttles per-event log lines (refused samples); nil makes a
	// throttle of the model's own.
	Events *throttle.Log
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// limits is what Series.apply needs of the options.
type limits struct {
	exactTimerValues int
	exactSetMembers  int
}

// DropReason says why a sample did not reach a series.
type DropReason uint8

// The reasons the model drops a sample or refuses a series.
const (
	DropMapping            DropReason = iota // a mapping's action: drop
	DropMaxSeries                            // limits.max_series reached
	DropMaxSeriesPerFamily                   // limits.max_series_per_family reached
	DropTooManyLabels                        // limits.max_labels
	DropNameTooLong                          // limits.max_name_length
	DropLabelValueTooLong                    // limits.max_label_value_length
	// DropNonFinite: applying the sample would have made the series'
	// state infinite or NaN (a huge value, a tiny sample rate).
	DropNonFinite
	// DropMaxBuckets: a bucket line of a histogram that arrives in parts
	// names a bound past the 64 its series may know.
	DropMaxBuckets
	numDropReasons
)

var dropReasonNames = [numDropReasons]string{
	"mapping_drop", "max_series", "max_series_per_family", "max_labels", "name_too_long", "label_value_too_long",
	"non_finite", "max_buckets",
}

func (r DropReason) String() string { return dropReasonNames[r] }

// SeriesLimit reports whether the reason is a cap on the number of series
// (counted as dropped series) rather than a refused sample.
func (r DropReason) SeriesLimit() bool { return r == DropMaxSeries || r == DropMaxSeriesPerFamily }

// DropReasons lists every reason the model drops a sample.
func DropReasons() []DropReason {
	rs := make([]DropReason, numDropReasons)
	for i := range rs {
		rs[i] = DropReason(i)
	}
	return rs
}

const cacheShards = 64

// Model is the registry of families and series. Readers apply samples
// through Writers without a global lock: a name is looked up in a sharded
// cache and the series has a lock of its own. Only a name seen for the first
// time takes the registry lock.
type Model struct {
	opts    Options
	limits  limits
	now     func() time.Time
	seeds   [2]maphash.Seed
	mappers atomic.Pointer[mapperSet]

	cache [cacheShards]cacheShard
	// boundLimit and refusedLimit bound each shard's entries. The entries
	// have a fixed size, however long the names, so this bounds the
	// cache in bytes too.
	boundLimit, refusedLimit int

	mu       sync.RWMutex
	families map[string]*familyEntry
	byID     map[string]*Series
	nseries  atomic.Int64 // written under mu; read without it

	dropped    [numDropReasons]atomic.Uint64
	conflicts  atomic.Uint64
	labelFixes [numLabelFixes]atomic.Uint64
	// The refusals' log lines: the counters have no family label, as that
	// label would grow without bound exactly when a limit bites.
	conflictLog, dropLog, fixLog *throttle.Event
}

type mapperSet struct {
	mappers    []Mapper
	observers  ObserverDefaults
	generation uint32
}

// cacheKey stands for a raw StatsD key (type, name and tags as sent): two
// 64-bit hashes of it with random seeds. The cache never holds the key
// itself, so a name costs the same however long it is; two keys are taken
// for one only if both hashes collide, which takes about 2^64 names.
type cacheKey struct{ lo, hi uint64 }

// cacheShard is one part of the name cache. Both maps are keyed by the
// first hash (a map keyed by a uint64 is several times faster than one
// keyed by a pair). bound holds the names bound to a series, each binding
// with the second hash to tell names apart. refused holds refused names by
// the first hash alone, the cheaper the better as a flood of refused names
// is what it must survive: with n refusals held, a new name is taken for a
// refused one (and refused until that refusal is forgotten) with
// probability n/2^64.
type cacheShard struct {
	mu      sync.RWMutex
	bound   map[uint64]binding
	refused map[uint64]refusal
}

func (sh *cacheShard) reset() {
	sh.mu.Lock()
	sh.bound, sh.refused = map[uint64]binding{}, map[uint64]refusal{}
	sh.mu.Unlock()
}

type familyEntry struct {
	family *Family
	kind   Kind
	series []*Series
}

// New returns an empty model.
func New(opts Options) *Model {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Events == nil {
		opts.Events = throttle.New(opts.Logger, time.Second)
	}
	if opts.ExactTimerValues <= 0 {
		opts.ExactTimerValues = 1000
	}
	if opts.ExactSetMembers <= 0 {
		opts.ExactSetMembers = 10000
	}
	if opts.Observers.Type == Unknown {
		opts.Observers = DefaultObservers
	}
	m := &Model{
		opts:     opts,
		limits:   limits{exactTimerValues: opts.ExactTimerValues, exactSetMembers: opts.ExactSetMembers},
		now:      opts.Now,
		seeds:    [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()},
		families: map[string]*familyEntry{},
		byID:     map[string]*Series{},
		// Four names per series hold Prosody's histograms (a name per
		// bucket); a refused name is remembered until as many names as
		// there may be series were refused after it.
		boundLimit:   max(4*opts.MaxSeries/cacheShards, 64),
		refusedLimit: max(opts.MaxSeries/cacheShards, 64),

		conflictLog: opts.Events.Event(slog.LevelWarn, "a sample's type conflicts with its family's; dropped"),
		dropLog:     opts.Events.Event(slog.LevelWarn, "dropped a sample"),
		fixLog:      opts.Events.Event(slog.LevelWarn, "renamed or dropped labels that would make a series invalid"),
	}
	if m.now == nil {
		m.now = time.Now
	}
	for i := range m.cache {
		m.cache[i].reset()
	}
	m.mappers.Store(&mapperSet{mappers: opts.Mappers, observers: opts.Observers, generation: 1})
	return m
}

// refusalMemory is how long a name refused at a series cap or for a type
// conflict stays refused before the model looks again (a series or family
// may have expired and made room). A mapping's drop and a label limit
// depend only on the name and the mappers, so they stay until a reload.
const refusalMemory = 10 * time.Second

// SetMappers replaces the mappers (a reloaded mapping file) and forgets every
// cached name, so that names map anew. Series already made keep their state.
func (m *Model) SetMappers(mappers []Mapper, observers ObserverDefaults) {
	next := &mapperSet{mappers: mappers, observers: observers, generation: m.mappers.Load().generation + 1}
	m.mappers.Store(next)
	// New maps free the memory (a cleared map keeps its size); the
	// generation makes a binding made with the old mappers while this runs
	// a miss.
	for i := range m.cache {
		m.cache[i].reset()
	}
}

// Writer applies samples to the model for one reader goroutine. It keeps the
// reader's scratch space, so that applying a sample to a series that exists
// allocates nothing.
type Writer struct {
	m          *Model
	key        []byte
	now        int64
	generation uint32
}

// NewWriter returns a Writer for one reader goroutine.
func (m *Model) NewWriter() *Writer { return &Writer{m: m} }

// Handle applies a batch of samples. It implements ingest.Handler.
func (w *Writer) Handle(batch []ingest.Sample) {
	w.now = w.m.now().UnixNano()
	w.generation = w.m.mappers.Load().generation
	for i := range batch {
		w.apply(&batch[i])
	}
}

func (w *Writer) apply(smp *ingest.Sample) {
	w.key = appendCacheKey(w.key[:0], smp)
	key := cacheKey{maphash.Bytes(w.m.seeds[0], w.key), maphash.Bytes(w.m.seeds[1], w.key)}
	shard := &w.m.cache[key.lo%cacheShards]
	shard.mu.RLock()
	b, bound := shard.bound[key.lo]
	bound = bound && b.hi == key.hi
	var r refusal
	var refused bool
	if !bound {
		r, refused = shard.refused[key.lo]
	}
	shard.mu.RUnlock()
	switch {
	case bound && b.generation == w.generation && w.applyTo(&b, smp):
		return
	case !bound && refused && r.generation == w.generation && w.now < r.until:
		w.m.countRefused(r, true)
		return
	}
	// A series can expire between its binding and its sample: bind again.
	for range 3 {
		b, ok := w.m.bind(shard, key, smp, w.now)
		if !ok || w.applyTo(&b, smp) {
			return
		}
	}
}

// applyTo applies a sample to the series b binds it to. It reports false
// when the series has expired, so the name must be bound again.
func (w *Writer) applyTo(b *binding, smp *ingest.Sample) bool {
	switch b.series.apply(b, smp, w.now, &w.m.limits) {
	case expired:
		return false
	case nonFinite:
		w.m.dropped[DropNonFinite].Add(1)
		w.m.dropLog.Log("reason", DropNonFinite.String(), "family", b.series.family.Name)
	}
	return true
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
// It reports false when the sample must be dropped.
func (m *Model) bind(shard *cacheShard, key cacheKey, smp *ingest.Sample, now int64) (binding, bool) {
	ms := m.mappers.Load()
	name := string(smp.Name)
	tags := tagLabels(smp.Tags)
	mapping := m.mapSample(ms, name, smp.Type, tags)
	refuse := func(r refusal) (binding, bool) {
		r.generation = ms.generation
		m.cacheRefusal(shard, key.lo, r)
		m.countRefused(r, false)
		m.logRefused(r, mapping.Family.Name, name)
		return binding{}, false
	}
	if mapping.Drop {
		return refuse(refusal{reason: DropMapping, until: math.MaxInt64})
	}
	m.settle(&mapping)
	if r, bad := m.checkLimits(&mapping); bad {
		return refuse(refusal{reason: r, until: math.MaxInt64})
	}
	id := identity(mapping.Family.Name, mapping.Labels)

	m.mu.Lock()
	s := m.byID[id]
	var r refusal
	switch {
	case s == nil:
		key := mapping.Key
		if key == "" {
			key = name
		}
		s, r = m.register(&mapping, key, settleLabels(tags, 0, Unknown, nil), id, now)
	case s.kind != mapping.Kind:
		s, r = nil, refusal{conflict: true}
	}
	m.mu.Unlock()
	if s == nil {
		r.until = now + int64(refusalMemory)
		return refuse(r)
	}
	part := mapping.Part
	if part == PartBucket {
		i, ok := s.bucketIndex(mapping.Bucket)
		if !ok {
			return refuse(refusal{reason: DropMaxBuckets, until: now + int64(refusalMemory)})
		}
		part = Part(i)
	}
	b := binding{series: s, hi: key.hi, part: part, scale: mapping.Scale, generation: ms.generation,
		toSeconds: smp.Type == ingest.Timer && mapping.Kind.Observes()}
	shard.mu.Lock()
	if len(shard.bound) >= m.boundLimit {
		for k := range shard.bound { // evict one at random
			delete(shard.bound, k)
			break
		}
	}
	shard.bound[key.lo] = b
	shard.mu.Unlock()
	return b, true
}

// settle makes a mapping's labels valid (see settleLabels) and counts what
// that changed.
func (m *Model) settle(mp *Mapping) {
	var fixes [numLabelFixes]uint64
	mp.Labels = settleLabels(mp.Labels, len(mp.Family.LabelNames), mp.Family.Type, &fixes)
	if fixes == ([numLabelFixes]uint64{}) {
		return
	}
	for r, n := range fixes {
		m.labelFixes[r].Add(n)
	}
	m.fixLog.Log("family", mp.Family.Name, "le", fixes[FixLE], "quantile", fixes[FixQuantile],
		"reserved_prefix", fixes[FixReservedPrefix], "duplicate", fixes[FixDuplicate])
}

func (m *Model) cacheRefusal(shard *cacheShard, key uint64, r refusal) {
	shard.mu.Lock()
	if len(shard.refused) >= m.refusedLimit {
		for k := range shard.refused { // evict one at random
			delete(shard.refused, k)
			break
		}
	}
	shard.refused[key] = r
	shard.mu.Unlock()
}

// mapSample runs the mappers in order, then the default mapping.
func (m *Model) mapSample(ms *mapperSet, name string, t ingest.Type, tags Labels) Mapping {
	for _, mp := range ms.mappers {
		if mapping, ok := mp.Map(name, t, tags); ok {
			return mapping
		}
	}
	return defaultMapping(name, t, tags, ms.observers)
}

func (m *Model) checkLimits(mp *Mapping) (DropReason, bool) {
	o := &m.opts
	switch {
	case o.MaxLabels > 0 && len(mp.Labels) > o.MaxLabels:
		return DropTooManyLabels, true
	case o.MaxNameLength > 0 && len(mp.Family.Name) > o.MaxNameLength:
		return DropNameTooLong, true
	}
	if o.MaxLabelValueLength > 0 {
		for _, l := range mp.Labels {
			if len(l.Value) > o.MaxLabelValueLength {
				return DropLabelValueTooLong, true
			}
		}
	}
	return 0, false
}

// register creates a series (and its family when new). m.mu is held. A name
// whose family exists with another kind or shape is a conflict: the family
// stays as it is. A refused series returns nil and the refusal.
func (m *Model) register(mp *Mapping, key string, tags Labels, id string, now int64) (*Series, refusal) {
	fe := m.families[mp.Family.Name]
	switch {
	case fe != nil && (fe.kind != mp.Kind || mp.Kind != KindPrebucketed && !fe.family.sameShape(&mp.Family)):
		return nil, refusal{conflict: true}
	case m.nseries.Load() >= int64(m.opts.MaxSeries):
		return nil, refusal{reason: DropMaxSeries}
	case fe != nil && len(fe.series) >= m.opts.MaxSeriesPerFamily:
		return nil, refusal{reason: DropMaxSeriesPerFamily}
	}
	if fe == nil {
		f := mp.Family
		fe = &familyEntry{family: &f, kind: mp.Kind}
		m.families[f.Name] = fe
	}
	// lastSeen starts at now so that an expiry running before the first
	// sample is applied cannot take the series away.
	s := newSeries(fe.family, mp.Kind, mp.Labels, key, tags, mp.TTL, now, mp.Guesses)
	fe.series = append(fe.series, s)
	m.byID[id] = s
	m.nseries.Add(1)
	return s, refusal{}
}

// countRefused counts a sample that r refuses. A conflict, a mapping's drop
// and a label limit count every sample; a series cap counts the series it
// refused, so a remembered refusal at a cap counts nothing.
func (m *Model) countRefused(r refusal, remembered bool) {
	switch {
	case r.conflict:
		m.conflicts.Add(1)
	case r.reason.SeriesLimit() && remembered:
	default:
		m.dropped[r.reason].Add(1)
	}
}

// logRefused logs a refusal with the family it concerned (the name as sent
// for a mapping's drop), through the throttle.
func (m *Model) logRefused(r refusal, family, name string) {
	switch {
	case r.conflict:
		m.conflictLog.Log("family", family)
	case r.reason == DropMapping:
		m.dropLog.Log("reason", r.reason.String(), "family", name)
	default:
		m.dropLog.Log("reason", r.reason.String(), "family", family)
	}
}

// Dropped returns how many samples were dropped for a reason.
func (m *Model) Dropped(r DropReason) uint64 { return m.dropped[r].Load() }

// LabelFixCount returns how many labels were renamed or dropped for a
// reason to keep their series valid. Labels are settled as a name is mapped,
// so a name is counted when it is first seen (and again should it fall out
// of the name cache), not for each of its samples.
func (m *Model) LabelFixCount(r LabelFix) uint64 { return m.labelFixes[r].Load() }

// Conflicts returns how many samples conflicted with their family's type.
func (m *Model) Conflicts() uint64 { return m.conflicts.Load() }

// Register adds a series whose value is read from elsewhere when the model is
// flushed or scraped: statsbridge's own metrics. key is its StatsD name, for
// the Graphite layouts that write one: it must tell the series apart from
// the family's others, as no line's name carries its labels. A counter's
// read must never decrease. Self-metrics do not count against the series
// limits.
func (m *Model) Register(fam Family, key string, labels Labels, read func() float64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	id := identity(fam.Name, labels)
	if m.byID[id] != nil {
		return
	}
	kind := KindGauge
	if fam.Type == Counter {
		kind = KindCounter
	}
	fe := m.families[fam.Name]
	if fe == nil {
		f := fam
		fe = &familyEntry{family: &f, kind: kind}
		m.families[fam.Name] = fe
	}
	s := newSeries(fe.family, kind, labels, key, nil, 0, m.now().UnixNano(), nil)
	s.read = read
	fe.series = append(fe.series, s)
	m.byID[id] = s
}

// Series returns how many series the model holds (self-metrics aside).
func (m *Model) Series() int { return int(m.nseries.Load()) }

// Flush is one flush interval's snapshot: a point for every live series.
// The points, and what they point to, are valid until the Flush is
// collected into again.
type Flush struct {
	cork.Interval
	Points []Point
	arena  snapshotter
}

// Collect ends the interval: it fills f with a point for every live series,
// family by family in name order, and starts the next interval. Series idle
// for longer than their TTL are removed afterwards.
func (m *Model) Collect(f *Flush) {
	f.Points = f.Points[:0]
	f.arena.reset()
	f.arena.percentiles = m.opts.Percentiles
	f.arena.now = f.End.UnixNano()
	m.gather(func(_ *Family, series []*Series) {
		for _, s := range series {
			f.Points = append(f.Points, Point{})
			f.arena.take(s, &f.Points[len(f.Points)-1], true)
		}
	})
	m.expire(f.End.UnixNano())
}

// Gather calls fn for every family, in name order, with the current points
// of its series. It does not end the interval: it is for scrapes.
func (m *Model) Gather(fn func(f *Family, points []Point)) {
	var points []Point
	sn := snapshotter{now: m.now().UnixNano()}
	m.gather(func(f *Family, series []*Series) {
		points = points[:0]
		sn.reset()
		for _, s := range series {
			points = append(points, Point{})
			sn.take(s, &points[len(points)-1], false)
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

// expire removes series whose TTL passed without a sample. A counter that
// comes back starts again with a new created time, so Prometheus sees a
// proper reset.
func (m *Model) expire(now int64) {
	m.mu.Lock()
	before := len(m.byID)
	removed := 0
	for name, fe := range m.families {
		kept := fe.series[:0]
		for _, s := range fe.series {
			ttl := s.ttl
			if ttl == 0 {
				ttl = m.opts.SeriesTTL
			}
			if ttl > 0 && s.expireIfIdle(now-int64(ttl)) {
				delete(m.byID, identity(name, s.labels))
				m.nseries.Add(-1)
				removed++
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
	// Go's maps never shrink: after a mass expiry they would hold the
	// memory of every series that went. Built anew, they are sized to what
	// is left.
	mass := removed >= massExpiry && removed >= before/4
	if mass {
		m.families = resized(m.families)
		m.byID = resized(m.byID)
		for _, fe := range m.families {
			fe.series = slices.Clone(fe.series)
		}
	}
	m.mu.Unlock()
	if removed == 0 {
		return
	}
	for i := range m.cache {
		sh := &m.cache[i]
		sh.mu.Lock()
		for k, b := range sh.bound {
			if b.series.removed.Load() {
				delete(sh.bound, k)
			}
		}
		if mass {
			sh.bound, sh.refused = resized(sh.bound), resized(sh.refused)
		}
		sh.mu.Unlock()
	}
	if mass {
		// Hand the freed pages back to the system now: a mass expiry is
		// rare, and an operator watching RSS expects it to fall.
		debug.FreeOSMemory()
	}
}

// resized copies a map into one sized to what it holds. (maps.Clone copies
// the size as well.)
func resized[K comparable, V any](m map[K]V) map[K]V {
	n := make(map[K]V, len(m))
	for k, v := range m {
		n[k] = v
	}
	return n
}

// massExpiry is how many series must expire at once (and at least a
// quarter of them) for the model to rebuild its maps.
const massExpiry = 4096
