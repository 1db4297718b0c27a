package topic

import (
	"hash/maphash"
	"slices"
	"sync/atomic"
)

// Concurrency protocol of the trie (see Index for the whole picture):
//
//   - Writers (Subscribe, Unsubscribe) are serialized by Index.wmu. Only they change the trie,
//     so they read it with plain loads of the atomics and need no further locking among
//     themselves.
//   - Readers (Match, MatchInto) take no lock and write no shared memory: every field they read
//     is an atomic pointer to an immutable value (a kidSet, a subscription view, a group
//     list), a slot of a kidTable, or a field that never changes (a node's level). A writer changes a node by building a new
//     value and publishing it with one atomic store (copy on write), so a reader sees either the
//     old or the new state, each complete. A read lock on shared top-level nodes would write the
//     lock word on every walk and make all cores fight over those cache lines; this does not.
//   - The one exception is a large subscription set (entrySet), whose view is rebuilt lazily
//     by the first reader after a change, under that set's own mutex (see entries.go).
//   - A node is unlinked (pruned) only when it has no subscriptions and no children, and a child
//     pointer never changes while the child is linked. So the path to a live subscription is
//     stable, and a reader that raced with pruning at worst walks a detached empty node.

// node is one level of the subscription trie.
//
// A leaf, the commonest node (a device's own topic), holds one subscription and nothing else, so
// every field here is paid once per distinct filter: the node fits the 48-byte size class (see
// TestNodeSize), and whatever only inner nodes need lives in the kidSet.
type node[K comparable, V any] struct {
	// kids holds the children, wildcards included; nil for a leaf.
	kids atomic.Pointer[kidSet[K, V]]
	// subs holds the plain subscriptions whose filter ends at this node.
	subs entrySet[K, V]
	// shared holds the shared subscriptions ending here (one group per name); nil on almost
	// every node.
	shared atomic.Pointer[groupList[K, V]]
	// level is the filter level that leads here from the parent ("" for the root): a substring
	// of the filter that created the node, so it costs no allocation of its own. Holding it here
	// lets a kidTable slot point straight at the child. Never changes.
	level string
}

// kidSet is an immutable description of a node's children. The wildcard children have dedicated
// fields so the walk never looks them up by name, and they sit here rather than in the node so a
// leaf does not pay for them; a walk reads them from the kidSet it loads for the literal child
// anyway. Literal children are a short list scanned linearly (most nodes have a handful of
// children and a table costs more), or, past maxKidList, a concurrent hash table. Any change
// other than a table's in-place insert or remove is a single atomic store of a new kidSet.
type kidSet[K comparable, V any] struct {
	plus *node[K, V]
	hash *node[K, V]
	list []kid[K, V] // immutable; replaced as a whole
	tab  *kidTable[K, V]
}

// kid is a literal child with its level, kept inline so a list scan compares lengths without
// touching the child or the level's bytes (cache misses on a big trie).
type kid[K comparable, V any] struct {
	level string
	n     *node[K, V]
}

const (
	maxKidList = 16 // past this, a hash table beats scanning
	minKidTab  = 4  // below this, go back to a list so memory returns (hysteresis avoids flapping)
)

// step returns the child for one filter level, the wildcards included, or nil. Safe for readers;
// does not allocate.
func (n *node[K, V]) step(level string) *node[K, V] {
	ks := n.kids.Load()
	if ks == nil {
		return nil
	}
	switch level {
	case "+":
		return ks.plus
	case "#":
		return ks.hash
	default:
		return ks.child(level)
	}
}

