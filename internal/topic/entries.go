package topic

import (
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"
)

// entrySet is a set of entries keyed by K (the subscriptions of one filter, or the members of one
// shared group) that readers load without taking a lock in the common case.
//
// Small sets are copy on write: the view is the whole set, an immutable slice that the writer
// replaces on every change — copying up to maxSmallSet entries is cheaper than anything cleverer.
//
// A popular filter can have many subscribers, and copying the whole set on every Subscribe would
// make filling it quadratic. So a set that outgrows maxSmallSet moves into a bigSet that the
// writer changes in place (with an index map for O(1) replace and remove), dropping the view; the
// first reader afterwards rebuilds the view under bigSet.mu. Readers therefore pay one O(n) copy
// per change that they observe, which they were about to pay anyway to copy the entries into
// their Result.
type entrySet[K comparable, V any] struct {
	view atomic.Pointer[entryView[K, V]] // nil: empty (small) or stale (big)
	big  atomic.Pointer[bigSet[K, V]]    // nil while the set is small
}

// entryView is an immutable list of entries: n of them from first. It is a pointer and a length
// rather than a slice (16 bytes, not 24) so that a view of one entry, every leaf of a device
// fleet, holds its entry inline in one 48-byte allocation (oneView) where a slice header and a
// separate array would take two allocations and 56 bytes.
type entryView[K comparable, V any] struct {
	first *Entry[K, V]
	n     int
}

// oneView is a view of one entry and the entry, in one allocation.
type oneView[K comparable, V any] struct {
	v entryView[K, V]
	e Entry[K, V]
}

// viewOf returns a view of list, which must not change afterwards.
func viewOf[K comparable, V any](list []Entry[K, V]) *entryView[K, V] {
	if len(list) == 1 {
		return viewOfOne(list[0])
	}
	return &entryView[K, V]{first: unsafe.SliceData(list), n: len(list)}
}

func viewOfOne[K comparable, V any](e Entry[K, V]) *entryView[K, V] {
	o := &oneView[K, V]{e: e}
	o.v = entryView[K, V]{first: &o.e, n: 1}
	return &o.v
}

// list returns the entries; the slice is immutable.
func (v *entryView[K, V]) list() []Entry[K, V] { return unsafe.Slice(v.first, v.n) }

type bigSet[K comparable, V any] struct {
	mu   sync.Mutex // orders the writer's in-place changes against readers' view rebuilds
	list []Entry[K, V]
	idx  map[K]int32 // writer only
}

const (
	maxSmallSet = 8
	minBigSet   = 4 // a big set that shrinks to this goes back to small (hysteresis)
)

// load returns the current entries. The slice is immutable. Safe for readers.
func (s *entrySet[K, V]) load() []Entry[K, V] {
	for {
		if v := s.view.Load(); v != nil {
			return v.list()
		}
		b := s.big.Load()
		if b == nil {
			// Small and empty — or a big set that just went back to small: the writer stores the
			// new view before clearing big, so looking again finds it.
			if v := s.view.Load(); v != nil {
				return v.list()
			}
			return nil
		}
		b.mu.Lock()
		if s.big.Load() != b {
			b.mu.Unlock() // went back to small meanwhile; b is frozen and must not be published
			continue
		}
		v := s.view.Load()
		if v == nil {
			v = viewOf(slices.Clone(b.list))
			s.view.Store(v)
		}
		b.mu.Unlock()
		return v.list()
	}
}

// filterText returns the Filter of one entry, "" when the set is empty. Unlike load it never
// rebuilds a big set's view: Subscribe asks it on every call to reuse the filter's text, and a
// rebuild there would copy a popular filter's whole set once per new subscriber, making a connect
// storm onto one filter quadratic. Caller holds wmu, which makes the writer's list stable.
func (s *entrySet[K, V]) filterText() string {
	if b := s.big.Load(); b != nil {
		if len(b.list) > 0 {
			return b.list[0].Filter
		}
		return ""
	}
	if v := s.view.Load(); v != nil && v.n > 0 {
		return v.first.Filter
	}
	return ""
}

// empty reports whether the set has no entries. Caller holds wmu.
func (s *entrySet[K, V]) empty() bool { return s.view.Load() == nil && s.big.Load() == nil }

