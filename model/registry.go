package model

import (
	"hash/maphash"
	"iter"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
)

// The registry holds the families and their series. Its lock (Model.mu) is
// taken for writing only by what changes which series exist: a name seen
// for the first time, and expiry; flushes and scrapes take it for reading,
// briefly, to list series.

// familyShape is what a family says beyond its name and help. Families
// alike share one: a million families of one StatsD counter each differ
// only by name.
type familyShape struct {
	typ        Type
	unit       string
	labelNames []string
	buckets    []Bucket
	summary    SummaryOptions
	native     NativeOptions
}

// sameShape reports whether a mapping's family may share a registered
// family's series: the same type and bucket layout.
func (sh *familyShape) sameShape(f *Family) bool {
	return sh.typ == f.Type && slices.EqualFunc(sh.buckets, f.Buckets, func(a, b Bucket) bool { return a.LE == b.LE })
}

// maxShapes bounds the shapes the model shares; past it a family keeps a
// shape of its own. Shapes come from the configuration (mapping files, the
// Prosody catalog), so this is never reached but by a configuration far
// larger than any real one.
const maxShapes = 4096

// familyEntry is a registered family and its series.
type familyEntry struct {
	// text is the family's name then its help, in one string.
	text    string
	nameLen uint32
	kind    Kind
	// removed is guarded by the registry lock, as are nown, series and
	// index. (They sit here, where kind leaves room: an entry takes 64
	// bytes.)
	removed bool
	// nown counts statsbridge's own series among series.
	nown   uint16
	shape  *familyShape
	series []*Series
	index  *familyIndex // nil while the family is small
}

// familyIndex finds a large family's series by the hash of its labels.
// collided holds the series whose hash another series in byHash has.
type familyIndex struct {
	byHash   map[uint64]*Series
	collided []*Series
}

// smallFamily is how many series a family looks through one by one before
// it keeps an index.
const smallFamily = 8

// Family returns the registered family.
func (fe *familyEntry) Family() Family {
	sh := fe.shape
	return Family{Name: fe.name(), Type: sh.typ, Unit: sh.unit, Help: fe.text[fe.nameLen:], LabelNames: sh.labelNames,
		Buckets: sh.buckets, Summary: sh.summary, Native: sh.native}
}

func (fe *familyEntry) name() string { return fe.text[:fe.nameLen] }

// sent is how many of the family's series came from what clients sent:
// statsbridge's own count against no limit. m.mu is held.
func (fe *familyEntry) sent() int { return len(fe.series) - int(fe.nown) }

// newFamily makes the entry of a family whose first series comes from the
// StatsD name key, and returns the copy of key that series is to keep.
func (m *Model) newFamily(f *Family, kind Kind, key string) (*familyEntry, string) {
	fe := &familyEntry{kind: kind, shape: m.internShape(f), nameLen: uint32(len(f.Name))}
	fe.text, key = packStrings(f.Name, f.Help, key)
	return fe, key
}

// packStrings stores a family's name and help, and the StatsD name of its
// first series, in one allocation: it returns the name and help in one
// string, and the key. The key is the end of the help when the help ends
// with it, as the default mapping's help ("StatsD counter api.requests")
// does.
func packStrings(name, help, key string) (text, sharedKey string) {
	shared := strings.HasSuffix(help, key)
	var b strings.Builder
	n := len(name) + len(help)
	if !shared {
		n += len(key)
	}
	b.Grow(n)
	b.WriteString(name)
	b.WriteString(help)
	if !shared {
		b.WriteString(key)
	}
	all := b.String()
	text = all[:len(name)+len(help)]
	if shared {
		return text, text[len(text)-len(key):]
	}
	return text, all[len(text):]
}

// internShape returns the shared shape of f. m.mu is held.
func (m *Model) internShape(f *Family) *familyShape {
	sh := &familyShape{typ: f.Type, unit: f.Unit, labelNames: f.LabelNames, buckets: f.Buckets, summary: f.Summary, native: f.Native}
	if len(m.shapes) >= maxShapes {
		return sh
	}
	key := shapeKey(f)
	if shared, ok := m.shapes[key]; ok {
		return shared
	}
	m.shapes[key] = sh
	return sh
}

