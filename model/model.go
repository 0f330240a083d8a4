package model

import (
	"hash/maphash"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

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
	// nativeReductions counts native histograms' halvings past their
	// bucket cap (the model's count).
	nativeReductions *atomic.Uint64
}

// Model is the registry of families and series. Readers apply samples
// through Writers without a global lock: a name is looked up in a sharded
// cache and the series has a lock of its own. Only a name seen for the first
// time takes the registry lock.
//
// Ending an interval costs what changed since the last, not what exists:
// series list themselves when they change (see markChanged), and expiry
// finds what may have expired in lists kept in the order series last
// changed. Only a push sink's flush, which needs a point for every series,
// walks them all.
type Model struct {
	opts     Options // what a reload does not change: logger, throttle, tap, clock
	now      func() time.Time
	seeds    [2]maphash.Seed
	settings atomic.Pointer[settings]

	cache [cacheShards]cacheShard

	// mu is the registry lock: the families (in order), their series,
	// the shapes, the expiry lists and own are guarded by it.
	mu       sync.RWMutex
	order    familyOrder
	shapes   map[string]*familyShape
	expiries map[time.Duration]*expiryList
	// byDefault holds the series that expire after series_ttl, which a
	// reload may change (see expiry.go).
	byDefault expiryList
	// untimed counts the series registered while series_ttl was 0, which
	// have no place in byDefault until it is set.
	untimed int
	nseries atomic.Int64 // written under mu; read without it
	nself   atomic.Int64 // self-metrics, likewise
	// own are statsbridge's own series (Register), in the order a flush
	// gives them: by family name, then as registered. They also sit
	// among their family's series, for scrapes and lookups.
	own []*Series

	changed [changedShards]changedList
	// ending is held by whatever ends an interval (Collect, EndInterval):
	// one at a time. It guards what follows.
	ending  sync.Mutex
	lastEnd int64 // unix nanoseconds of the last interval's end
	scratch []*Series
	work    flushWork

	dropped    [numDropReasons]atomic.Uint64
	conflicts  atomic.Uint64
	labelFixes [numLabelFixes]atomic.Uint64
	// The refusals' log lines: the counters have no family label, as that
	// label would grow without bound exactly when a limit bites.
	conflictLog, dropLog, fixLog *throttle.Event
	// newNameLog shows, at debug level, each name as it is mapped.
	newNameLog *throttle.Event

	// nativeReductions counts native histograms' schema reductions past
	// their bucket cap.
	nativeReductions atomic.Uint64
}

// settings are what a reload changes: the mappers and the limits. A Writer
// loads them once a batch.
type settings struct {
	mappers    []Mapper
	observers  ObserverDefaults
	generation generation
	opts       Options // the limits; mappers and observers above
	limits     limits
	// boundLimit and refusedLimit bound each cache shard's entries. The
	// entries have a fixed size, however long the names, so this bounds
	// the cache in bytes too.
	boundLimit, refusedLimit int
}

func newSettings(opts Options, g generation, nativeReductions *atomic.Uint64) *settings {
	if opts.ExactTimerValues <= 0 {
		opts.ExactTimerValues = 1000
	}
	if opts.ExactSetMembers <= 0 {
		opts.ExactSetMembers = 10000
	}
	if opts.Observers.Type == Unknown {
		opts.Observers = DefaultObservers
	}
	return &settings{mappers: opts.Mappers, observers: opts.Observers, generation: g, opts: opts,
		limits: limits{exactTimerValues: opts.ExactTimerValues, exactSetMembers: opts.ExactSetMembers,
			nativeReductions: nativeReductions},
		// Four names per series hold Prosody's histograms (a name per
		// bucket); a refused name is remembered until as many names as
		// there may be series were refused after it.
		boundLimit:   max(4*opts.MaxSeries/cacheShards, 64),
		refusedLimit: max(opts.MaxSeries/cacheShards, 64),
	}
}

