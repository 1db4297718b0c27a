package topic

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unsafe"
)

// Every case of the reference matcher's table, one filter per index, through both Match and
// MatchInto, with and without the cache.
func TestIndexMatchCases(t *testing.T) {
	for _, cache := range []int{0, 64} {
		for _, tt := range matchCases {
			x := NewIndex[int, int](cache)
			x.Subscribe(mustFilter(t, tt.filter), 1, 7)
			for range 2 { // the second round is served from the cache when enabled
				r := x.Match(tt.topic)
				if got := len(r.Entries) == 1; got != tt.want || len(r.Entries) > 1 {
					t.Errorf("cache=%d: Index{%q}.Match(%q) = %v, want match=%v", cache, tt.filter, tt.topic, r.Entries, tt.want)
				}
				var into Result[int, int]
				x.MatchInto(tt.topic, &into)
				if got := len(into.Entries) == 1; got != tt.want || len(into.Entries) > 1 {
					t.Errorf("Index{%q}.MatchInto(%q) = %v, want match=%v", tt.filter, tt.topic, into.Entries, tt.want)
				}
			}
		}
	}
}

// All filters of the table in one index, every topic of the table against it.
func TestIndexAllCasesTogether(t *testing.T) {
	x := NewIndex[int, int](64)
	m := newModel()
	for i, tt := range matchCases {
		f := mustFilter(t, tt.filter)
		x.Subscribe(f, i%5, i)
		m.subscribe(f, i%5, i)
	}
	for _, tt := range matchCases {
		checkAgree(t, x, m, tt.topic)
	}
}

func TestDollarRuleSharedAndRoot(t *testing.T) {
	x := NewIndex[int, int](16)
	for i, s := range []string{"#", "+/broker", "$share/g/#", "$share/g/+/broker", "$SYS/#", "$share/g/$SYS/+"} {
		x.Subscribe(mustFilter(t, s), i, 0)
	}
	r := x.Match("$SYS/broker")
	var plain, shared []string
	for _, e := range r.Entries {
		plain = append(plain, e.Filter)
	}
	for _, g := range r.Shared {
		shared = append(shared, g.Filter)
	}
	if !slices.Equal(plain, []string{"$SYS/#"}) || !slices.Equal(shared, []string{"$SYS/+"}) {
		t.Fatalf("$SYS/broker matched plain %q shared %q, want [$SYS/#] and [$SYS/+]", plain, shared)
	}
	if r := x.Match("SYS/broker"); len(r.Entries) != 2 || len(r.Shared) != 2 {
		t.Fatalf("SYS/broker matched %d plain %d shared, want 2 and 2", len(r.Entries), len(r.Shared))
	}
}

func TestSharedSubscriptions(t *testing.T) {
	x := NewIndex[int, int](16)
	// Two groups on one filter: both match, each is a separate Group.
	x.Subscribe(mustFilter(t, "$share/g1/a/+"), 1, 0)
	x.Subscribe(mustFilter(t, "$share/g1/a/+"), 2, 0)
	x.Subscribe(mustFilter(t, "$share/g2/a/+"), 3, 0)
	// One group with a second filter: a distinct shared subscription.
	x.Subscribe(mustFilter(t, "$share/g1/a/#"), 4, 0)
	// A plain subscription on the same filter is not part of any group.
	x.Subscribe(mustFilter(t, "a/+"), 1, 0)

	r := x.Match("a/b")
	got := map[string][]int{}
	for _, g := range r.Shared {
		k := g.Name + " " + g.Filter
		if _, dup := got[k]; dup {
			t.Fatalf("group %s twice", k)
		}
		for _, e := range g.Members {
			got[k] = append(got[k], e.Key)
			if e.Filter != "$share/"+g.Name+"/"+g.Filter {
				t.Errorf("member filter %q in group %s", e.Filter, k)
			}
		}
		slices.Sort(got[k])
	}
	want := map[string][]int{"g1 a/+": {1, 2}, "g2 a/+": {3}, "g1 a/#": {4}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("shared groups = %v, want %v", got, want)
	}
	if len(r.Entries) != 1 || r.Entries[0].Key != 1 || r.Entries[0].Filter != "a/+" {
		t.Fatalf("plain entries = %v, want key 1 on a/+", r.Entries)
	}
	if r := x.Match("a"); len(r.Shared) != 1 || r.Shared[0].Filter != "a/#" {
		t.Fatalf("Match(a) shared = %v, want only g1 a/#", r.Shared)
	}
	if n := x.Len(); n != 5 {
		t.Fatalf("Len = %d, want 5", n)
	}
}