// shapeKey spells out everything a shape holds.
func shapeKey(f *Family) string {
	b := []byte{byte(f.Type)}
	b = append(b, f.Unit...)
	for _, n := range f.LabelNames {
		b = append(b, 0x1e)
		b = append(b, n...)
	}
	b = append(b, 0x1d)
	for _, bk := range f.Buckets {
		b = strconv.AppendUint(b, math.Float64bits(bk.Bound), 16)
		b = append(b, 0x1f)
		b = append(b, bk.LE...)
		b = append(b, 0x1e)
	}
	b = append(b, 0x1d)
	for _, q := range f.Summary.Quantiles {
		b = strconv.AppendUint(b, math.Float64bits(q), 16)
		b = append(b, 0x1e)
	}
	b = strconv.AppendInt(b, int64(f.Summary.MaxAge), 16)
	b = append(b, 0x1e)
	b = strconv.AppendInt(b, int64(f.Summary.AgeBuckets), 16)
	b = append(b, 0x1d)
	b = strconv.AppendUint(b, math.Float64bits(f.Native.BucketFactor), 16)
	b = append(b, 0x1e)
	b = strconv.AppendUint(b, uint64(f.Native.MaxBuckets), 16)
	return string(b)
}

// labelsHash is the hash a family's index finds a label set by.
func (m *Model) labelsHash(ls Labels) uint64 {
	var h maphash.Hash
	h.SetSeed(m.seeds[0])
	for _, l := range ls {
		h.WriteString(l.Name)
		h.WriteByte(0x1f)
		h.WriteString(l.Value)
		h.WriteByte(0x1e)
	}
	return h.Sum64()
}

// lookup returns the family's series with the labels (whose hash is h), or
// nil. m.mu is held.
func (fe *familyEntry) lookup(labels Labels, h uint64) *Series {
	candidates := fe.series
	if ix := fe.index; ix != nil {
		if s := ix.byHash[h]; s != nil && slices.Equal(s.labels, labels) {
			return s
		}
		candidates = ix.collided
	}
	for _, s := range candidates {
		if slices.Equal(s.labels, labels) {
			return s
		}
	}
	return nil
}

// addSeries adds a series to its family. m.mu is held.
func (m *Model) addSeries(s *Series, h uint64) {
	fe := s.family
	s.pos = uint32(len(fe.series))
	fe.series = append(fe.series, s)
	switch {
	case fe.index != nil:
		fe.index.add(s, h)
	case len(fe.series) > smallFamily:
		m.buildIndex(fe)
	}
}

func (ix *familyIndex) add(s *Series, h uint64) {
	if ix.byHash[h] == nil {
		ix.byHash[h] = s
	} else {
		ix.collided = append(ix.collided, s)
	}
}

// buildIndex indexes a family's series anew, in an index sized to them.
func (m *Model) buildIndex(fe *familyEntry) {
	fe.index = &familyIndex{byHash: make(map[uint64]*Series, len(fe.series))}
	for _, s := range fe.series {
		fe.index.add(s, m.labelsHash(s.labels))
	}
}

// removeSeries takes an expired or unregistered series out of its family,
// and the family out of the registry when it was the last. m.mu is held.
func (m *Model) removeSeries(s *Series) {
	fe := s.family
	last := fe.series[len(fe.series)-1]
	fe.series[s.pos], last.pos = last, s.pos
	fe.series[len(fe.series)-1] = nil
	fe.series = fe.series[:len(fe.series)-1]
	if ix := fe.index; ix != nil {
		if h := m.labelsHash(s.labels); ix.byHash[h] == s {
			delete(ix.byHash, h)
		} else if i := slices.Index(ix.collided, s); i >= 0 {
			ix.collided = slices.Delete(ix.collided, i, i+1)
		}
	}
	if !s.Registered() {
		m.nseries.Add(-1)
	}
	if len(fe.series) == 0 {
		m.order.remove(fe)
	}
}

// familyOrder holds the families, in name order, without sorting them all
// again: families registered since the order was last looked at wait in
// fresh, unsorted, until a flush or a scrape sorts them (alone) and notes
// where each goes among the ordered ones. The order is rebuilt only when
// the added or the removed families are many, so that keeping it costs a
// flush about what changed. Readers keep a view and walk it without the
// lock: a view is never changed, only replaced.
//
// It is also how a family is found by name: by a binary search of the
// view, or in fresh. A map of every family by name would cost a million
// families about 60 MB more.
type familyOrder struct {
	view    orderView
	fresh   map[string]*familyEntry
	removed int // families gone since the order was rebuilt
}