// New returns an empty model.
func New(opts Options) *Model {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Events == nil {
		opts.Events = throttle.New(opts.Logger, time.Second)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	m := &Model{
		opts:     opts,
		now:      opts.Now,
		seeds:    [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()},
		shapes:   map[string]*familyShape{},
		expiries: map[time.Duration]*expiryList{},
		lastEnd:  opts.Now().UnixNano(),

		conflictLog: opts.Events.Event(slog.LevelWarn, "a sample's type conflicts with its family's; dropped"),
		dropLog:     opts.Events.Event(slog.LevelWarn, "dropped a sample"),
		fixLog:      opts.Events.Event(slog.LevelWarn, "renamed or dropped labels that would make a series invalid"),
		newNameLog:  opts.Events.EventBurst(slog.LevelDebug, "a new name", newNamesPerSecond),
	}
	for i := range m.cache {
		m.cache[i].reset()
	}
	m.settings.Store(newSettings(opts, 1, &m.nativeReductions))
	return m
}

// newNamesPerSecond bounds the debug log's new names: past it they are
// counted, and statsbridge tap shows them all.
const newNamesPerSecond = 50

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
// mappers and limits; series already made keep their state, and those
// without a TTL of their mapping's expire after the new series_ttl from
// the next interval's end.
func (m *Model) Reconfigure(opts Options) {
	m.settings.Store(newSettings(opts, m.settings.Load().generation+1, &m.nativeReductions))
	// New maps free the memory (a cleared map keeps its size); the
	// generation makes a binding made with the old settings while this
	// runs a miss.
	for i := range m.cache {
		m.cache[i].reset()
	}
}

// register creates a series (and its family when new), or finds the one
// that exists. tags are the line's, as labels. m.mu is held. A name whose family exists with another kind
// or shape is a conflict: the family stays as it is. A refused series
// returns nil and the refusal.
func (m *Model) register(o *Options, mp *Mapping, key string, tags Labels, bindKey uint64, now int64) (*Series, refusal) {
	h := m.labelsHash(mp.Labels)
	fe := m.order.find(mp.Family.Name)
	if fe != nil {
		if s := fe.lookup(mp.Labels, h); s != nil {
			if s.kind != mp.Kind {
				return nil, refusal{conflict: true}
			}
			return s, refusal{}
		}
	}
	switch {
	case fe != nil && (fe.kind != mp.Kind || mp.Kind != KindPrebucketed && !fe.shape.sameShape(&mp.Family)):
		return nil, refusal{conflict: true}
	case m.nseries.Load() >= int64(o.MaxSeries):
		return nil, refusal{reason: DropMaxSeries}
	case fe != nil && fe.sent() >= o.MaxSeriesPerFamily:
		return nil, refusal{reason: DropMaxSeriesPerFamily}
	}
	if fe == nil {
		fe, key = m.addFamily(&mp.Family, mp.Kind, key)
	} else if len(fe.series) > 0 {
		// The series of a family mostly share their StatsD name (they
		// differ by tags) and their label names: they share one copy.
		like := fe.series[0]
		if key == like.key {
			key = like.key
		}
		shareLabelNames(mp.Labels, like.labels)
	}
	// lastSeen starts at now so that an expiry running before the first
	// sample is applied cannot take the series away.
	s := newSeries(fe, mp.Kind, mp.Labels, key, settleLabels(tags, 0, Unknown, nil), now, mp.Guesses)
	s.bindKey = bindKey
	switch {
	case mp.TTL > 0:
		s.expiry = &expiryNode{list: m.expiryList(mp.TTL), series: s}
	case o.SeriesTTL > 0:
		s.expiry = &expiryNode{list: &m.byDefault, series: s}
	default:
		m.untimed++
	}
	m.addSeries(s, h)
	m.nseries.Add(1)
	// Listed at once: the interval's end puts it among the series of its
	// TTL, even should no sample ever be applied to it.
	s.listed = true
	m.markChanged(s)
	return s, refusal{}
}

// shareLabelNames makes the names of ls that are equal to those of like,
// label by label, the same strings.
func shareLabelNames(ls, like Labels) {
	for i := range min(len(ls), len(like)) {
		if ls[i].Name == like[i].Name {
			ls[i].Name = like[i].Name
		}
	}
}

func (m *Model) addFamily(f *Family, kind Kind, key string) (*familyEntry, string) {
	fe, key := m.newFamily(f, kind, key)
	m.order.add(fe)
	return fe, key
}

// Register adds a series whose value is read from elsewhere when the model is
// flushed or scraped: statsbridge's own metrics. key is its StatsD name, for
// the Graphite layouts that write one: it must tell the series apart from
// the family's others, as no line's name carries its labels. A counter's
// read must never decrease. Self-metrics do not count against the series
// limits, never expire, and come after every other series in a Flush (see
// Flush.Own).
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
	h := m.labelsHash(labels)
	fe := m.order.find(fam.Name)
	if fe != nil && fe.lookup(labels, h) != nil {
		return
	}
	if fe == nil {
		fe, key = m.addFamily(&fam, kind, key)
	}
	s := newSeries(fe, kind, labels, key, nil, m.now().UnixNano(), nil)
	if s.extra == nil {
		s.extra = &seriesExtra{}
	}
	s.extra.own = src
	m.addSeries(s, h)
	fe.nown++
	// After the family's others, as registered.
	at := sort.Search(len(m.own), func(i int) bool { return m.own[i].family.name() > fam.Name })
	m.own = slices.Insert(m.own, at, s)
	m.nself.Add(1)
}

// Unregister removes a series Register or RegisterSummary added: one of a
// sink a reload removed, say.
func (m *Model) Unregister(family string, labels Labels) {
	// Not while an interval ends: a flush walks the families' series by
	// their places, which a removal changes.
	m.ending.Lock()
	defer m.ending.Unlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	fe := m.order.find(family)
	if fe == nil {
		return
	}
	s := fe.lookup(labels, m.labelsHash(labels))
	if s == nil || !s.Registered() {
		return
	}
	s.removed.Store(true)
	m.own = slices.DeleteFunc(m.own, func(o *Series) bool { return o == s })
	fe.nown--
	m.nself.Add(-1)
	m.removeSeries(s)
}

// Series returns how many series the model holds (self-metrics aside).
func (m *Model) Series() int { return int(m.nseries.Load()) }
