package model

import (
	"context"
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
	// Events throttles per-event log lines (refused samples, and each new
	// name at debug level); nil makes a throttle of the model's own.
	Events *throttle.Log
	// Tap, when set, is shown every batch while it watches.
	Tap Tap
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Tap watches what the model receives (statsbridge tap). Watching is asked
// once a batch, so it must cost no more than an atomic load; Samples must
// never block, and must not keep the samples, whose bytes are reused.
type Tap interface {
	Watching() bool
	Samples(batch []ingest.Sample)
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
	opts     Options // what a reload does not change: logger, throttle, tap, clock
	now      func() time.Time
	seeds    [2]maphash.Seed
	settings atomic.Pointer[settings]

	cache [cacheShards]cacheShard

	mu       sync.RWMutex
	families map[string]*familyEntry
	byID     map[string]*Series
	nseries  atomic.Int64 // written under mu; read without it

	// ownFamilies are the families that hold statsbridge's own series
	// (mu guards it).
	ownFamilies map[string]bool

	dropped    [numDropReasons]atomic.Uint64
	conflicts  atomic.Uint64
	labelFixes [numLabelFixes]atomic.Uint64
	// The refusals' log lines: the counters have no family label, as that
	// label would grow without bound exactly when a limit bites.
	conflictLog, dropLog, fixLog *throttle.Event
	// newNameLog shows, at debug level, each name as it is mapped.
	newNameLog *throttle.Event

	// nativeReductions counts native histograms' schema reductions past
	// their bucket cap, as flushes find them.
	nativeReductions atomic.Uint64
}

// settings are what a reload changes: the mappers and the limits. A Writer
// loads them once a batch.
type settings struct {
	mappers    []Mapper
	observers  ObserverDefaults
	generation uint32
	opts       Options // the limits; mappers and observers above
	limits     limits
	// boundLimit and refusedLimit bound each cache shard's entries. The
	// entries have a fixed size, however long the names, so this bounds
	// the cache in bytes too.
	boundLimit, refusedLimit int
}

func newSettings(opts Options, generation uint32) *settings {
	if opts.ExactTimerValues <= 0 {
		opts.ExactTimerValues = 1000
	}
	if opts.ExactSetMembers <= 0 {
		opts.ExactSetMembers = 10000
	}
	if opts.Observers.Type == Unknown {
		opts.Observers = DefaultObservers
	}
	return &settings{mappers: opts.Mappers, observers: opts.Observers, generation: generation, opts: opts,
		limits: limits{exactTimerValues: opts.ExactTimerValues, exactSetMembers: opts.ExactSetMembers},
		// Four names per series hold Prosody's histograms (a name per
		// bucket); a refused name is remembered until as many names as
		// there may be series were refused after it.
		boundLimit:   max(4*opts.MaxSeries/cacheShards, 64),
		refusedLimit: max(opts.MaxSeries/cacheShards, 64),
	}
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
	// own are statsbridge's own series (Register), kept apart: a sink may
	// leave them out, and they count against no limit.
	own []*Series
}

// New returns an empty model.
func New(opts Options) *Model {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Events == nil {
		opts.Events = throttle.New(opts.Logger, time.Second)
	}
	m := &Model{
		opts:     opts,
		now:      opts.Now,
		seeds:    [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()},
		families: map[string]*familyEntry{},
		byID:     map[string]*Series{},

		ownFamilies: map[string]bool{},

		conflictLog: opts.Events.Event(slog.LevelWarn, "a sample's type conflicts with its family's; dropped"),
		dropLog:     opts.Events.Event(slog.LevelWarn, "dropped a sample"),
		fixLog:      opts.Events.Event(slog.LevelWarn, "renamed or dropped labels that would make a series invalid"),
		newNameLog:  opts.Events.EventBurst(slog.LevelDebug, "a new name", newNamesPerSecond),
	}
	if m.now == nil {
		m.now = time.Now
	}
	for i := range m.cache {
		m.cache[i].reset()
	}
	m.settings.Store(newSettings(opts, 1))
	return m
}

// newNamesPerSecond bounds the debug log's new names: past it they are
// counted, and statsbridge tap shows them all.
const newNamesPerSecond = 50

// refusalMemory is how long a name refused at a series cap or for a type
// conflict stays refused before the model looks again (a series or family
// may have expired and made room). A mapping's drop and a label limit
// depend only on the name and the mappers, so they stay until a reload.
const refusalMemory = 10 * time.Second

// SetMappers replaces the mappers (a reloaded mapping file) and forgets every
// cached name, so that names map anew. Series already made keep their state.
func (m *Model) SetMappers(mappers []Mapper, observers ObserverDefaults) {
	opts := m.settings.Load().opts
	opts.Mappers, opts.Observers = mappers, observers
	m.Reconfigure(opts)
}

// Reconfigure applies a reloaded configuration: the mappers (opts.Mappers
// and opts.Observers) and the limits, series_ttl and statistics of opts.
// What it does not change is the model's logger, throttle, tap and clock.
// Every cached name is forgotten, so that names map anew under the new
// mappers and limits; series already made keep their state.
func (m *Model) Reconfigure(opts Options) {
	m.settings.Store(newSettings(opts, m.settings.Load().generation+1))
	// New maps free the memory (a cleared map keeps its size); the
	// generation makes a binding made with the old settings while this
	// runs a miss.
	for i := range m.cache {
		m.cache[i].reset()
	}
}

// Writer applies samples to the model for one reader goroutine. It keeps the
// reader's scratch space, so that applying a sample to a series that exists
// allocates nothing.
type Writer struct {
	m   *Model
	key []byte
	now int64
	set *settings // loaded once a batch
}

// NewWriter returns a Writer for one reader goroutine.
func (m *Model) NewWriter() *Writer { return &Writer{m: m} }

// Handle applies a batch of samples. It implements ingest.Handler.
func (w *Writer) Handle(batch []ingest.Sample) {
	if t := w.m.opts.Tap; t != nil && t.Watching() {
		t.Samples(batch)
	}
	w.now = w.m.now().UnixNano()
	w.set = w.m.settings.Load()
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
	case bound && b.generation == w.set.generation && w.applyTo(&b, smp):
		return
	case !bound && refused && r.generation == w.set.generation && w.now < r.until:
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
	switch b.series.apply(b, smp, w.now, &w.set.limits) {
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
	ms := m.settings.Load()
	name := string(smp.Name)
	tags := tagLabels(smp.Tags)
	mapping := m.mapSample(ms, name, smp.Type, tags, false)
	refuse := func(r refusal) (binding, bool) {
		r.generation = ms.generation
		m.cacheRefusal(shard, key.lo, r, ms.refusedLimit)
		m.countRefused(r, false)
		m.logRefused(r, mapping.Family.Name, name)
		m.logNewName(smp, &mapping, r.String())
		return binding{}, false
	}
	if mapping.Drop {
		return refuse(refusal{reason: DropMapping, until: math.MaxInt64})
	}
	m.settle(&mapping)
	if r, bad := checkLimits(&ms.opts, &mapping); bad {
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
		s, r = m.register(&ms.opts, &mapping, key, settleLabels(tags, 0, Unknown, nil), id, now)
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
	m.logNewName(smp, &mapping, "")
	b := binding{series: s, hi: key.hi, part: part, scale: mapping.Scale, generation: ms.generation,
		toSeconds: smp.Type == ingest.Timer && mapping.Kind.Observes()}
	shard.mu.Lock()
	if len(shard.bound) >= ms.boundLimit {
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

func (m *Model) cacheRefusal(shard *cacheShard, key uint64, r refusal, limit int) {
	shard.mu.Lock()
	if len(shard.refused) >= limit {
		for k := range shard.refused { // evict one at random
			delete(shard.refused, k)
			break
		}
	}
	shard.refused[key] = r
	shard.mu.Unlock()
}

// mapSample runs the mappers in order, then the default mapping. A dry run
// maps without counting (see DryMapper).
func (m *Model) mapSample(ms *settings, name string, t ingest.Type, tags Labels, dry bool) Mapping {
	for _, mp := range ms.mappers {
		var mapping Mapping
		var ok bool
		if dm, counts := mp.(DryMapper); dry && counts {
			mapping, ok = dm.DryMap(name, t, tags)
		} else {
			mapping, ok = mp.Map(name, t, tags)
		}
		if ok {
			return mapping
		}
	}
	mapping := defaultMapping(name, t, tags, ms.observers)
	mapping.Rule = DefaultRule
	return mapping
}

func checkLimits(o *Options, mp *Mapping) (DropReason, bool) {
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
func (m *Model) register(o *Options, mp *Mapping, key string, tags Labels, id string, now int64) (*Series, refusal) {
	fe := m.families[mp.Family.Name]
	switch {
	case fe != nil && (fe.kind != mp.Kind || mp.Kind != KindPrebucketed && !fe.family.sameShape(&mp.Family)):
		return nil, refusal{conflict: true}
	case m.nseries.Load() >= int64(o.MaxSeries):
		return nil, refusal{reason: DropMaxSeries}
	case fe != nil && len(fe.series) >= o.MaxSeriesPerFamily:
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

// logNewName writes, at debug level, a name the model just mapped and what
// it became (refused says why it was refused, "" when it was not), at most
// newNamesPerSecond lines a second.
func (m *Model) logNewName(smp *ingest.Sample, mp *Mapping, refused string) {
	if !m.opts.Logger.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	if !m.newNameLog.Due() {
		m.newNameLog.Log()
		return
	}
	args := []any{"name", string(smp.Name), "statsd_type", smp.Type.String(), "family", mp.Family.Name,
		"type", mp.Family.Type.String(), "labels", mp.Labels.String(), "rule", mp.Rule}
	if refused != "" {
		args = append(args, "refused", refused)
	}
	m.newNameLog.Log(args...)
}

// Decision is what the model makes of a name: the family, labels and kind
// of its series, or why its samples are refused, and what decided.
type Decision struct {
	Family Family
	Kind   Kind
	Labels Labels
	// Rule says what decided (see Mapping.Rule).
	Rule string
	// Refused says why the name's samples are dropped: a DropReason's
	// name, or "conflict" when its type conflicts with its family's. It is
	// "" for a name whose samples are applied.
	Refused string
}

// Explain maps a sample's name as the model would, without applying it,
// creating anything or counting: a dry run of the mapping, with the limits
// and the families the model holds now.
func (m *Model) Explain(smp *ingest.Sample) Decision {
	ms := m.settings.Load()
	mapping := m.mapSample(ms, string(smp.Name), smp.Type, tagLabels(smp.Tags), true)
	d := Decision{Family: mapping.Family, Kind: mapping.Kind, Rule: mapping.Rule}
	if mapping.Drop {
		d.Refused = DropMapping.String()
		return d
	}
	var fixes [numLabelFixes]uint64
	mapping.Labels = settleLabels(mapping.Labels, len(mapping.Family.LabelNames), mapping.Family.Type, &fixes)
	d.Labels = mapping.Labels
	if r, bad := checkLimits(&ms.opts, &mapping); bad {
		d.Refused = r.String()
		return d
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	fe := m.families[mapping.Family.Name]
	s := m.byID[identity(mapping.Family.Name, mapping.Labels)]
	switch {
	case fe != nil && (fe.kind != mapping.Kind || !fe.family.sameShape(&mapping.Family)),
		s != nil && s.kind != mapping.Kind:
		d.Refused = refusal{conflict: true}.String()
	case s != nil:
	case m.nseries.Load() >= int64(ms.opts.MaxSeries):
		d.Refused = DropMaxSeries.String()
	case fe != nil && len(fe.series) >= ms.opts.MaxSeriesPerFamily:
		d.Refused = DropMaxSeriesPerFamily.String()
	}
	return d
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
// limits, and come after every other series in a Flush (see Flush.Own).
func (m *Model) Register(fam Family, key string, labels Labels, read func() float64) {
	kind := KindGauge
	if fam.Type == Counter {
		kind = KindCounter
	}
	m.registerOwn(fam, kind, key, labels, &ownSource{value: read})
}

// RegisterSummary adds a summary of statsbridge's own, whose count, sum
// and quantiles (one per fam.Summary.Quantiles) read fills in. The count
// and sum must never decrease.
func (m *Model) RegisterSummary(fam Family, key string, labels Labels, read func(*SummaryPoint)) {
	fam.Type = Summary
	m.registerOwn(fam, KindPresummed, key, labels, &ownSource{summary: read})
}

func (m *Model) registerOwn(fam Family, kind Kind, key string, labels Labels, src *ownSource) {
	m.mu.Lock()
	defer m.mu.Unlock()
	id := identity(fam.Name, labels)
	if m.byID[id] != nil {
		return
	}
	fe := m.families[fam.Name]
	if fe == nil {
		f := fam
		fe = &familyEntry{family: &f, kind: kind}
		m.families[fam.Name] = fe
	}
	s := newSeries(fe.family, kind, labels, key, nil, 0, m.now().UnixNano(), nil)
	s.own = src
	fe.own = append(fe.own, s)
	m.ownFamilies[fam.Name] = true
	m.byID[id] = s
}

// Unregister removes a series Register or RegisterSummary added: one of a
// sink a reload removed, say.
func (m *Model) Unregister(family string, labels Labels) {
	m.mu.Lock()
	defer m.mu.Unlock()
	id := identity(family, labels)
	s := m.byID[id]
	fe := m.families[family]
	if s == nil || s.own == nil || fe == nil {
		return
	}
	delete(m.byID, id)
	fe.own = slices.DeleteFunc(fe.own, func(o *Series) bool { return o == s })
	if len(fe.own) == 0 {
		delete(m.ownFamilies, family)
		if len(fe.series) == 0 {
			delete(m.families, family)
		}
	}
}

// Series returns how many series the model holds (self-metrics aside).
func (m *Model) Series() int { return int(m.nseries.Load()) }

// Flush is one flush interval's snapshot: a point for every live series.
// The points, and what they point to, are valid until the Flush is
// collected into again.
type Flush struct {
	cork.Interval
	Points []Point
	// Own is where statsbridge's own series begin: Points[Own:] are
	// self-metrics, Points[:Own] what clients sent.
	Own   int
	arena snapshotter
}

// WithoutOwn is the flush without statsbridge's own series: it shares f's
// points.
func (f *Flush) WithoutOwn() *Flush {
	g := *f
	g.Points = f.Points[:f.Own:f.Own]
	return &g
}

// Collect ends the interval: it fills f with a point for every live series,
// family by family in name order (statsbridge's own after the others), and
// starts the next interval. Series idle for longer than their TTL are
// removed afterwards.
func (m *Model) Collect(f *Flush) {
	f.Points = f.Points[:0]
	f.arena.reset()
	f.arena.percentiles = m.settings.Load().opts.Percentiles
	f.arena.now = f.End.UnixNano()
	take := func(_ *Family, series []*Series) {
		for _, s := range series {
			f.Points = append(f.Points, Point{})
			f.arena.take(s, &f.Points[len(f.Points)-1], true)
		}
	}
	m.gather(gatherSent, take)
	f.Own = len(f.Points)
	m.gather(gatherOwn, take)
	m.nativeReductions.Add(f.arena.native.reductions)
	m.expire(f.End.UnixNano())
}

// Gather calls fn for every family, in name order, with the current points
// of its series. It does not end the interval: it is for scrapes.
func (m *Model) Gather(fn func(f *Family, points []Point)) {
	var points []Point
	sn := snapshotter{now: m.now().UnixNano()}
	m.gather(gatherAll, func(f *Family, series []*Series) {
		points = points[:0]
		sn.reset()
		for _, s := range series {
			points = append(points, Point{})
			sn.take(s, &points[len(points)-1], false)
		}
		fn(f, points)
	})
}

// Which series gather hands out.
const (
	gatherAll  = iota
	gatherSent // those of what clients sent
	gatherOwn  // statsbridge's own
)

// gather calls fn for every family in name order, with a copy of its series
// list taken under the registry lock.
func (m *Model) gather(which int, fn func(f *Family, series []*Series)) {
	m.mu.RLock()
	var names []string
	if which == gatherOwn {
		names = make([]string, 0, len(m.ownFamilies))
		for name := range m.ownFamilies {
			names = append(names, name)
		}
	} else {
		names = make([]string, 0, len(m.families))
		for name := range m.families {
			names = append(names, name)
		}
	}
	m.mu.RUnlock()
	sort.Strings(names)
	var series []*Series
	for _, name := range names {
		m.mu.RLock()
		fe := m.families[name]
		if fe != nil {
			series = series[:0]
			if which != gatherOwn {
				series = append(series, fe.series...)
			}
			if which != gatherSent {
				series = append(series, fe.own...)
			}
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
	defaultTTL := m.settings.Load().opts.SeriesTTL
	m.mu.Lock()
	before := len(m.byID)
	removed := 0
	for name, fe := range m.families {
		kept := fe.series[:0]
		for _, s := range fe.series {
			ttl := s.ttl
			if ttl == 0 {
				ttl = defaultTTL
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
		if len(kept) == 0 && len(fe.own) == 0 {
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
