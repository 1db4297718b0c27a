package topic

import (
	"slices"
	"sync"
	"sync/atomic"
)

// Locking protocol for the trie (see Index for the whole picture):
//
//   - Every field of a node is written only by a writer holding Index.wmu AND the node's mu in
//     write mode. Writers therefore read node fields with wmu alone, without taking mu.
//   - Readers (Match, MatchInto) hold a node's mu in read mode while they read its fields, and
//     never hold two node locks at once: they copy the child pointers they need, release, descend.
//   - A node is unlinked (pruned) only when it has no subscriptions and no children, and a child
//     pointer never changes while the child is linked. So the path to a live subscription is
//     stable, and a reader that raced with pruning at worst walks a detached empty node.

// node is one level of the subscription trie.
type node[K comparable, V any] struct {
	mu sync.RWMutex

	// level is this node's literal level; used to find it in a parent's kids list and to unlink
	// it. It is a substring of the filter that created the node, so it costs no allocation.
	level string

	// Literal children: a short slice scanned linearly while small (most nodes have a handful of
	// children and a map costs hundreds of bytes), replaced by a map once it grows past maxKidList.
	// Wildcard children live in dedicated fields so the walk never looks them up by name.
	kids   []*node[K, V]
	kidMap map[string]*node[K, V]
	plus   *node[K, V]
	hash   *node[K, V]

	// subs holds the plain subscriptions whose filter ends at this node.
	subs subSet[K, V]
	// shared holds the shared subscriptions ending here; nil on almost every node, so it is a
	// pointer to keep node small.
	shared *sharedGroups[K, V]
}

const (
	maxKidList = 16 // past this, a map beats scanning
	minKidMap  = 4  // below this, go back to a list so memory returns (hysteresis avoids flapping)
)

// child returns the literal child for level, or nil. Used by readers (under n.mu.RLock) and by
// writers (under wmu); it does not allocate.
func (n *node[K, V]) child(level string) *node[K, V] {
	if n.kidMap != nil {
		return n.kidMap[level]
	}
	for _, k := range n.kids {
		if k.level == level {
			return k
		}
	}
	return nil
}

// addKid links c as a literal child. Caller holds wmu and n.mu.
func (n *node[K, V]) addKid(c *node[K, V]) {
	if n.kidMap != nil {
		n.kidMap[c.level] = c
		return
	}
	if len(n.kids) < maxKidList {
		n.kids = append(n.kids, c)
		return
	}
	m := make(map[string]*node[K, V], 2*maxKidList)
	for _, k := range n.kids {
		m[k.level] = k
	}
	m[c.level] = c
	n.kidMap, n.kids = m, nil
}

// removeKid unlinks the literal child c. Caller holds wmu and n.mu.
func (n *node[K, V]) removeKid(c *node[K, V]) {
	if n.kidMap != nil {
		delete(n.kidMap, c.level)
		if len(n.kidMap) < minKidMap {
			// Maps never shrink; rebuild a list so a node that once had many children gives the
			// memory back.
			kids := make([]*node[K, V], 0, len(n.kidMap))
			for _, k := range n.kidMap {
				kids = append(kids, k)
			}
			n.kids, n.kidMap = kids, nil
		}
		return
	}
	i := slices.Index(n.kids, c)
	if i < 0 {
		return
	}
	last := len(n.kids) - 1
	n.kids[i] = n.kids[last]
	n.kids[last] = nil
	n.kids = n.kids[:last]
	if last == 0 {
		n.kids = nil
	}
}

// empty reports whether n holds nothing and can be pruned. Caller holds wmu.
func (n *node[K, V]) empty() bool {
	return len(n.subs.list) == 0 && n.shared == nil && len(n.kids) == 0 && n.kidMap == nil &&
		n.plus == nil && n.hash == nil
}

