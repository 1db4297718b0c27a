package topic

import (
	"hash/maphash"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
)

// cache maps topic → immutable *Result, tagged with the index generation it was computed at.
//
// Validity: Index bumps its generation after every change. An entry is served only when its
// generation equals the generation the caller loaded before looking, so anything cached before a
// change is dead the moment the change's bump is visible. Dead entries are never served; they are
// overwritten first when their slot's set takes a new entry, and evicted for their weight.
//
// Layout: a set-associative table. A topic hashes to one set of cacheWays slots; each slot is an
// atomic pointer to an immutable entry plus an atomic tag (hash bits) that lets a lookup skip
// slots without dereferencing their entries. The table is split into independent sets (the
// sharded cache taken to its limit: every set is a shard).
//
// Concurrency: a hit performs only atomic loads. It writes no shared memory at all — not even a
// read lock's reader count — so concurrent publishers do not bounce cache lines between cores,
// however hot the topic. (A first version used sharded RWMutex+map shards; the read lock's
// counter write made every hit migrate its shard's line and parallel hits barely scaled.) Inserts
// and evictions, which happen only on a miss, take the set's striped mutex.
//
// Bounds: at most the requested number of topics (the table has no more slots than that) and at
// most maxWeight in total weight (a Result weighs 1 + its entries + its group members), reserved
// with a CAS so the bound is never exceeded even transiently. A result heavier than maxWeight/4 is not cached. When
// a set is full, a dead entry or else a random one is replaced; when the weight budget is full,
// entries in random sets are evicted — O(1), with no LRU bookkeeping on the hit path.
type cache[K comparable, V any] struct {
	seed      maphash.Seed
	mask      uint64 // len(sets)-1
	ways      int
	maxWeight int64
	maxResult int
	weight    atomic.Int64 // sum of the weights of stored entries; changes only under set locks
	sets      []cacheSet[K, V]
	locks     [cacheLocks]paddedMutex
}

const (
	cacheWays  = 8  // slots per set: eight pointers, one cache line
	cacheLocks = 64 // insert/evict lock stripes
	// evictProbes bounds the work one insert spends freeing weight in other sets.
	evictProbes = 8
)

type cacheSet[K comparable, V any] struct {
	tag [cacheWays]atomic.Uint32 // tagOf(hash) of the slot's entry, 0 when empty; a hint only
	ent [cacheWays]atomic.Pointer[cacheEntry[K, V]]
}

type cacheEntry[K comparable, V any] struct {
	hash   uint64
	gen    uint64
	topic  string
	res    *Result[K, V]
	weight int64
}

type paddedMutex struct {
	sync.Mutex
	_ [64 - 8]byte // one lock per cache line: stripes are taken by different inserting cores
}

func tagOf(h uint64) uint32 { return uint32(h>>32) | 1 } // never 0, which marks an empty slot

// newCache returns a cache bounded to at most topics topics and weight total weight, or nil when
// topics <= 0 (caching disabled).
func newCache[K comparable, V any](topics, weight int) *cache[K, V] {
	if topics <= 0 {
		return nil
	}
	ways := min(cacheWays, topics)
	sets := 1
	for sets*2*ways <= topics { // round down: the table never holds more than topics entries
		sets *= 2
	}
	weight = max(weight, topics)
	return &cache[K, V]{
		seed:      maphash.MakeSeed(),
		mask:      uint64(sets - 1),
		ways:      ways,
		maxWeight: int64(weight),
		maxResult: max(1, weight/4),
		sets:      make([]cacheSet[K, V], sets),
	}
}

// get returns the Result cached for topic at generation gen, or nil. It only loads.
func (c *cache[K, V]) get(topic string, gen uint64) *Result[K, V] {
	h := maphash.String(c.seed, topic)
	s := &c.sets[h&c.mask]
	tag := tagOf(h)
	for i := range c.ways {
		if s.tag[i].Load() != tag {
			continue
		}
		// The tag is only a hint (it and the pointer are stored separately); the entry itself
		// is immutable and decides.
		if e := s.ent[i].Load(); e != nil && e.hash == h && e.gen == gen && e.topic == topic {
			return e.res
		}
	}
	return nil
}

