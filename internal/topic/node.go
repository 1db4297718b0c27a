package topic

import (
	"hash/maphash"
	"sync/atomic"
)

// Concurrency protocol of the trie (see Index for the whole picture):
//
//   - Writers (Subscribe, Unsubscribe) are serialized by Index.wmu. Only they change the trie,
//     so they read it with plain loads of the atomics and need no further locking among
//     themselves.
//   - Readers (Match, MatchInto) take no lock and write no shared memory: every field they read
//     is an atomic pointer to an immutable value (a child list, a subscription view, a group
//     list) or to a node, or a slot of a kidTable. A writer changes a node by building a new
//     value and publishing it with one atomic store (copy on write), so a reader sees either the
//     old or the new state, each complete. A read lock on shared top-level nodes would write the
//     lock word on every walk and make all cores fight over those cache lines; this does not.
//   - The one exception is a large subscription set (entrySet), whose view is rebuilt lazily
//     by the first reader after a change, under that set's own mutex (see entries.go).
//   - A node is unlinked (pruned) only when it has no subscriptions and no children, and a child
//     pointer never changes while the child is linked. So the path to a live subscription is
//     stable, and a reader that raced with pruning at worst walks a detached empty node.

// node is one level of the subscription trie.
type node[K comparable, V any] struct {
	// Literal children, looked up by level. Wildcard children have dedicated fields so the walk
	// never looks them up by name.
	kids atomic.Pointer[kidSet[K, V]]
	plus atomic.Pointer[node[K, V]]
	hash atomic.Pointer[node[K, V]]

	// subs holds the plain subscriptions whose filter ends at this node.
	subs entrySet[K, V]
	// shared holds the shared subscriptions ending here (one group per name); nil on almost
	// every node.
	shared atomic.Pointer[groupList[K, V]]
}

// kidSet is an immutable description of a node's literal children: a short list scanned
// linearly (most nodes have a handful of children and a table costs more), or, past maxKidList, a
// concurrent hash table. Switching between the two is a single atomic store of a new kidSet.
type kidSet[K comparable, V any] struct {
	list []kid[K, V] // immutable; replaced as a whole
	tab  *kidTable[K, V]
}

// kid is a literal child with its level, kept inline so a list scan compares lengths without
// touching the child or the level's bytes (cache misses on a big trie). The level is a substring
// of the filter that created the child, so it costs no allocation of its own.
type kid[K comparable, V any] struct {
	level string
	n     *node[K, V]
}

const (
	maxKidList = 16 // past this, a hash table beats scanning
	minKidTab  = 4  // below this, go back to a list so memory returns (hysteresis avoids flapping)
)

// child returns the literal child for level, or nil. Safe for readers; does not allocate.
// step returns the child for one filter level, the wildcards included, or nil.
func (n *node[K, V]) step(level string) *node[K, V] {
	switch level {
	case "+":
		return n.plus.Load()
	case "#":
		return n.hash.Load()
	default:
		return n.child(level)
	}
}

func (n *node[K, V]) child(level string) *node[K, V] {
	ks := n.kids.Load()
	if ks == nil {
		return nil
	}
	if ks.tab != nil {
		return ks.tab.get(level)
	}
	for i := range ks.list {
		if ks.list[i].level == level {
			return ks.list[i].n
		}
	}
	return nil
}

// addKid links c as the literal child for level, which must be absent. Caller holds wmu.
func (n *node[K, V]) addKid(level string, c *node[K, V]) {
	ks := n.kids.Load()
	switch {
	case ks == nil:
		n.kids.Store(&kidSet[K, V]{list: []kid[K, V]{{level, c}}})
	case ks.tab != nil:
		if t := ks.tab.insert(level, c); t != ks.tab {
			n.kids.Store(&kidSet[K, V]{tab: t}) // the table was rebuilt larger
		}
	case len(ks.list) < maxKidList:
		list := make([]kid[K, V], len(ks.list)+1) // exact size: lists are copied on every change
		copy(list, ks.list)
		list[len(ks.list)] = kid[K, V]{level, c}
		n.kids.Store(&kidSet[K, V]{list: list})
	default:
		t := newKidTable[K, V](2 * (len(ks.list) + 1))
		for _, k := range ks.list {
			t.insert(k.level, k.n)
		}
		t.insert(level, c)
		n.kids.Store(&kidSet[K, V]{tab: t})
	}
}

// removeKid unlinks the literal child for level. Caller holds wmu.
func (n *node[K, V]) removeKid(level string) {
	ks := n.kids.Load()
	if ks == nil {
		return
	}
	if ks.tab != nil {
		t := ks.tab
		t.remove(level)
		switch {
		case t.live < minKidTab:
			// A table never shrinks in place; go back to a list so the memory returns.
			list := make([]kid[K, V], 0, t.live)
			t.each(func(k *kid[K, V]) { list = append(list, *k) })
			n.kids.Store(&kidSet[K, V]{list: list})
		case t.live*8 < len(t.slots) && len(t.slots) > 64:
			n.kids.Store(&kidSet[K, V]{tab: t.rebuild(2 * t.live)})
		}
		return
	}
	for i := range ks.list {
		if ks.list[i].level == level {
			if len(ks.list) == 1 {
				n.kids.Store(nil)
				return
			}
			list := make([]kid[K, V], 0, len(ks.list)-1)
			list = append(list, ks.list[:i]...)
			list = append(list, ks.list[i+1:]...)
			n.kids.Store(&kidSet[K, V]{list: list})
			return
		}
	}
}