func TestGroupNextRoundRobin(t *testing.T) {
	x := NewIndex[int, int](16)
	f := mustFilter(t, "$share/g/t")
	for k := range 3 {
		x.Subscribe(f, k, 0)
	}
	g := x.Match("t").Shared[0]
	var seq []int
	for range 6 {
		seq = append(seq, g.Next())
	}
	if !slices.Equal(seq, []int{0, 1, 2, 0, 1, 2}) {
		t.Fatalf("Next sequence %v, want 0 1 2 0 1 2", seq)
	}
	// The counter belongs to the live group: a fresh snapshot (after a join) continues it, and an
	// old snapshot keeps working.
	x.Subscribe(f, 3, 0)
	g2 := x.Match("t").Shared[0]
	if g2 == g || len(g2.Members) != 4 || len(g.Members) != 3 {
		t.Fatalf("snapshot not replaced after join: old %d members, new %d", len(g.Members), len(g2.Members))
	}
	if n := g2.Next(); n != 6%4 {
		t.Fatalf("Next after join = %d, want %d (counter continues)", n, 6%4)
	}
	if n := g.Next(); n != 7%3 {
		t.Fatalf("old snapshot Next = %d, want %d", n, 7%3)
	}
	var zero Group[int, int]
	if zero.Next() != 0 {
		t.Fatal("zero Group Next != 0")
	}
}

func TestSubscribeReplace(t *testing.T) {
	x := NewIndex[int, int](16)
	a, shared := mustFilter(t, "a/+"), mustFilter(t, "$share/g/a/+")
	steps := []struct {
		f        Filter
		key, val int
		replaced bool
		n        int
	}{
		{a, 1, 10, false, 1},
		{a, 1, 11, true, 1},  // same filter, same key: replace
		{a, 2, 20, false, 2}, // other key
		{mustFilter(t, "a/#"), 1, 12, false, 3},
		{shared, 1, 13, false, 4}, // same path, but shared: a distinct subscription
		{shared, 1, 14, true, 4},
		{mustFilter(t, "$share/h/a/+"), 1, 15, false, 5},
	}
	for i, s := range steps {
		_ = x.Match("a/b") // populate the cache so replacement must invalidate it
		if got := x.Subscribe(s.f, s.key, s.val); got != s.replaced {
			t.Fatalf("step %d: Subscribe(%v, %d) replaced = %v, want %v", i, s.f, s.key, got, s.replaced)
		}
		if x.Len() != s.n {
			t.Fatalf("step %d: Len = %d, want %d", i, x.Len(), s.n)
		}
	}
	m := newModel()
	for _, s := range steps {
		m.subscribe(s.f, s.key, s.val)
	}
	checkAgree(t, x, m, "a/b")
}

// After every subscription is removed the trie must be back to a bare root.
func TestUnsubscribePrunes(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	x := NewIndex[int, int](64)
	m := newModel()
	type sub struct {
		f   Filter
		key int
	}
	var subs []sub
	for i := range 2000 {
		f := randFilter(rng)
		k := i % 7
		x.Subscribe(f, k, i)
		if !m.subscribe(f, k, i) {
			subs = append(subs, sub{f, k})
		}
	}
	// Deep and wide shapes too: a long chain and a node whose children overflow into a map.
	for i := range 100 {
		f := mustFilter(t, fmt.Sprintf("w/%d/+/#", i))
		x.Subscribe(f, 0, 0)
		m.subscribe(f, 0, 0)
		subs = append(subs, sub{f, 0})
	}
	deep := mustFilter(t, strings.Repeat("d/", 500)+"#")
	x.Subscribe(deep, 0, 0)
	m.subscribe(deep, 0, 0)
	subs = append(subs, sub{deep, 0})

	if x.nodeCount() == 0 || x.Len() != len(subs) {
		t.Fatalf("nodes = %d, Len = %d, want > 0 and %d", x.nodeCount(), x.Len(), len(subs))
	}
	if x.Unsubscribe(mustFilter(t, "never/subscribed"), 0) || x.Unsubscribe(subs[0].f, 99) {
		t.Fatal("Unsubscribe of a missing subscription reported true")
	}
	rng.Shuffle(len(subs), func(i, j int) { subs[i], subs[j] = subs[j], subs[i] })
	for i, s := range subs {
		if !x.Unsubscribe(s.f, s.key) {
			t.Fatalf("Unsubscribe(%v, %d) = false", s.f, s.key)
		}
		if x.Unsubscribe(s.f, s.key) {
			t.Fatalf("second Unsubscribe(%v, %d) = true", s.f, s.key)
		}
		m.unsubscribe(s.f, s.key)
		if i%97 == 0 {
			for range 20 {
				checkAgree(t, x, m, randTopic(rng))
			}
		}
	}
	if n := x.nodeCount(); n != 0 {
		t.Fatalf("after removing everything: %d nodes remain", n)
	}
	if x.Len() != 0 || !x.root.empty() {
		t.Fatalf("after removing everything: Len = %d, root empty = %v", x.Len(), x.root.empty())
	}
	if r := x.Match("a/b"); len(r.Entries)+len(r.Shared) != 0 {
		t.Fatalf("empty index matched %v", r)
	}
}

