package topic

import (
	"hash/maphash"
	"math/bits"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
)

// cache maps topic → immutable *Result, stamped with the invalidation counters it was computed
// under.
//
// Validity: a change to the index bumps one invalidation counter chosen by the changed filter's
// first two levels (see bump), after the change is applied. An entry is served only when the
// counters that cover its topic still add up to the stamp it was stored with, so anything cached
// before a change that could alter it is dead the moment the change's bump is visible. A change
// leaves the results of topics it cannot match alive: one global generation for every change
// (the first version) made each subscribe or unsubscribe retire the whole cache, so under churn
// almost every publish missed. Dead entries are never served; they are overwritten first when
// their slot's set takes a new entry, and evicted for their weight.
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
	gens      gens
	door      doorkeeper
}

// doorkeeper decides whether a missed topic may take a live entry's slot: only a topic missed
// twice within the last window (2 × the cache's topics) of such misses. When more distinct
// topics are published than the cache holds (a publisher cycling through a million, one per
// subscription), admitting every miss evicts live entries for results that are themselves
// evicted before their topic returns: each miss paid an insert (a lock, an entry, a copy of the
// topic) and the eviction of a result someone might have hit, for nothing. Topics that recur
// within the window are still admitted on their second miss; filling empty or dead slots never
// asks the doorkeeper, so a cache with room behaves as before. A bit per topic hash; false
// positives admit a topic early, which is harmless.
type doorkeeper struct {
	bits  []atomic.Uint64
	mask  uint64 // number of bits - 1
	sets  atomic.Int64
	limit int64 // bits set before all are cleared
}

func newDoorkeeper(topics int) doorkeeper {
	n := 64
	for n < 16*topics { // at most 1 in 8 bits set when cleared: few false admissions
		n *= 2
	}
	return doorkeeper{bits: make([]atomic.Uint64, n/64), mask: uint64(n - 1), limit: int64(2 * topics)}
}

// admit reports whether the topic with hash h was seen since the last clearing, and marks it.
func (d *doorkeeper) admit(h uint64) bool {
	i := bits.RotateLeft64(h, 32) & d.mask // other bits than those picking the cache set
	w, b := &d.bits[i/64], uint64(1)<<(i%64)
	if w.Load()&b != 0 {
		return true
	}
	w.Or(b)
	if d.sets.Add(1) == d.limit {
		// One caller clears; bits set meanwhile may be lost, which only delays an admission.
		for j := range d.bits {
			d.bits[j].Store(0)
		}
		d.sets.Store(0)
	}
	return false
}

// gens are the invalidation counters. A topic is covered by three: global, the slot of its first
// level and the slot of its first two levels. A filter whose first level is a wildcard may match
// any topic and bumps global; one with a literal first level and a wildcard (or nothing) second
// level matches only topics with that first level and bumps that level's slot; any other filter
// matches only topics with its first two levels and bumps their slot. So every change that can
// alter a topic's result bumps one of its three counters. Counters only grow, so their sum
// changes whenever one of them does and an entry keeps just the sum. Distinct prefixes that share
// a slot only invalidate more than they must.
type gens struct {
	global atomic.Uint64
	slots  []atomic.Uint64
	mask   uint64
}

// newGens sizes the slot table to the cache: a slot per cached topic (8 bytes each, at least
// minGenSlots), so that a change shares its slot with few cached topics by chance.
func newGens(topics int) gens {
	n := minGenSlots
	for n < topics {
		n *= 2
	}
	return gens{slots: make([]atomic.Uint64, n), mask: uint64(n - 1)}
}

const minGenSlots = 1 << 10

// genSeeds hash topic and filter prefixes to slots; per process, so clients cannot aim a prefix
// at another's slot on purpose. Two seeds: "a" as a first level and "a" as a whole one-level
// topic (its "first two levels") are different prefixes and should not share a slot.
var genSeed1, genSeed2 = maphash.MakeSeed(), maphash.MakeSeed()

// prefixSlots returns the slots of topic's first level and of its first two levels (the whole
// topic when it has one level).
func (g *gens) prefixSlots(topic string) (s1, s2 uint32) {
	first, rest, more := cut(topic)
	two := topic
	if more {
		second, _, _ := cut(rest)
		two = topic[:len(first)+1+len(second)]
	}
	return uint32(maphash.String(genSeed1, first) & g.mask), uint32(maphash.String(genSeed2, two) & g.mask)
}

// stamp sums the counters covering a topic with slots s1 and s2.
func (g *gens) stamp(s1, s2 uint32) uint64 {
	return g.global.Load() + g.slots[s1].Load() + g.slots[s2].Load()
}

// bump retires every cached result that a change to the filter with this path could alter. It
// must be called after the change is applied: a Match that loads the bumped counter then walks a
// trie that has the change.
func (g *gens) bump(path string) {
	first, rest, more := cut(path)
	if first == "+" || first == "#" {
		g.global.Add(1)
		return
	}
	second := ""
	if more {
		second, _, _ = cut(rest)
	}
	if !more || second == "+" || second == "#" {
		// "a" matches only the one-level topic "a", "a/+" and "a/#" any topic under a: both are
		// covered by a's first-level slot (for "a", a little wider than needed).
		s1, _ := g.prefixSlots(first)
		g.slots[s1].Add(1)
		return
	}
	_, s2 := g.prefixSlots(path)
	g.slots[s2].Add(1)
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
	gen    uint64 // gens.stamp(s1, s2) loaded before the walk that computed res
	s1, s2 uint32 // the topic's prefix slots
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
		gens:      newGens(topics),
		door:      newDoorkeeper(topics),
	}
}

// get returns the Result cached for topic and still valid, or nil, and the topic's hash for put.
// It only loads.
func (c *cache[K, V]) get(topic string) (*Result[K, V], uint64) {
	h := maphash.String(c.seed, topic)
	s := &c.sets[h&c.mask]
	tag := tagOf(h)
	for i := range c.ways {
		if s.tag[i].Load() != tag {
			continue
		}
		// The tag is only a hint (it and the pointer are stored separately); the entry itself
		// is immutable and decides. The counters are loaded after Match started, so a change
		// completed before that is seen.
		if e := s.ent[i].Load(); e != nil && e.hash == h && e.topic == topic {
			if c.gens.stamp(e.s1, e.s2) != e.gen {
				return nil, h
			}
			return e.res, h
		}
	}
	return nil, h
}

// put caches r for topic (whose hash get returned), computed by a walk that started after
// gen = gens.stamp(s1, s2) was loaded.
func (c *cache[K, V]) put(topic string, h uint64, s1, s2 uint32, gen uint64, r *Result[K, V]) {
	w := r.weight()
	if w > c.maxResult {
		return // would flush a large part of the cache for one result; the caller walks instead
	}
	si := h & c.mask
	s := &c.sets[si]
	mu := &c.locks[si%cacheLocks]
	mu.Lock()
	defer mu.Unlock()

	// Pick the slot: this topic's own (unless it already holds a result at least as new: keep
	// it, so callers keep seeing one pointer; stamps of one topic are comparable, as its
	// counters only grow), else a dead one (never servable again; reusing it frees its
	// weight), else an empty one, else a random one.
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
		case dead < 0 && c.gens.stamp(e.s1, e.s2) != e.gen:
			dead = i
		}
	}
	if own < 0 && dead < 0 && empty < 0 && !c.door.admit(h) {
		return // would evict a live result for a topic not seen lately
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
	e := &cacheEntry[K, V]{hash: h, gen: gen, s1: s1, s2: s2, topic: strings.Clone(topic), res: r, weight: int64(w)}
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
