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

// binding is what the model's name cache holds for a raw StatsD key bound
// to a series: the series and how the line's values apply to it.
type binding struct {
	series *Series
	hi     uint64 // the key's second hash (see cacheShard)
	scale  float64
	// generation is the mapper set the binding was made with: a reload
	// makes every older binding a miss.
	generation uint32
	part       Part
	// toSeconds divides a timer's values by 1000 for the histogram; the
	// interval statistics keep the client's milliseconds.
	toSeconds bool
}

// refusal is what the name cache holds for a refused raw StatsD key, so that
// a name refused again and again (past a cap, in conflict, dropped by a
// mapping) neither maps anew nor takes the registry lock for every line:
// reason says why, or conflict that the name's type conflicts with its
// family's. It is remembered until until.
type refusal struct {
	until      int64
	generation uint32
	reason     DropReason
	conflict   bool
}