// Removing one of two subscriptions that share a path keeps the other's nodes.
func TestUnsubscribePartialPrune(t *testing.T) {
	x := NewIndex[int, int](16)
	x.Subscribe(mustFilter(t, "a/b/c"), 1, 0)
	x.Subscribe(mustFilter(t, "a/b/c/d/e"), 1, 0)
	x.Subscribe(mustFilter(t, "$share/g/a/b/c/d"), 2, 0)
	if n := x.nodeCount(); n != 5 {
		t.Fatalf("nodes = %d, want 5", n)
	}
	x.Unsubscribe(mustFilter(t, "a/b/c/d/e"), 1)
	if n := x.nodeCount(); n != 4 {
		t.Fatalf("nodes after removing a/b/c/d/e = %d, want 4 (d kept for the group)", n)
	}
	x.Unsubscribe(mustFilter(t, "$share/g/a/b/c/d"), 2)
	if n := x.nodeCount(); n != 3 {
		t.Fatalf("nodes after removing the group = %d, want 3", n)
	}
	if r := x.Match("a/b/c"); len(r.Entries) != 1 {
		t.Fatalf("a/b/c lost: %v", r.Entries)
	}
}

func TestMatchAdjacentKeys(t *testing.T) {
	for _, n := range []int{3, smallGroupBy + 50} { // both grouping strategies
		x := NewIndex[int, int](16)
		m := newModel()
		// Key k subscribes through several overlapping filters; keys interleave in trie order.
		filters := []string{"a/b", "a/+", "+/b", "#", "a/#", "+/+", "$share/g/a/b"}
		for k := range n {
			for i, s := range filters {
				if (k+i)%3 == 0 {
					continue // not every key on every filter, so groups differ in size
				}
				f := mustFilter(t, s)
				x.Subscribe(f, k, i)
				m.subscribe(f, k, i)
			}
		}
		checkAgree(t, x, m, "a/b") // includes checkAdjacent
	}
}

func TestGroupByKeyDirect(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 200 {
		n := rng.IntN(100)
		src := make([]Entry[int, int], n)
		for i := range src {
			src[i] = Entry[int, int]{Key: rng.IntN(1 + n/3), Val: i}
		}
		dst := make([]Entry[int, int], n)
		groupByKey(dst, src)
		checkAdjacent(t, "direct", dst)
		// Same multiset.
		a, b := slices.Clone(src), slices.Clone(dst)
		cmp := func(x, y Entry[int, int]) int { return x.Val - y.Val }
		slices.SortFunc(a, cmp)
		slices.SortFunc(b, cmp)
		if !slices.Equal(a, b) {
			t.Fatalf("groupByKey changed the entries: %v -> %v", src, dst)
		}
	}
}

