package topic

import "sync/atomic"

// Entry is one subscription: who (Key), what the broker stores for it (Val), and the filter it
// was made with (Filter: the path for a plain subscription, "$share/{group}/{path}" for a member
// of a shared one).
type Entry[K comparable, V any] struct {
	Key    K
	Val    V
	Filter string
}

// Result is the set of subscriptions matching one topic.
//
// A Result returned by Index.Match is shared between callers (it may come from the cache) and
// must be treated as read-only; it never changes afterwards, whatever happens to the index.
// A Result passed to Index.MatchInto belongs to the caller.
type Result[K comparable, V any] struct {
	// Entries are the matching plain subscriptions. From Match, entries with the same Key are
	// adjacent, so a broker can merge one subscriber's overlapping subscriptions into one
	// delivery with a single pass.
	Entries []Entry[K, V]
	// Shared holds one Group per matching shared subscription (group name + filter).
	Shared []*Group[K, V]
}

// Empty reports whether nothing matched.
func (r *Result[K, V]) Empty() bool { return len(r.Entries) == 0 && len(r.Shared) == 0 }

// Reset empties r, keeping its capacity. Only for caller-owned Results.
func (r *Result[K, V]) Reset() {
	clear(r.Entries) // drop references so reused scratch does not pin old values
	clear(r.Shared)
	r.Entries = r.Entries[:0]
	r.Shared = r.Shared[:0]
}

// weight is the cache cost of r: one for the topic plus every entry it carries.
func (r *Result[K, V]) weight() int {
	w := 1 + len(r.Entries)
	for _, g := range r.Shared {
		w += len(g.Members)
	}
	return w
}

// Group is an immutable snapshot of a shared subscription's members. A message matching it goes
// to one member: the broker starts at Next() and skips members that cannot take it.
type Group[K comparable, V any] struct {
	Name    string // the {group} of $share/{group}/{filter}
	Filter  string // the {filter}
	Members []Entry[K, V]

	next *atomic.Uint64 // owned by the live group, shared by all of its snapshots
}

// Next returns the index in Members to try first. Successive calls rotate round robin; the counter
// lives in the index's live group, so rotation carries over when membership changes and a new
// snapshot replaces this one. Safe for concurrent use.
func (g *Group[K, V]) Next() int {
	n := len(g.Members)
	if n == 0 || g.next == nil {
		return 0
	}
	return int((g.next.Add(1) - 1) % uint64(n))
}
