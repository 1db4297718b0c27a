package topic

import (
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// Index maps subscription filters to subscribers and matches published topics against them.
// K identifies a subscriber (the broker uses a *Session); V is what the broker stores per
// subscription (QoS, options, subscription identifier...). All methods are safe for concurrent use.
//
// Concurrency design:
//
//   - Readers (Match, MatchInto) take no lock that is global to the index, and in the common case
//     no lock at all: the trie is read through atomic pointers to immutable, copy-on-write node
//     contents (node.go, entries.go), and the match cache is a set-associative table of atomic
//     slots (cache.go). A cache hit and a walk write no shared memory, so concurrent publishers
//     do not contend on hot top-level nodes.
//   - Writers (Subscribe, Unsubscribe) serialize on wmu: subscribe rates are low next to publish
//     rates, and a single writer makes copy on write, node creation and pruning race-free
//     without any per-node locking among writers.
//   - Every change bumps, after it is applied, the invalidation counter that covers the topics
//     its filter can match (cache.go's gens). Match loads a topic's counters when it looks at the
//     cache and before it walks, and a cached result is served only while its counters are those
//     it was computed under, so a Match that starts after Subscribe/Unsubscribe returned sees the
//     change, and changes elsewhere in the topic space leave the result cached.
//
// Guarantees for a concurrent Match: a subscription present before Match started and not removed
// while it runs is always returned; each subscription appears at most once; subscriptions
// added or removed while it runs may or may not appear.
type Index[K comparable, V any] struct {
	root  node[K, V]
	count atomic.Int64
	cache *cache[K, V] // nil when caching is disabled
	empty *Result[K, V]

	// scratch holds *Result buffers for walks on a cache miss, so that the only allocations of a
	// miss are the exact-size immutable result and the cache key.
	scratch sync.Pool

	wmu   sync.Mutex    // serializes writers
	nodes int           // trie nodes excluding the root; guarded by wmu
	path  []*node[K, V] // Unsubscribe's scratch path; guarded by wmu
	// shareText: Subscribe keeps a new plain filter's text as given (see ShareText).
	shareText bool
}

// ShareText makes Subscribe keep a new plain filter's text as the caller gave it instead of a
// copy. It suits a caller that keeps that string itself for as long as the subscription lasts
// (the broker's subscriptions do): one copy of each distinct filter fewer. Without it the index
// copies, since a caller's string may be a substring of a larger one it would keep alive. Call
// it before the first Subscribe.
func (x *Index[K, V]) ShareText() { x.shareText = true }

// DefaultCacheWeightPerTopic is the entry budget NewIndex gives the cache per cached topic.
const DefaultCacheWeightPerTopic = 16

// NewIndex returns an empty index whose match cache holds up to cacheEntries topics (and up to
// cacheEntries*DefaultCacheWeightPerTopic matched entries in total). cacheEntries <= 0 disables
// the cache: Match then walks the trie every time.
func NewIndex[K comparable, V any](cacheEntries int) *Index[K, V] {
	return NewIndexLimits[K, V](cacheEntries, cacheEntries*DefaultCacheWeightPerTopic)
}

// NewIndexLimits is NewIndex with both cache bounds explicit: at most cacheTopics cached topics
// and at most cacheWeight cached entries in total (plain entries plus shared-group members, plus
// one per topic). A result heavier than cacheWeight/4 is not cached (Match walks and allocates it
// every time; MatchInto with a reused Result avoids the allocation), so size cacheWeight for the
// fan-out you expect.
func NewIndexLimits[K comparable, V any](cacheTopics, cacheWeight int) *Index[K, V] {
	return &Index[K, V]{
		cache: newCache[K, V](cacheTopics, cacheWeight),
		empty: &Result[K, V]{},
	}
}

// Len returns the number of subscriptions (plain subscriptions plus shared-group memberships).
func (x *Index[K, V]) Len() int { return int(x.count.Load()) }

// valid reports whether f could have come from ParseFilter.
func (f Filter) valid() bool {
	if f.Path == "" || len(f.Path) > MaxLen || scan(f.Path, true) != nil {
		return false
	}
	return f.Group == "" || scan(f.Group, false) == nil && !strings.Contains(f.Group, "/")
}

// Subscribe adds a subscription, or replaces the value of the one with the same filter (group
// included) and the same key; it reports whether it replaced one. f must come from ParseFilter:
// Subscribe panics on an invalid Filter, since that is a bug in the caller, not bad client input.
//
// The index keeps its own copy of the filter text, so f may alias a connection's read buffer.
func (x *Index[K, V]) Subscribe(f Filter, key K, val V) (replaced bool) {
	if !f.valid() {
		panic("topic: Subscribe with an invalid Filter " + f.String())
	}
	x.wmu.Lock()
	defer x.wmu.Unlock()

	// The index keeps one copy of each distinct filter's text: node levels, Entry.Filter and a
	// group's name and path are all substrings of it. A filter that already has subscriptions
	// reuses its text, so re-subscribing allocates nothing for it.
	n := x.find(f.Path)
	if f.Group == "" {
		var text string
		if n != nil {
			text = n.subs.filterText()
		}
		if text == "" {
			text = f.Path
			if !x.shareText {
				text = strings.Clone(text)
			}
			n = x.create(text)
		}
		replaced = n.subs.put(Entry[K, V]{Key: key, Val: val, Filter: text})
	} else if g := n.groupNamed(f.Group); g != nil {
		replaced = g.members.put(Entry[K, V]{Key: key, Val: val, Filter: g.full})
	} else {
		full := f.String() // a fresh string
		g = &group[K, V]{
			name: full[len(sharePrefix) : len(sharePrefix)+len(f.Group)],
			path: full[len(full)-len(f.Path):],
			full: full,
		}
		n = x.create(g.path)
		g.members.put(Entry[K, V]{Key: key, Val: val, Filter: full}) // before readers can see g
		var groups []*group[K, V]
		if gl := n.shared.Load(); gl != nil {
			groups = slices.Clone(gl.groups)
		}
		n.shared.Store(&groupList[K, V]{groups: append(groups, g)})
	}

	if !replaced {
		x.count.Add(1)
	}
	// Bump after the change is in place: a Match that loads the new counter is guaranteed to
	// walk a trie that contains it, and nothing cached earlier is served to it.
	x.invalidate(f.Path)
	return replaced
}

// find returns the node for filter path, or nil. Caller holds wmu.
func (x *Index[K, V]) find(path string) *node[K, V] {
	n := &x.root
	for rest, more := path, true; more && n != nil; {
		var level string
		level, rest, more = cut(rest)
		n = n.step(level)
	}
	return n
}

// create returns the node for filter path, creating missing nodes. New nodes' levels are
// substrings of path, which must be owned by the index. Caller holds wmu.
func (x *Index[K, V]) create(path string) *node[K, V] {
	n := &x.root
	for rest, more := path, true; more; {
		var level string
		level, rest, more = cut(rest)
		n = x.childOrCreate(n, level)
	}
	return n
}

// groupNamed returns the live group called name at n, or nil (also for a nil n).
func (n *node[K, V]) groupNamed(name string) *group[K, V] {
	if n == nil {
		return nil
	}
	return n.shared.Load().find(name)
}

func (x *Index[K, V]) childOrCreate(n *node[K, V], level string) *node[K, V] {
	if c := n.step(level); c != nil {
		return c
	}
	// Link the new node empty; Subscribe fills it (or its descendants) next. A reader that walks
	// it in between finds nothing, which is right: the subscription is not there yet.
	c := &node[K, V]{level: level}
	n.addKid(c)
	x.nodes++
	return c
}

// Unsubscribe removes the subscription with filter f (group included) and key; it reports
// whether there was one. Nodes left empty are pruned so their memory returns.
func (x *Index[K, V]) Unsubscribe(f Filter, key K) (removed bool) {
	if f.Path == "" {
		return false
	}
	x.wmu.Lock()
	defer x.wmu.Unlock()

	// Find the node, remembering the path for pruning. Under wmu the trie cannot change.
	path := x.path[:0]
	defer func() {
		clear(path) // do not pin pruned nodes until the next Unsubscribe
		x.path = path[:0]
	}()
	n := &x.root
	for rest, more := f.Path, true; more; {
		var level string
		level, rest, more = cut(rest)
		n = n.step(level)
		if n == nil {
			return false
		}
		path = append(path, n)
	}

	if f.Group == "" {
		removed = n.subs.remove(key)
	} else if gl := n.shared.Load(); gl != nil {
		if g := gl.find(f.Group); g != nil {
			if removed = g.members.remove(key); removed && g.members.empty() {
				// The last member left: drop the group. Readers still holding the old list may
				// see it with no members; they skip it.
				groups := slices.DeleteFunc(slices.Clone(gl.groups), func(o *group[K, V]) bool { return o == g })
				if len(groups) == 0 {
					n.shared.Store(nil)
				} else {
					n.shared.Store(&groupList[K, V]{groups: groups})
				}
			}
		}
	}
	if !removed {
		return false
	}
	x.count.Add(-1)

	// Prune bottom-up while nodes are empty. A reader may still be looking at a node we unlink:
	// it is empty, so it contributes nothing, and it is never relinked (a later Subscribe
	// creates a fresh node), so the reader cannot see a half-built state.
	for i := len(path) - 1; i >= 0 && path[i].empty(); i-- {
		parent := &x.root
		if i > 0 {
			parent = path[i-1]
		}
		parent.removeKid(path[i])
		x.nodes--
	}
	x.invalidate(f.Path)
	return true
}

// invalidate retires the cached results that a change to filter path could alter.
func (x *Index[K, V]) invalidate(path string) {
	if x.cache != nil {
		x.cache.gens.bump(path)
	}
}

// nodeCount returns the number of trie nodes besides the root. For tests.
func (x *Index[K, V]) nodeCount() int {
	x.wmu.Lock()
	defer x.wmu.Unlock()
	return x.nodes
}

// Match returns the subscriptions matching topic (a topic name; it is not validated). The result
// is shared and READ-ONLY and stays valid and unchanged after later changes to the index. Entries
// with the same Key are adjacent. A cache hit does not allocate.
func (x *Index[K, V]) Match(topic string) *Result[K, V] {
	var s1, s2 uint32
	var h, gen uint64
	if x.cache != nil {
		var r *Result[K, V]
		if r, h = x.cache.get(topic); r != nil {
			return r
		}
		// Load the counters before walking: the result computed below reflects at least every
		// change whose bump precedes this load, so it may be cached under that stamp.
		s1, s2 = x.cache.gens.prefixSlots(topic)
		gen = x.cache.gens.stamp(s1, s2)
	}
	s, _ := x.scratch.Get().(*Result[K, V])
	if s == nil {
		s = new(Result[K, V])
	}
	x.MatchInto(topic, s)
	r := x.freeze(s)
	if cap(s.Entries) <= maxScratchEntries {
		s.Reset()
		x.scratch.Put(s)
	}
	if x.cache != nil {
		x.cache.put(topic, h, s1, s2, gen, r)
	}
	return r
}

// maxScratchEntries keeps a one-off huge fan-out from parking a huge buffer in the pool.
const maxScratchEntries = 4096

// freeze copies the walk result s into an exact-size immutable Result with equal keys adjacent.
func (x *Index[K, V]) freeze(s *Result[K, V]) *Result[K, V] {
	if s.Empty() {
		return x.empty // immutable and shared: topics nobody listens to cost nothing
	}
	if len(s.Entries) == 1 && len(s.Shared) == 0 {
		// The commonest non-empty result (a device's own subscription): one allocation for the
		// Result and its entry together, not two.
		one := &resultOfOne[K, V]{e: [1]Entry[K, V]{s.Entries[0]}}
		one.r.Entries = one.e[:]
		return &one.r
	}
	r := &Result[K, V]{}
	if len(s.Entries) > 0 {
		r.Entries = make([]Entry[K, V], len(s.Entries))
		groupByKey(r.Entries, s.Entries)
	}
	if len(s.Shared) > 0 {
		r.Shared = slices.Clone(s.Shared)
	}
	return r
}

// resultOfOne holds a one-entry Result and its entry in one allocation.
type resultOfOne[K comparable, V any] struct {
	r Result[K, V]
	e [1]Entry[K, V]
}

// MatchInto collects the subscriptions matching topic into r, which the caller owns: r is reset
// first and its capacity reused, so once it is large enough MatchInto does not allocate. It
// bypasses the cache, and entries with equal keys are not necessarily adjacent. The Group
// pointers it stores are immutable snapshots, as with Match.
func (x *Index[K, V]) MatchInto(topic string, r *Result[K, V]) {
	r.Entries = r.Entries[:0]
	r.Shared = r.Shared[:0]
	// The '$' rule: at the root, '+' and '#' children do not match a topic starting with '$'.
	dollar := len(topic) > 0 && topic[0] == '$'
	walk(&x.root, topic, false, dollar, r)
}

// walk collects from the subtree at n, which has consumed the topic levels before rest; done
// means every level has been consumed. noWild suppresses n's '+' and '#' children (the root
// under the '$' rule). Literal descent loops; only '+' branches recurse, so the depth of the
// recursion is bounded by the number of '+' levels in the deepest matching filter.
func walk[K comparable, V any](n *node[K, V], rest string, done, noWild bool, r *Result[K, V]) {
	for {
		ks := n.kids.Load()
		// "x/#" matches x itself and everything below it, so the '#' child applies whether or
		// not levels remain.
		if ks != nil && ks.hash != nil && !noWild {
			ks.hash.collect(r)
		}
		if done {
			n.collect(r)
			return
		}
		if ks == nil {
			return
		}
		level, next, more := cut(rest)
		if ks.plus != nil && !noWild {
			walk(ks.plus, next, !more, false, r)
		}
		lit := ks.child(level)
		if lit == nil {
			return
		}
		n, rest, done, noWild = lit, next, !more, false
	}
}

// smallGroupBy is the size up to which grouping equal keys by a quadratic in-place pass beats
// building a map.
const smallGroupBy = 32

// groupByKey copies src into dst (same length) so that entries with equal keys are adjacent.
// Order is otherwise unspecified.
func groupByKey[K comparable, V any](dst, src []Entry[K, V]) {
	copy(dst, src)
	n := len(dst)
	if n <= smallGroupBy {
		// Typical results have a few entries with mostly distinct keys: after position i, pull
		// every later entry with the same key next to it.
		for i := 0; i < n; {
			k, j := dst[i].Key, i+1
			for m := j; m < n; m++ {
				if dst[m].Key == k {
					dst[j], dst[m] = dst[m], dst[j]
					j++
				}
			}
			i = j
		}
		return
	}
	// Large fan-out: counting sort by order of first appearance, O(n).
	groupOf := make(map[K]int32, n)
	ids := make([]int32, n)
	var starts []int32
	for i := range src {
		g, ok := groupOf[src[i].Key]
		if !ok {
			g = int32(len(starts))
			groupOf[src[i].Key] = g
			starts = append(starts, 0)
		}
		ids[i] = g
		starts[g]++
	}
	if len(starts) == n {
		return // all keys distinct: the copy is already grouped
	}
	sum := int32(0)
	for g, c := range starts {
		starts[g] = sum
		sum += c
	}
	for i := range src {
		dst[starts[ids[i]]] = src[i]
		starts[ids[i]]++
	}
}