// A Result from Match never changes, whatever happens to the index afterwards.
func TestMatchResultImmutable(t *testing.T) {
	x := NewIndex[int, int](16)
	x.Subscribe(mustFilter(t, "a/+"), 1, 1)
	x.Subscribe(mustFilter(t, "a/b"), 2, 2)
	x.Subscribe(mustFilter(t, "$share/g/a/#"), 3, 3)
	x.Subscribe(mustFilter(t, "$share/g/a/#"), 4, 4)
	r := x.Match("a/b")
	before := canon(t, r)
	members := slices.Clone(r.Shared[0].Members)

	x.Subscribe(mustFilter(t, "a/+"), 1, 100) // replace
	x.Subscribe(mustFilter(t, "a/#"), 5, 5)
	x.Unsubscribe(mustFilter(t, "a/b"), 2)
	x.Subscribe(mustFilter(t, "$share/g/a/#"), 3, 300)
	x.Unsubscribe(mustFilter(t, "$share/g/a/#"), 4)
	x.Subscribe(mustFilter(t, "$share/g/a/#"), 6, 6)

	if after := canon(t, r); !slices.Equal(before, after) {
		t.Fatalf("old result changed:\n%q\n%q", before, after)
	}
	if !slices.Equal(members, r.Shared[0].Members) {
		t.Fatalf("old group snapshot changed: %v -> %v", members, r.Shared[0].Members)
	}
	if now := canon(t, x.Match("a/b")); slices.Equal(now, before) {
		t.Fatal("Match after changes returned the old result")
	}
}

func TestMatchCacheHits(t *testing.T) {
	x := NewIndex[int, int](1024)
	x.Subscribe(mustFilter(t, "a/+"), 1, 1)
	x.Subscribe(mustFilter(t, "$share/g/a/#"), 2, 2)
	r1 := x.Match("a/b")
	if r2 := x.Match("a/b"); r2 != r1 {
		t.Fatal("second Match of the same topic was not served from the cache")
	}
	topic := strings.Clone("a/b")
	if n := testing.AllocsPerRun(1000, func() { _ = x.Match(topic) }); n != 0 {
		t.Fatalf("cache hit allocates %v times, want 0", n)
	}
	x.Subscribe(mustFilter(t, "a/b"), 3, 3)
	r3 := x.Match("a/b")
	if r3 == r1 || len(r3.Entries) != 2 {
		t.Fatalf("Match after Subscribe = %v, want a fresh result with 2 entries", r3.Entries)
	}
	// Topics nobody subscribes to share one empty result and cost no allocation to cache.
	if x.Match("zzz") != x.Match("other") {
		t.Fatal("empty results are not shared")
	}
}

// The cache key must not alias the caller's bytes: brokers pass topics that point into a
// connection's read buffer, which is overwritten by the next packet.
func TestMatchCacheKeyOwnsBytes(t *testing.T) {
	x := NewIndex[int, int](64)
	x.Subscribe(mustFilter(t, "a/b"), 1, 1)
	buf := []byte("a/b")
	topic := unsafe.String(&buf[0], len(buf))
	if r := x.Match(topic); len(r.Entries) != 1 {
		t.Fatalf("Match(a/b) = %v", r.Entries)
	}
	copy(buf, "x/y") // the "connection" reuses its buffer
	if r := x.Match("x/y"); len(r.Entries) != 0 {
		t.Fatalf("Match(x/y) = %v: cache key aliased the caller's buffer", r.Entries)
	}
	if r := x.Match("a/b"); len(r.Entries) != 1 {
		t.Fatalf("Match(a/b) after buffer reuse = %v", r.Entries)
	}
}

// Subscribe must copy the filter text: a broker decodes SUBSCRIBE filters out of a read buffer.
func TestSubscribeOwnsFilterBytes(t *testing.T) {
	x := NewIndex[int, int](0)
	for _, s := range []string{"a/b/c", "$share/g/a/+/c"} {
		buf := []byte(s)
		f := mustFilter(t, unsafe.String(&buf[0], len(buf)))
		x.Subscribe(f, 1, 1)
		for i := range buf {
			buf[i] = 'x' // the connection reads the next packet into the same buffer
		}
	}
	r := x.Match("a/b/c")
	if len(r.Entries) != 1 || r.Entries[0].Filter != "a/b/c" {
		t.Fatalf("plain entries = %v, want a/b/c", r.Entries)
	}
	if len(r.Shared) != 1 || r.Shared[0].Name != "g" || r.Shared[0].Filter != "a/+/c" ||
		r.Shared[0].Members[0].Filter != "$share/g/a/+/c" {
		t.Fatalf("shared = %+v, want g a/+/c", r.Shared)
	}
	if !x.Unsubscribe(mustFilter(t, "a/b/c"), 1) || !x.Unsubscribe(mustFilter(t, "$share/g/a/+/c"), 1) || x.nodeCount() != 0 {
		t.Fatalf("could not remove the subscriptions; %d nodes left", x.nodeCount())
	}
}