// empty reports whether n holds nothing and can be pruned. Caller holds wmu.
func (n *node[K, V]) empty() bool {
	return n.subs.empty() && n.shared.Load() == nil && n.kids.Load() == nil &&
		n.plus.Load() == nil && n.hash.Load() == nil
}

// collect appends what n holds to r. Safe for readers.
func (n *node[K, V]) collect(r *Result[K, V]) {
	r.Entries = append(r.Entries, n.subs.load()...)
	if gl := n.shared.Load(); gl != nil {
		for _, g := range gl.groups {
			if s := g.snapshot(); len(s.Members) > 0 {
				r.Shared = append(r.Shared, s)
			}
		}
	}
}

// kidTable is an open-addressing hash table of children that readers probe with atomic loads
// only. It is written by one writer at a time (wmu). Removal leaves a tombstone, never nil, so a
// probe sequence that a reader is following is never cut short; growth and compaction build a
// new table that the writer publishes with a new kidSet, leaving the old one unchanged for
// readers still in it.
type kidTable[K comparable, V any] struct {
	slots []atomic.Pointer[tabKid[K, V]]
	// hashes mirrors each slot's hash (0 for a never-used slot), so a probe walks one dense array
	// and dereferences a slot's entry only when the hash matches: on a big trie every entry
	// dereference is a likely cache miss.
	hashes []atomic.Uint64
	mask   uint64
	live   int // children present; writer only
	used   int // children plus tombstones; writer only
}

// tabKid is a table slot's content; hash lets a probe skip non-matching slots without comparing
// strings.
type tabKid[K comparable, V any] struct {
	hash uint64
	kid[K, V]
}

// kidSeed hashes levels for every kidTable; per-process random, so levels chosen by clients
// cannot be precomputed to collide.
var kidSeed = maphash.MakeSeed()

// isTomb reports whether a slot holds a tombstone: an entry without a node, left by remove.
func isTomb[K comparable, V any](k *tabKid[K, V]) bool { return k.n == nil }

func newKidTable[K comparable, V any](capacity int) *kidTable[K, V] {
	size := 8
	for size*3 < capacity*4 { // keep the load factor under 3/4
		size *= 2
	}
	return &kidTable[K, V]{
		slots:  make([]atomic.Pointer[tabKid[K, V]], size),
		hashes: make([]atomic.Uint64, size),
		mask:   uint64(size - 1),
	}
}

// levelHash never returns 0, which marks a never-used slot in kidTable.hashes.
func levelHash(level string) uint64 { return maphash.String(kidSeed, level) | 1 }

func (t *kidTable[K, V]) get(level string) *node[K, V] {
	h := levelHash(level)
	for i := h & t.mask; ; i = (i + 1) & t.mask {
		switch t.hashes[i].Load() {
		case 0:
			// Never used (or being filled right now by an insert, which this lookup may miss:
			// it was not there when the lookup started). No key lies beyond a never-used slot.
			return nil
		case h:
			// The entry decides; the hash array is only a filter. A tombstone (no node) whose
			// level had the same hash is passed over.
			if k := t.slots[i].Load(); k != nil && k.n != nil && k.level == level {
				return k.n
			}
		}
	}
}

// insert adds a child that is not present and returns the table now holding it: t, or a larger
// rebuilt table when t is too full. Caller holds wmu.
func (t *kidTable[K, V]) insert(level string, c *node[K, V]) *kidTable[K, V] {
	if (t.used+1)*4 > len(t.slots)*3 {
		nt := t.rebuild(2 * (t.live + 1))
		nt.insert(level, c)
		return nt
	}
	h := levelHash(level)
	e := &tabKid[K, V]{hash: h, kid: kid[K, V]{level, c}}
	for i := h & t.mask; ; i = (i + 1) & t.mask {
		k := t.slots[i].Load()
		if k == nil {
			t.used++
		} else if !isTomb(k) {
			continue
		}
		// Entry first, then its hash: a reader only follows a hash to an entry that is there.
		// Reusing a tombstone is safe: until the hash changes, readers see the tombstone's old
		// hash and either skip the slot or find the new entry.
		t.slots[i].Store(e)
		t.hashes[i].Store(h)
		t.live++
		return t
	}
}

func (t *kidTable[K, V]) remove(level string) {
	h := levelHash(level)
	for i := h & t.mask; ; i = (i + 1) & t.mask {
		k := t.slots[i].Load()
		if k == nil {
			return
		}
		if k.hash == h && !isTomb(k) && k.level == level {
			// Tombstone: no node, hash kept, so the slot stays "used" for probing readers.
			t.slots[i].Store(&tabKid[K, V]{hash: k.hash})
			t.live--
			return
		}
	}
}

// rebuild returns a new table with t's children and room for capacity.
func (t *kidTable[K, V]) rebuild(capacity int) *kidTable[K, V] {
	nt := newKidTable[K, V](max(capacity, t.live+1))
	t.each(func(k *kid[K, V]) { nt.insert(k.level, k.n) })
	return nt
}

func (t *kidTable[K, V]) each(f func(*kid[K, V])) {
	for i := range t.slots {
		if k := t.slots[i].Load(); k != nil && !isTomb(k) {
			f(&k.kid)
		}
	}
}