// collect appends what n holds to r. Caller holds n.mu in read mode, which keeps subs and the
// group member lists still while they are copied or snapshotted.
func (n *node[K, V]) collect(r *Result[K, V]) {
	r.Entries = append(r.Entries, n.subs.list...)
	if n.shared != nil {
		for _, g := range n.shared.list {
			r.Shared = append(r.Shared, g.snapshot())
		}
	}
}

// subSet is a set of entries keyed by K: a slice, so readers copy it with one append, plus an
// index map once it is too long to scan (a popular filter can have many subscribers).
type subSet[K comparable, V any] struct {
	list []Entry[K, V]
	idx  map[K]int32 // nil while len(list) <= maxSubScan
}

const maxSubScan = 8

func (s *subSet[K, V]) find(key K) int {
	if s.idx != nil {
		if i, ok := s.idx[key]; ok {
			return int(i)
		}
		return -1
	}
	for i := range s.list {
		if s.list[i].Key == key {
			return i
		}
	}
	return -1
}

// put adds e, or replaces the entry with e's key in place; it reports whether it replaced.
func (s *subSet[K, V]) put(e Entry[K, V]) (replaced bool) {
	if i := s.find(e.Key); i >= 0 {
		s.list[i] = e
		return true
	}
	s.list = append(s.list, e)
	switch {
	case s.idx != nil:
		s.idx[e.Key] = int32(len(s.list) - 1)
	case len(s.list) > maxSubScan:
		s.idx = make(map[K]int32, len(s.list))
		for i := range s.list {
			s.idx[s.list[i].Key] = int32(i)
		}
	}
	return false
}

// remove deletes the entry with key; order is not preserved (swap with the last).
func (s *subSet[K, V]) remove(key K) bool {
	i := s.find(key)
	if i < 0 {
		return false
	}
	last := len(s.list) - 1
	if i != last {
		s.list[i] = s.list[last]
		if s.idx != nil {
			s.idx[s.list[i].Key] = int32(i)
		}
	}
	s.list[last] = Entry[K, V]{} // drop references held by the vacated slot
	s.list = s.list[:last]
	if s.idx != nil {
		delete(s.idx, key)
		if len(s.list) <= maxSubScan/2 {
			s.idx = nil
		}
	}
	switch {
	case last == 0:
		s.list = nil
	case cap(s.list) > 64 && last < cap(s.list)/4:
		// Give back the backing array of a set that shrank a lot.
		s.list = slices.Clone(s.list)
	}
	return true
}

// sharedGroups are the shared subscriptions whose filter ends at one node, one per group name.
// Few filters have more than a couple of groups, so a list is enough.
type sharedGroups[K comparable, V any] struct {
	list []*group[K, V]
}

func (s *sharedGroups[K, V]) find(name string) int {
	for i, g := range s.list {
		if g.name == name {
			return i
		}
	}
	return -1
}

// group is the live state of one shared subscription (group name + filter).
type group[K comparable, V any] struct {
	name    string
	path    string
	full    string // "$share/name/path", the Entry.Filter of every member
	members subSet[K, V]
	// next is the round-robin counter. It belongs to the live group so rotation continues across
	// snapshots: every Group snapshot points at it.
	next atomic.Uint64
	// snap is the immutable snapshot handed to readers, or nil after a membership change. It is
	// rebuilt lazily by the first reader rather than by every Subscribe, so filling a big group
	// costs O(members) once instead of O(members) per join.
	snap atomic.Pointer[Group[K, V]]
}

// snapshot returns the current immutable view of g. Caller holds the owning node's mu in read
// mode: writers change members (and clear snap) only under the write lock, so a snapshot built
// here always matches the members it is stored for.
func (g *group[K, V]) snapshot() *Group[K, V] {
	if s := g.snap.Load(); s != nil {
		return s
	}
	s := &Group[K, V]{Name: g.name, Filter: g.path, Members: slices.Clone(g.members.list), next: &g.next}
	if g.snap.CompareAndSwap(nil, s) {
		return s
	}
	return g.snap.Load() // another reader built an identical one first
}