func TestMatchCacheBounds(t *testing.T) {
	const topics, weight = 300, 1100 // not multiples of the shard count
	x := NewIndexLimits[int, int](topics, weight)
	for k := range 10 {
		x.Subscribe(mustFilter(t, "t/+"), k, 0) // every t/* topic weighs 11
	}
	for i := range 5000 {
		x.Match(fmt.Sprintf("t/%d", i))
		x.Match(fmt.Sprintf("u/%d", i)) // weighs 1
		if n, w, counter := x.cache.stats(); n > topics || w > weight || w != counter {
			t.Fatalf("after %d topics: cache holds %d topics weighing %d (counter %d), limits %d and %d", i, n, w, counter, topics, weight)
		}
	}
	if n, _, _ := x.cache.stats(); n == 0 {
		t.Fatal("cache is empty")
	}

	// A result heavier than a quarter of the budget is not cached, but still correct.
	for k := range 10 + weight {
		x.Subscribe(mustFilter(t, "big"), k, 0)
	}
	if r1, r2 := x.Match("big"), x.Match("big"); r1 == r2 || len(r1.Entries) != 10+weight {
		t.Fatalf("oversized result: cached=%v, %d entries", r1 == r2, len(r1.Entries))
	}

	// Disabled cache still matches.
	y := NewIndex[int, int](0)
	y.Subscribe(mustFilter(t, "a"), 1, 1)
	if r := y.Match("a"); len(r.Entries) != 1 || y.cache != nil {
		t.Fatalf("uncached index: %v", r.Entries)
	}
}

func TestMatchIntoAllocs(t *testing.T) {
	x := NewIndex[int, int](0)
	for k := range 20 {
		x.Subscribe(mustFilter(t, fmt.Sprintf("d/%d/t", k)), k, 0)
		x.Subscribe(mustFilter(t, "d/+/t"), k, 0)
		x.Subscribe(mustFilter(t, "$share/g/d/#"), k, 0)
	}
	var r Result[int, int]
	x.MatchInto("d/3/t", &r) // grow r, build the group snapshot
	if n := testing.AllocsPerRun(1000, func() { x.MatchInto("d/3/t", &r) }); n != 0 {
		t.Fatalf("MatchInto with a reused Result allocates %v times, want 0", n)
	}
	if len(r.Entries) != 21 || len(r.Shared) != 1 {
		t.Fatalf("MatchInto = %d entries %d groups, want 21 and 1", len(r.Entries), len(r.Shared))
	}
	r.Reset()
	if len(r.Entries) != 0 || cap(r.Entries) == 0 {
		t.Fatal("Reset did not keep capacity")
	}
}

func TestSubscribeInvalidFilterPanics(t *testing.T) {
	for _, f := range []Filter{{}, {Path: "a+"}, {Path: "#/a"}, {Group: "g/h", Path: "a"}, {Group: "+", Path: "a"}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Subscribe(%+v) did not panic", f)
				}
			}()
			NewIndex[int, int](0).Subscribe(f, 1, 1)
		}()
	}
	if NewIndex[int, int](0).Unsubscribe(Filter{}, 1) {
		t.Error("Unsubscribe(zero Filter) = true")
	}
}

// Randomized property test: after every operation the index agrees with brute-force Match over
// the model's filters, for random topics.
func TestIndexAgreesWithBruteForce(t *testing.T) {
	for seed := range uint64(8) {
		rng := rand.New(rand.NewPCG(seed, 99))
		x := NewIndex[int, int]([]int{0, 8, 1024}[seed%3])
		m := newModel()
		type sub struct {
			f   Filter
			key int
		}
		var live []sub
		for op := range 1500 {
			if len(live) > 0 && rng.IntN(3) == 0 {
				i := rng.IntN(len(live))
				s := live[i]
				if got, want := x.Unsubscribe(s.f, s.key), m.unsubscribe(s.f, s.key); got != want {
					t.Fatalf("seed %d op %d: Unsubscribe(%v,%d) = %v, model %v", seed, op, s.f, s.key, got, want)
				}
				live = slices.Delete(live, i, i+1)
			} else {
				f, k, v := randFilter(rng), rng.IntN(4), op
				got, want := x.Subscribe(f, k, v), m.subscribe(f, k, v)
				if got != want {
					t.Fatalf("seed %d op %d: Subscribe(%v,%d) replaced = %v, model %v", seed, op, f, k, got, want)
				}
				if !got {
					live = append(live, sub{f, k})
				}
			}
			if x.Len() != len(m.subs) {
				t.Fatalf("seed %d op %d: Len = %d, model %d", seed, op, x.Len(), len(m.subs))
			}
			for range 3 {
				checkAgree(t, x, m, randTopic(rng))
			}
		}
	}
}