// child returns the literal child for level, or nil. Safe for readers; does not allocate.
func (ks *kidSet[K, V]) child(level string) *node[K, V] {
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

// setKids publishes ks as n's children, or nil when ks has none. Caller holds wmu.
func (n *node[K, V]) setKids(ks kidSet[K, V]) {
	if ks.plus == nil && ks.hash == nil && ks.list == nil && ks.tab == nil {
		n.kids.Store(nil)
		return
	}
	n.kids.Store(&ks)
}

// addKid links c, whose level must be absent among n's children. Caller holds wmu.
func (n *node[K, V]) addKid(c *node[K, V]) {
	var ks kidSet[K, V]
	if cur := n.kids.Load(); cur != nil {
		ks = *cur
	}
	switch {
	case c.level == "+":
		ks.plus = c
	case c.level == "#":
		ks.hash = c
	case ks.tab != nil:
		t := ks.tab.insert(c)
		if t == ks.tab {
			return // in place: readers see the new slot, the kidSet is unchanged
		}
		ks.tab = t // the table was rebuilt larger
	case len(ks.list) < maxKidList:
		list := make([]kid[K, V], len(ks.list)+1) // exact size: lists are copied on every change
		copy(list, ks.list)
		list[len(ks.list)] = kid[K, V]{c.level, c}
		ks.list = list
	default:
		t := newKidTable[K, V](2 * (len(ks.list) + 1))
		for _, k := range ks.list {
			t.insert(k.n)
		}
		t.insert(c)
		ks.list, ks.tab = nil, t
	}
	n.setKids(ks)
}

// removeKid unlinks the child c. Caller holds wmu.
func (n *node[K, V]) removeKid(c *node[K, V]) {
	cur := n.kids.Load()
	if cur == nil {
		return
	}
	ks := *cur
	switch {
	case c.level == "+":
		ks.plus = nil
	case c.level == "#":
		ks.hash = nil
	case ks.tab != nil:
		t := ks.tab
		t.remove(c.level)
		switch {
		case t.live < minKidTab:
			// A table never shrinks in place; go back to a list so the memory returns.
			list := make([]kid[K, V], 0, t.live)
			t.each(func(k *node[K, V]) { list = append(list, kid[K, V]{k.level, k}) })
			ks.list, ks.tab = list, nil
			if len(list) == 0 {
				ks.list = nil
			}
		case t.live*8 < len(t.slots) && len(t.slots) > 64:
			ks.tab = t.rebuild(2 * t.live)
		default:
			return // in place
		}
	default:
		i := slices.IndexFunc(ks.list, func(k kid[K, V]) bool { return k.n == c })
		if i < 0 {
			return
		}
		if len(ks.list) == 1 {
			ks.list = nil
		} else {
			list := make([]kid[K, V], 0, len(ks.list)-1)
			list = append(list, ks.list[:i]...)
			ks.list = append(list, ks.list[i+1:]...)
		}
	}
	n.setKids(ks)
}

// empty reports whether n holds nothing and can be pruned. Caller holds wmu.
func (n *node[K, V]) empty() bool {
	return n.subs.empty() && n.shared.Load() == nil && n.kids.Load() == nil
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
// only. It is written by one writer at a time (wmu). Removal leaves a tombstone, never a
// never-used slot, so a probe sequence that a reader is following is never cut short; growth and
// compaction build a new table that the writer publishes with a new kidSet, leaving the old one
// unchanged for readers still in it.
//
// A slot points straight at the child, whose level says which key it holds. A slot is in one of
// three states, told apart by its tag and its child:
//
//   - never used: tag 0 (and no child). No key lies beyond it on a probe sequence.
//   - live: the child's level tag and the child.
//   - tombstone: a tag kept from the child that was removed, and no child. Probes pass over it.
type kidTable[K comparable, V any] struct {
	slots []atomic.Pointer[node[K, V]]
	// tags holds 32 bits of each slot's hash, so a probe walks one dense array and dereferences
	// a slot's child only when the tag matches: on a big trie every child dereference is a
	// likely cache miss. 32 bits make a false match rare enough (and it costs only a level
	// compare) while the array takes half the bytes of full hashes: a big table has 1.3 to 2.7
	// slots per child.
	tags []atomic.Uint32
	mask uint64
	live int // children present; writer only
	used int // children plus tombstones; writer only
}

// kidSeed hashes levels for every kidTable; per-process random, so levels chosen by clients
// cannot be precomputed to collide.
var kidSeed = maphash.MakeSeed()

func newKidTable[K comparable, V any](capacity int) *kidTable[K, V] {
	size := 8
	for size*3 < capacity*4 { // keep the load factor under 3/4
		size *= 2
	}
	return &kidTable[K, V]{
		slots: make([]atomic.Pointer[node[K, V]], size),
		tags:  make([]atomic.Uint32, size),
		mask:  uint64(size - 1),
	}
}

// levelHash returns where level's probe sequence starts and its tag: the hash's low bits pick
// the slot and its high bits make the tag, so the two are independent. A tag is never 0, which
// marks a never-used slot.
func (t *kidTable[K, V]) levelHash(level string) (start uint64, tag uint32) {
	h := maphash.String(kidSeed, level)
	return h & t.mask, uint32(h>>32) | 1
}

func (t *kidTable[K, V]) get(level string) *node[K, V] {
	i, h := t.levelHash(level)
	for ; ; i = (i + 1) & t.mask {
		switch t.tags[i].Load() {
		case 0:
			// Never used (or being filled right now by an insert, which this lookup may miss:
			// it was not there when the lookup started). No key lies beyond a never-used slot.
			return nil
		case h:
			// The child decides; the tag is only a filter. A tombstone (no child) whose level had
			// the same tag is passed over.
			if c := t.slots[i].Load(); c != nil && c.level == level {
				return c
			}
		}
	}
}

// insert adds a child whose level is not present and returns the table now holding it: t, or a
// larger rebuilt table when t is too full. Caller holds wmu.
func (t *kidTable[K, V]) insert(c *node[K, V]) *kidTable[K, V] {
	if (t.used+1)*4 > len(t.slots)*3 {
		nt := t.rebuild(2 * (t.live + 1))
		nt.insert(c)
		return nt
	}
	i, h := t.levelHash(c.level)
	for ; ; i = (i + 1) & t.mask {
		if t.tags[i].Load() == 0 {
			t.used++
		} else if t.slots[i].Load() != nil {
			continue
		}
		// Child first, then its tag: a reader only follows a tag to a child that is there.
		// Reusing a tombstone is safe: until the tag changes, readers see the tombstone's old
		// tag and either skip the slot or compare the new child's level.
		t.slots[i].Store(c)
		t.tags[i].Store(h)
		t.live++
		return t
	}
}

func (t *kidTable[K, V]) remove(level string) {
	i, h := t.levelHash(level)
	for ; ; i = (i + 1) & t.mask {
		switch t.tags[i].Load() {
		case 0:
			return
		case h:
			if c := t.slots[i].Load(); c != nil && c.level == level {
				// Tombstone: no child, tag kept, so the slot stays "used" for probing readers.
				t.slots[i].Store(nil)
				t.live--
				return
			}
		}
	}
}

// rebuild returns a new table with t's children and room for capacity.
func (t *kidTable[K, V]) rebuild(capacity int) *kidTable[K, V] {
	nt := newKidTable[K, V](max(capacity, t.live+1))
	t.each(func(c *node[K, V]) { nt.insert(c) })
	return nt
}

func (t *kidTable[K, V]) each(f func(*node[K, V])) {
	for i := range t.slots {
		if c := t.slots[i].Load(); c != nil {
			f(c)
		}
	}
}
