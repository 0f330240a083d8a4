package model

import (
	"context"
	"hash/maphash"
	"log/slog"
	"math"

	"github.com/statsbridge/statsbridge/ingest"
)

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
	bound = bound && b.hi == uint32(key.hi)
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
	result, changed := b.series.apply(b, smp, w.now, &w.set.limits)
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
	seriesKey := mapping.Key
	if seriesKey == "" {
		seriesKey = name
	}
	m.mu.Lock()
	s, r := m.register(&ms.opts, &mapping, seriesKey, tags, key.lo, now)
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
	b := binding{series: s, hi: uint32(key.hi), part: part, scale: mapping.Scale, generation: ms.generation}
	m.cacheBinding(shard, key.lo, b, ms.boundLimit)
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