// The children of one node through list/table conversions, table growth, tombstones and their
// reuse, against a map.
func TestNodeChildrenProperty(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var n node[int, int]
	model := map[string]*node[int, int]{}
	var sawTable, sawListAfterTable bool
	for op := range 20000 {
		if ks := n.kids.Load(); ks != nil && ks.tab != nil {
			sawTable = true
		} else if sawTable && ks != nil {
			sawListAfterTable = true
		}
		level := strconv.Itoa(rng.IntN(200))
		drain := op%5000 > 3500 && len(model) > 2 // phases that shrink the table back to a list
		if drain {
			for l := range model {
				level = l
				break
			}
		}
		if _, ok := model[level]; ok && (drain || rng.IntN(2) == 0) {
			n.removeKid(model[level])
			delete(model, level)
		} else if !ok {
			c := &node[int, int]{level: level}
			n.addKid(c)
			model[level] = c
		}
		if op%97 == 0 || len(model) < 8 {
			for l, c := range model {
				if got := n.step(l); got != c {
					t.Fatalf("op %d: child(%q) = %p, want %p", op, l, got, c)
				}
			}
			for i := range 20 {
				l := "absent" + strconv.Itoa(i)
				if n.step(l) != nil {
					t.Fatalf("op %d: child(%q) found", op, l)
				}
			}
			ks := n.kids.Load()
			if len(model) == 0 != (ks == nil) {
				t.Fatalf("op %d: %d children but kids = %v", op, len(model), ks)
			}
			if ks != nil && ks.tab != nil && ks.tab.live != len(model) {
				t.Fatalf("op %d: table live = %d, want %d", op, ks.tab.live, len(model))
			}
		}
	}
	if !sawTable || !sawListAfterTable {
		t.Fatalf("conversions not exercised: table %v, list after table %v", sawTable, sawListAfterTable)
	}
}

// A child table that empties out is compacted, so a node that once had many children does not
// keep a big table.
func TestNodeChildrenTableShrinks(t *testing.T) {
	var n node[int, int]
	for i := range 5000 {
		n.addKid(&node[int, int]{level: strconv.Itoa(i)})
	}
	big := len(n.kids.Load().tab.slots)
	for i := range 4990 {
		n.removeKid(n.kids.Load().child(strconv.Itoa(i)))
	}
	ks := n.kids.Load()
	if ks.tab == nil || len(ks.tab.slots) > 64 || big < 5000 {
		t.Fatalf("table of %d slots for 10 children (was %d for 5000)", len(ks.tab.slots), big)
	}
	for i := 4990; i < 5000; i++ {
		if n.step(strconv.Itoa(i)) == nil {
			t.Fatalf("child %d lost by compaction", i)
		}
	}
}

// With ShareText the index keeps a new filter's text as the caller gave it; without, a copy (a
// caller's string may be part of a larger one). Either way the entries carry the filter's text.
func TestShareTextKeepsTheCallersString(t *testing.T) {
	for _, share := range []bool{false, true} {
		x := NewIndex[string, int](0)
		if share {
			x.ShareText()
		}
		text := strings.Clone("devices/42/cmd")
		x.Subscribe(mustFilter(t, text), "a", 1)
		got := x.Match("devices/42/cmd").Entries
		if len(got) != 1 || got[0].Filter != text {
			t.Fatalf("share %v: entries %+v", share, got)
		}
		if same := unsafe.StringData(got[0].Filter) == unsafe.StringData(text); same != share {
			t.Errorf("share %v: the entry's text is the caller's string: %v", share, same)
		}
	}
}