// put adds e, or replaces the entry with e's key; it reports whether it replaced. Caller holds wmu.
func (s *entrySet[K, V]) put(e Entry[K, V]) (replaced bool) {
	if b := s.big.Load(); b != nil {
		b.mu.Lock()
		if i, ok := b.idx[e.Key]; ok {
			b.list[i] = e
			replaced = true
		} else {
			b.list = append(b.list, e)
			b.idx[e.Key] = int32(len(b.list) - 1)
		}
		s.view.Store(nil)
		b.mu.Unlock()
		return replaced
	}
	var cur []Entry[K, V]
	if v := s.view.Load(); v != nil {
		cur = v.list()
	}
	for i := range cur {
		if cur[i].Key == e.Key {
			if len(cur) == 1 {
				s.view.Store(viewOfOne(e))
				return true
			}
			list := slices.Clone(cur)
			list[i] = e
			s.view.Store(viewOf(list))
			return true
		}
	}
	switch {
	case len(cur) == 0:
		s.view.Store(viewOfOne(e))
		return false
	case len(cur) < maxSmallSet:
		list := make([]Entry[K, V], len(cur)+1) // exact size: small lists are copied on every change
		copy(list, cur)
		list[len(cur)] = e
		s.view.Store(viewOf(list))
		return false
	}
	b := &bigSet[K, V]{list: make([]Entry[K, V], 0, 2*(len(cur)+1)), idx: make(map[K]int32, 2*(len(cur)+1))}
	b.list = append(append(b.list, cur...), e)
	for i := range b.list {
		b.idx[b.list[i].Key] = int32(i)
	}
	s.big.Store(b) // before dropping the view, so a reader that finds no view finds b
	s.view.Store(nil)
	return false
}

// remove deletes the entry with key; it reports whether there was one. Caller holds wmu.
func (s *entrySet[K, V]) remove(key K) bool {
	if b := s.big.Load(); b != nil {
		i, ok := b.idx[key]
		if !ok {
			return false
		}
		b.mu.Lock()
		last := len(b.list) - 1
		if int(i) != last {
			b.list[i] = b.list[last]
			b.idx[b.list[i].Key] = i
		}
		b.list[last] = Entry[K, V]{} // drop references held by the vacated slot
		b.list = b.list[:last]
		delete(b.idx, key)
		switch {
		case last <= minBigSet:
			s.view.Store(viewOf(slices.Clone(b.list)))
			s.big.Store(nil) // after the view: see load
		case cap(b.list) > 64 && last < cap(b.list)/4:
			b.list = slices.Clone(b.list) // give back the backing array of a set that shrank a lot
			fallthrough
		default:
			s.view.Store(nil)
		}
		b.mu.Unlock()
		return true
	}
	v := s.view.Load()
	if v == nil {
		return false
	}
	cur := v.list()
	for i := range cur {
		if cur[i].Key == key {
			switch len(cur) {
			case 1:
				s.view.Store(nil)
			case 2:
				s.view.Store(viewOfOne(cur[1-i]))
			default:
				list := make([]Entry[K, V], 0, len(cur)-1)
				list = append(append(list, cur[:i]...), cur[i+1:]...)
				s.view.Store(viewOf(list))
			}
			return true
		}
	}
	return false
}

// groupList is the immutable list of the shared subscriptions ending at one node, one per group
// name. Few filters have more than a couple of groups, so a list replaced on change is enough.
type groupList[K comparable, V any] struct {
	groups []*group[K, V]
}

// group is the live state of one shared subscription (group name + filter).
type group[K comparable, V any] struct {
	name    string
	path    string
	full    string // "$share/name/path", the Entry.Filter of every member; name and path alias it
	members entrySet[K, V]
	// next is the round-robin counter. It belongs to the live group so rotation continues across
	// snapshots: every Group snapshot points at it.
	next atomic.Uint64
	// snap is the last snapshot handed out; it is reused while its Members is still the members'
	// current view.
	snap atomic.Pointer[Group[K, V]]
}

// snapshot returns an immutable view of g. Members aliases the members' immutable view, so a
// snapshot costs one small allocation per membership change, not a copy. Safe for readers.
func (g *group[K, V]) snapshot() *Group[K, V] {
	list := g.members.load()
	if s := g.snap.Load(); s != nil && len(s.Members) == len(list) && (len(list) == 0 || &s.Members[0] == &list[0]) {
		return s // same view: views are immutable and every change makes a new one
	}
	s := &Group[K, V]{Name: g.name, Filter: g.path, Members: list, next: &g.next}
	g.snap.Store(s) // racing readers store equivalent snapshots; any of them will do
	return s
}

func (l *groupList[K, V]) find(name string) *group[K, V] {
	if l != nil {
		for _, g := range l.groups {
			if g.name == name {
				return g
			}
		}
	}
	return nil
}