// orderView is the families in name order: sorted, with added (each with
// the index in sorted it comes before, so also in name order) merged in as
// it is walked. Both may hold families that were removed since.
type orderView struct {
	sorted []*familyEntry
	added  []addedFamily
}

type addedFamily struct {
	at int
	fe *familyEntry
}

// find returns the registered family of the name, or nil.
func (o *familyOrder) find(name string) *familyEntry {
	if fe := o.fresh[name]; fe != nil {
		return fe
	}
	v := &o.view
	i, _ := slices.BinarySearchFunc(v.sorted, name, func(fe *familyEntry, name string) int { return strings.Compare(fe.name(), name) })
	for ; i < len(v.sorted) && v.sorted[i].name() == name; i++ {
		if !v.sorted[i].removed {
			return v.sorted[i]
		}
	}
	i, _ = slices.BinarySearchFunc(v.added, name, func(a addedFamily, name string) int { return strings.Compare(a.fe.name(), name) })
	for ; i < len(v.added) && v.added[i].fe.name() == name; i++ {
		if !v.added[i].fe.removed {
			return v.added[i].fe
		}
	}
	return nil
}

// add registers a new family.
func (o *familyOrder) add(fe *familyEntry) {
	if o.fresh == nil {
		o.fresh = map[string]*familyEntry{}
	}
	o.fresh[fe.name()] = fe
}

// remove unregisters a family whose last series went.
func (o *familyOrder) remove(fe *familyEntry) {
	fe.removed = true
	if o.fresh[fe.name()] == fe {
		delete(o.fresh, fe.name())
	} else {
		o.removed++
	}
}

// all yields the families in name order, removed ones included (the
// caller skips them under the lock).
func (v orderView) all() iter.Seq[*familyEntry] {
	return func(yield func(*familyEntry) bool) {
		a := 0
		for i, fe := range v.sorted {
			for ; a < len(v.added) && v.added[a].at == i; a++ {
				if !yield(v.added[a].fe) {
					return
				}
			}
			if !yield(fe) {
				return
			}
		}
		for ; a < len(v.added); a++ {
			if !yield(v.added[a].fe) {
				return
			}
		}
	}
}

// ordered returns the families in name order, sorting those registered
// since it was last called.
func (m *Model) ordered() orderView {
	m.mu.RLock()
	o := &m.order
	settled := len(o.fresh) == 0 && !o.mustRebuild()
	view := o.view
	m.mu.RUnlock()
	if settled {
		return view
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(o.fresh) > 0 {
		fresh := slices.SortedFunc(maps.Values(o.fresh), func(a, b *familyEntry) int { return strings.Compare(a.name(), b.name()) })
		m.work.namesSorted.Add(int64(len(fresh)))
		added := make([]addedFamily, 0, len(o.view.added)+len(fresh))
		old := o.view.added
		for _, fe := range fresh {
			at, _ := slices.BinarySearchFunc(o.view.sorted, fe.name(), func(e *familyEntry, name string) int { return strings.Compare(e.name(), name) })
			for len(old) > 0 && (old[0].at < at || old[0].at == at && old[0].fe.name() < fe.name()) {
				added, old = append(added, old[0]), old[1:]
			}
			added = append(added, addedFamily{at, fe})
		}
		o.view.added = append(added, old...)
		// A new map: a cleared one would keep the size of the largest
		// burst of new families.
		o.fresh = nil
	}
	if o.mustRebuild() {
		o.rebuild()
	}
	return o.view
}

// mustRebuild says the added or removed families are many enough to be
// merged in for good.
func (o *familyOrder) mustRebuild() bool {
	n := len(o.view.sorted) / 8
	return len(o.view.added) > n+64 || o.removed > n+64
}

// rebuild merges the added families in and leaves the removed out, into a
// new view. m.mu is held.
func (o *familyOrder) rebuild() {
	sorted := make([]*familyEntry, 0, max(len(o.view.sorted)+len(o.view.added)-o.removed, 0))
	for fe := range o.view.all() {
		if !fe.removed {
			sorted = append(sorted, fe)
		}
	}
	o.view = orderView{sorted: sorted}
	o.fresh = resized(o.fresh)
	o.removed = 0
}
