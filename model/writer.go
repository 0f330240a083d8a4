package model

import (
	"hash/maphash"
	"math"

	"github.com/statsbridge/statsbridge/ingest"
)

// Writer applies samples to the model for one reader goroutine. It keeps the
// reader's scratch space, so that applying a sample to a series that exists
// allocates nothing.
type Writer struct {
	m          *Model
	key        []byte
	now        int64
	generation generation
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
	bound = bound && b.hi == uint32(key.hi)
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
	result, changed := b.series.apply(b, smp, w.now, &w.m.limits)
	switch {
	case changed:
		w.m.markChanged(b.series)
	case result == expired:
		return false
	case result == nonFinite:
		w.m.dropped[DropNonFinite].Add(1)
		w.m.dropLog.Log("reason", DropNonFinite.String(), "family", b.series.family.name())
	}
	return true
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
	seriesKey := mapping.Key
	if seriesKey == "" {
		seriesKey = name
	}
	m.mu.Lock()
	s, r := m.register(&mapping, seriesKey, tags, key.lo, now)
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
	b := binding{series: s, hi: uint32(key.hi), part: part, scale: mapping.Scale, generation: ms.generation}
	m.cacheBinding(shard, key.lo, b)
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
