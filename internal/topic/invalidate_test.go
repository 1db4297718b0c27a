package topic

import (
	"slices"
	"sync"
	"sync/atomic"
	"testing"
)

// The invalidation classes of gens.bump, and topics on either side of each: one and two levels,
// shared first levels, empty levels, '$' topics.
var (
	invTopics = []string{
		"a", "a/b", "a/b/c", "a/b/c/d", "a/c", "a/", "a//b", "b", "b/b", "b/b/c", "/a", "/", "",
		"x/y/z", "$SYS/x", "$SYS", "ab", "a/bc",
	}
	invFilters = []string{
		"a", "a/b", "a/b/c", "a/+", "a/#", "a/b/#", "a/+/c", "a/", "/a", "/+", "+", "#", "+/b",
		"+/+", "+/b/#", "x/+/z", "$SYS/#", "$SYS", "ab", "b/b", "a/bc",
		"$share/g/a/+", "$share/g/a/b", "$share/g/#", "$share/g/a",
	}
)

// warmAll matches every topic twice, so the second result is the cached one.
func warmAll(x *Index[int, int]) {
	for range 2 {
		for _, tp := range invTopics {
			x.Match(tp)
		}
	}
}

// TestCacheInvalidationPerPrefix fills the cache, then subscribes and unsubscribes each filter
// class in turn and checks every topic's Match against the model: a change must retire exactly the
// cached results it can alter (any it misses shows up here as a stale result).
func TestCacheInvalidationPerPrefix(t *testing.T) {
	x := NewIndex[int, int](1024)
	m := newModel()
	// Stable subscriptions in every class, so cached results are not just empty.
	for i, s := range invFilters {
		f := mustFilter(t, s)
		x.Subscribe(f, 100+i, i)
		m.subscribe(f, 100+i, i)
	}
	check := func(step string) {
		t.Helper()
		for _, tp := range invTopics {
			if got, want := canon(t, x.Match(tp)), m.expect(tp); !slices.Equal(got, want) {
				t.Fatalf("%s: Match(%q) = %v, want %v", step, tp, got, want)
			}
		}
	}
	for i, s := range invFilters {
		f := mustFilter(t, s)
		warmAll(x)
		x.Subscribe(f, 1, i)
		m.subscribe(f, 1, i)
		check("after Subscribe(" + s + ")")
		warmAll(x)
		x.Subscribe(f, 1, -i) // replacing a value changes results too
		m.subscribe(f, 1, -i)
		check("after resubscribing " + s)
		warmAll(x)
		x.Unsubscribe(f, 1)
		m.unsubscribe(f, 1)
		check("after Unsubscribe(" + s + ")")
	}
	// And a change elsewhere leaves a cached result alone: x/y/z keeps its pointer across a
	// change under a/b. (Prefixes share a slot with a chance of about 1 in 4,000; three tries
	// make the check fail only if the rule is wrong.)
	kept := false
	for _, s := range []string{"a/b", "b/b/#", "q/+"} {
		warmAll(x)
		before := x.Match("x/y/z")
		x.Subscribe(mustFilter(t, s), 2, 0)
		kept = kept || x.Match("x/y/z") == before
	}
	if !kept {
		t.Error("changes under a/b, b/b and q retired the cached result of x/y/z")
	}
}

// TestCacheInvalidationConcurrent is the same under concurrency: readers keep every topic cached
// (so results are computed and stored while the writer changes the index) and the writer, after
// each change returns, must see it in every topic's Match.
func TestCacheInvalidationConcurrent(t *testing.T) {
	x := NewIndex[int, int](1024)
	var stop atomic.Bool
	var readers sync.WaitGroup
	for range 2 {
		readers.Go(func() {
			for !stop.Load() {
				warmAll(x)
			}
		})
	}
	defer func() {
		stop.Store(true)
		readers.Wait()
	}()
	filters := make([]Filter, len(invFilters))
	for i, s := range invFilters {
		filters[i] = mustFilter(t, s)
	}
	for round := range 300 {
		f := filters[round%len(filters)]
		x.Subscribe(f, 1, round)
		for _, tp := range invTopics {
			r := x.Match(tp)
			if want := Match(f.Path, tp); contains(r, f, 1) != want {
				t.Fatalf("round %d: after Subscribe(%v), Match(%q) has it: %v, want %v", round, f, tp, !want, want)
			}
		}
		x.Unsubscribe(f, 1)
		for _, tp := range invTopics {
			if contains(x.Match(tp), f, 1) {
				t.Fatalf("round %d: after Unsubscribe(%v), Match(%q) still has it", round, f, tp)
			}
		}
	}
}

// TestPrefixSlots pins the prefixes the slots are computed from.
func TestPrefixSlots(t *testing.T) {
	x := NewIndex[int, int](64)
	for _, c := range []struct{ topic, same1, same2 string }{
		{"a/b/c", "a/x", "a/b/d"},
		{"a", "a/z", "a"},
		{"/x/y", "/q", "/x/z"},
		{"a//b", "a/c", "a//c"},
	} {
		s1, s2 := x.cache.gens.prefixSlots(c.topic)
		if o1, _ := x.cache.gens.prefixSlots(c.same1); o1 != s1 {
			t.Errorf("%q and %q: first-level slots differ", c.topic, c.same1)
		}
		if _, o2 := x.cache.gens.prefixSlots(c.same2); o2 != s2 {
			t.Errorf("%q and %q: two-level slots differ", c.topic, c.same2)
		}
	}
}