// put caches r for topic, computed by a walk that started after generation gen was loaded.
func (c *cache[K, V]) put(topic string, gen uint64, r *Result[K, V]) {
	w := r.weight()
	if w > c.maxResult {
		return // would flush a large part of the cache for one result; the caller walks instead
	}
	h := maphash.String(c.seed, topic)
	si := h & c.mask
	s := &c.sets[si]
	mu := &c.locks[si%cacheLocks]
	mu.Lock()
	defer mu.Unlock()

	// Pick the slot: this topic's own (unless it already holds a result at least as new: keep
	// it, so callers keep seeing one pointer), else a dead one (older than gen, so never
	// servable again; reusing it frees its weight), else an empty one, else a random one.
	own, dead, empty := -1, -1, -1
	for i := range c.ways {
		e := s.ent[i].Load()
		switch {
		case e == nil:
			if empty < 0 {
				empty = i
			}
		case e.hash == h && e.topic == topic:
			if e.gen >= gen {
				return
			}
			own = i
		case e.gen < gen && dead < 0:
			dead = i
		}
	}
	slot := own
	for _, i := range [...]int{dead, empty, int(rand.Uint64() % uint64(c.ways))} {
		if slot < 0 {
			slot = i
		}
	}
	c.clear(s, slot)

	if !c.reserve(int64(w), si) {
		return
	}
	e := &cacheEntry[K, V]{hash: h, gen: gen, topic: strings.Clone(topic), res: r, weight: int64(w)}
	// strings.Clone: the caller's topic may alias a connection's read buffer (message.Message
	// documents that); the cache must own its key.
	s.ent[slot].Store(e)
	s.tag[slot].Store(tagOf(h))
}

// clear empties slot i of s and returns its weight to the budget. Caller holds s's stripe lock.
func (c *cache[K, V]) clear(s *cacheSet[K, V], i int) {
	if e := s.ent[i].Load(); e != nil {
		s.tag[i].Store(0)
		s.ent[i].Store(nil)
		c.weight.Add(-e.weight)
	}
}

// reserve adds w to the weight, evicting entries of random other sets while the budget is short.
// Caller holds the stripe lock of set own, which it may therefore evict from directly; other
// stripes are only try-locked, so two inserters never wait on each other.
func (c *cache[K, V]) reserve(w int64, own uint64) bool {
	for probes := 0; ; {
		cur := c.weight.Load()
		if cur+w <= c.maxWeight {
			if c.weight.CompareAndSwap(cur, cur+w) {
				return true
			}
			continue
		}
		if probes == evictProbes {
			return false // budget held by entries we could not get at; skip caching this one
		}
		probes++
		si := rand.Uint64() & c.mask
		s := &c.sets[si]
		if si%cacheLocks != own%cacheLocks {
			mu := &c.locks[si%cacheLocks]
			if !mu.TryLock() {
				continue
			}
			c.clearSet(s)
			mu.Unlock()
		} else {
			c.clearSet(s)
		}
	}
}

// clearSet empties every slot of s. Caller holds s's stripe lock.
func (c *cache[K, V]) clearSet(s *cacheSet[K, V]) {
	for i := range c.ways {
		c.clear(s, i)
	}
}

// stats reports the number of cached topics and their total weight (live or dead), and the weight
// counter; the last two must agree. For tests, on a quiescent cache.
func (c *cache[K, V]) stats() (topics int, weight, counter int64) {
	for i := range c.sets {
		for j := range c.ways {
			if e := c.sets[i].ent[j].Load(); e != nil {
				topics++
				weight += e.weight
			}
		}
	}
	return topics, weight, c.weight.Load()
}
