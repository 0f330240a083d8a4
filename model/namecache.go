package model

import (
	"sync"
	"time"

	"github.com/statsbridge/statsbridge/ingest"
)

// The name cache stands in front of the mappers and the registry: it binds
// each raw StatsD key (type, name and tags as sent) to its series, or
// remembers that the key was refused.

const cacheShards = 64

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

// refusalMemory is how long a name refused at a series cap or for a type
// conflict stays refused before the model looks again (a series or family
// may have expired and made room). A mapping's drop and a label limit
// depend only on the name and the mappers, so they stay until a reload.
const refusalMemory = 10 * time.Second

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

func (m *Model) cacheBinding(shard *cacheShard, key uint64, b binding, limit int) {
	shard.mu.Lock()
	putEvicting(shard.bound, key, b, limit)
	shard.mu.Unlock()
}

func (m *Model) cacheRefusal(shard *cacheShard, key uint64, r refusal, limit int) {
	shard.mu.Lock()
	putEvicting(shard.refused, key, r, limit)
	shard.mu.Unlock()
}

// putEvicting stores v under key, first evicting an entry at random when
// the cache already holds limit of them.
func putEvicting[V any](cache map[uint64]V, key uint64, v V, limit int) {
	if len(cache) >= limit {
		for k := range cache {
			delete(cache, k)
			break
		}
	}
	cache[key] = v
}

// binding is what the model's name cache holds for a raw StatsD key bound
// to a series: the series and how the line's values apply to it. There is
// one for every name, so it is kept to 24 bytes.
type binding struct {
	series *Series
	scale  float64
	// hi is half the key's second hash (see cacheShard): with the first,
	// two keys are taken for one only if 96 bits of hash collide.
	hi         uint32
	generation generation
	part       Part
}

// generation numbers the settings (see Model.Reconfigure): a binding or
// refusal made with other settings than the current ones is a miss. It
// wraps after 65,536 reloads, which is harmless: every reload empties the
// cache, so a binding outlives at most the one reload it raced with.
type generation uint16

// refusal is what the name cache holds for a refused raw StatsD key, so that
// a name refused again and again (past a cap, in conflict, dropped by a
// mapping) neither maps anew nor takes the registry lock for every line:
// reason says why, or conflict that the name's type conflicts with its
// family's. It is remembered until until.
type refusal struct {
	until      int64
	generation generation
	reason     DropReason
	conflict   bool
}

// String names what refused: a DropReason's name, or "conflict".
func (r refusal) String() string {
	if r.conflict {
		return "conflict"
	}
	return r.reason.String()
}

// forget drops the binding an expired series was registered under. Other
// names bound to it (the bucket lines of a Prosody histogram) stay until
// they are evicted, seen again, or a mass expiry sweeps the cache.
func (m *Model) forget(s *Series) {
	shard := &m.cache[s.bindKey%cacheShards]
	shard.mu.Lock()
	if b, ok := shard.bound[s.bindKey]; ok && b.series == s {
		delete(shard.bound, s.bindKey)
	}
	shard.mu.Unlock()
}

// sweep drops every binding to an expired series and sizes the cache's
// maps to what is left: after a mass expiry.
func (m *Model) sweep() {
	for i := range m.cache {
		sh := &m.cache[i]
		sh.mu.Lock()
		for k, b := range sh.bound {
			if b.series.removed.Load() {
				delete(sh.bound, k)
			}
		}
		sh.bound, sh.refused = resized(sh.bound), resized(sh.refused)
		sh.mu.Unlock()
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
