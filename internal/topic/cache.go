package topic

import (
	"hash/maphash"
	"strings"
	"sync"
)

// cache maps topic → immutable *Result, tagged with the index generation it was computed at.
//
// Validity: Index bumps its generation after every change. An item is served only when its
// generation equals the generation the caller loaded before looking, so anything cached before a
// change is dead the moment the change's bump is visible. Dead items are never served; they are
// reclaimed in bulk (see put).
//
// Concurrency: the cache is split into shards by a hash of the topic, each with its own RWMutex,
// so concurrent publishers on different topics touch different locks and cache lines. A hit is a
// read lock, a map lookup with the string key (no allocation) and a generation compare.
//
// Bounds: each shard holds at most maxTopics topics and maxWeight entries in total (a Result's
// weight is 1 + its entries + its group members), so a few results with huge fan-out cannot blow
// memory. A result heavier than a whole shard's budget is not cached at all. When a shard is full
// a random item is evicted (Go's map iteration starts at a random position), which is O(1) and
// needs no LRU bookkeeping on the hit path.
type cache[K comparable, V any] struct {
	seed      maphash.Seed
	mask      uint64
	maxTopics int // per shard
	maxWeight int // per shard
	shards    []cacheShard[K, V]
}

type cacheItem[K comparable, V any] struct {
	gen    uint64
	res    *Result[K, V]
	weight int32
}

type cacheShard[K comparable, V any] struct {
	mu     sync.RWMutex
	items  map[string]cacheItem[K, V]
	gen    uint64 // newest generation stored in this shard; every item of an older one is dead
	weight int    // sum of item weights
	// Pad to two cache lines so neighbouring shards' locks do not share (or prefetch-pair) a
	// line: a hit writes the RWMutex reader count.
	_ [128 - 48]byte
}

// maxShards caps sharding; with 64 shards contention on any one lock is low well beyond the core
// counts tern targets, and each shard still gets a useful share of a small cache.
const maxShards = 64

// newCache returns a cache bounded to about topics topics and weight entries, or nil when
// topics <= 0 (caching disabled).
func newCache[K comparable, V any](topics, weight int) *cache[K, V] {
	if topics <= 0 {
		return nil
	}
	weight = max(weight, topics)
	// Keep at least 8 topics per shard so a small cache does not degenerate into 1-item shards.
	n := 1
	for n < maxShards && n*2*8 <= topics {
		n *= 2
	}
	c := &cache[K, V]{
		seed:      maphash.MakeSeed(),
		mask:      uint64(n - 1),
		maxTopics: max(1, topics/n), // round down: the totals are upper bounds
		maxWeight: max(1, weight/n),
		shards:    make([]cacheShard[K, V], n),
	}
	for i := range c.shards {
		c.shards[i].items = make(map[string]cacheItem[K, V])
	}
	return c
}

func (c *cache[K, V]) shard(topic string) *cacheShard[K, V] {
	return &c.shards[maphash.String(c.seed, topic)&c.mask]
}

// get returns the Result cached for topic at generation gen, or nil.
func (c *cache[K, V]) get(topic string, gen uint64) *Result[K, V] {
	s := c.shard(topic)
	s.mu.RLock()
	it, ok := s.items[topic]
	s.mu.RUnlock()
	if ok && it.gen == gen {
		return it.res
	}
	return nil
}

// put caches r for topic, computed by a walk that started after generation gen was loaded.
func (c *cache[K, V]) put(topic string, gen uint64, r *Result[K, V]) {
	w := r.weight()
	if w > c.maxWeight {
		return // would evict the whole shard for one result; the caller walks instead
	}
	s := c.shard(topic)
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case gen < s.gen:
		// A newer generation already exists, so r is dead on arrival (a slow walk lost a race
		// with a change). Storing it could only displace live items.
		return
	case gen > s.gen:
		// Everything here is older than gen and therefore dead: reclaim it all at once. clear
		// keeps the map's table, so a busy shard does not reallocate after every change.
		clear(s.items)
		s.weight = 0
		s.gen = gen
	}
	if _, ok := s.items[topic]; ok {
		// Same generation: both results are equally valid; keep the existing one so callers
		// that already hold it and callers that arrive later see the same pointer.
		return
	}
	for len(s.items) > 0 && (len(s.items) >= c.maxTopics || s.weight+w > c.maxWeight) {
		for k, it := range s.items {
			delete(s.items, k)
			s.weight -= int(it.weight)
			break
		}
	}
	// The caller's topic may alias a connection's read buffer (message.Message documents that);
	// the key must own its bytes.
	s.items[strings.Clone(topic)] = cacheItem[K, V]{gen: gen, res: r, weight: int32(w)}
	s.weight += w
}

// stats reports the number of cached topics and their total weight, live or dead. For tests.
func (c *cache[K, V]) stats() (topics, weight int) {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		topics += len(s.items)
		weight += s.weight
		s.mu.RUnlock()
	}
	return topics, weight
}
