package topic

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// churnKeyBase separates the keys of churning writers from the stable subscriptions' keys
// (below it), so matchers can tell which entries they are entitled to expect.
const churnKeyBase = 1000

// TestConcurrentMatchDuringChurn runs matchers against writers that subscribe and unsubscribe on
// the same trie paths and shared groups as a set of stable subscriptions. It asserts:
//   - every stable subscription matching the topic is returned (it was present before the
//     Match started and is never removed), with its exact value;
//   - results are internally consistent: every entry and group matches the topic, nothing
//     appears twice, groups are non-empty, equal keys are adjacent (Match), Next is in range;
//   - each writer reads its own writes: right after Subscribe returns, Match includes the new
//     subscription, and right after Unsubscribe returns, it does not.
//
// The cache is small so that eviction, generation turnover and shard clearing all happen.
func TestConcurrentMatchDuringChurn(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	x := NewIndex[int, int](64)
	stable := newModel()
	for i := range 300 {
		f, k := randFilter(rng), rng.IntN(churnKeyBase)
		x.Subscribe(f, k, i)
		stable.subscribe(f, k, i)
	}
	// Precompute what each topic must at least contain.
	topics := make([]string, 500)
	want := map[string]expectation{}
	for i := range topics {
		topics[i] = randTopic(rng)
		if _, ok := want[topics[i]]; !ok {
			want[topics[i]] = stable.expectation(topics[i])
		}
	}

	const writers, matchers, rounds = 3, 4, 1500
	var stop atomic.Bool
	var churn, match, started sync.WaitGroup
	var churnRounds atomic.Int64
	started.Add(writers)
	for w := range writers {
		churn.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for i := 0; !stop.Load(); i++ {
				if i == 1 {
					started.Done() // matchers start once every writer is demonstrably running
				}
				churnRounds.Add(1)
				f := randFilter(rng)
				k := churnKeyBase*(w+1) + rng.IntN(10)
				topic := topicFor(rng, f)
				if x.Subscribe(f, k, -1) {
					t.Errorf("writer %d: Subscribe(%v, %d) replaced, but it was not subscribed", w, f, k)
				}
				if !contains(x.Match(topic), f, k) {
					t.Errorf("writer %d: Match(%q) right after Subscribe(%v, %d) misses it", w, topic, f, k)
				}
				if i%2 == 0 {
					// Join a stable group node too, so group snapshots are rebuilt under readers.
					x.Subscribe(f, k+1, -1)
					x.Unsubscribe(f, k+1)
				}
				if !x.Unsubscribe(f, k) {
					t.Errorf("writer %d: Unsubscribe(%v, %d) found nothing", w, f, k)
				}
				if contains(x.Match(topic), f, k) {
					t.Errorf("writer %d: Match(%q) right after Unsubscribe(%v, %d) still has it", w, topic, f, k)
				}
				if t.Failed() {
					if i == 0 {
						started.Done()
					}
					return
				}
			}
		})
	}
	started.Wait()
	matchStart := churnRounds.Load()
	for m := range matchers {
		match.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(m), 2))
			var into Result[int, int]
			for range rounds {
				topic := topics[rng.IntN(len(topics))]
				var r *Result[int, int]
				adjacent := m%2 == 0
				if adjacent {
					r = x.Match(topic)
				} else {
					x.MatchInto(topic, &into)
					r = &into
				}
				if err := checkConcurrentResult(topic, r, want[topic], adjacent); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	match.Wait()
	during := churnRounds.Load() - matchStart
	stop.Store(true)
	churn.Wait()
	t.Logf("%d churn rounds while %d matchers ran %d Matches each", during, matchers, rounds)

	// Writers removed everything they added: the index is back to the stable set exactly.
	if x.Len() != len(stable.subs) {
		t.Fatalf("Len = %d after churn, want %d", x.Len(), len(stable.subs))
	}
	for _, topic := range topics[:50] {
		checkAgree(t, x, stable, topic)
	}
}

// expectation is the stable part of a topic's result.
type expectation struct {
	plain  map[string]int // "key filter" -> val
	shared map[string]int // "group\x00filter\x00key" -> val
}

func (m *model) expectation(topic string) expectation {
	e := expectation{plain: map[string]int{}, shared: map[string]int{}}
	for k, v := range m.subs {
		f, _ := ParseFilter(k.filter)
		if !Match(f.Path, topic) {
			continue
		}
		if f.Group == "" {
			e.plain[fmt.Sprint(k.key, " ", f.Path)] = v
		} else {
			e.shared[f.Group+"\x00"+f.Path+"\x00"+fmt.Sprint(k.key)] = v
		}
	}
	return e
}

func checkConcurrentResult(topic string, r *Result[int, int], want expectation, adjacent bool) error {
	seen := map[string]bool{}
	lastKey, keysDone := -1, map[int]bool{}
	for _, e := range r.Entries {
		id := fmt.Sprint(e.Key, " ", e.Filter)
		if seen[id] {
			return fmt.Errorf("Match(%q): %s twice", topic, id)
		}
		seen[id] = true
		if !Match(e.Filter, topic) {
			return fmt.Errorf("Match(%q): returned non-matching filter %q", topic, e.Filter)
		}
		if e.Key < churnKeyBase {
			if v, ok := want.plain[id]; !ok || v != e.Val {
				return fmt.Errorf("Match(%q): stable entry %s=%d not in the stable set (want %d, %v)", topic, id, e.Val, v, ok)
			}
		} else if e.Val != -1 {
			return fmt.Errorf("Match(%q): churn entry %s has value %d", topic, id, e.Val)
		}
		if adjacent && e.Key != lastKey {
			if keysDone[e.Key] {
				return fmt.Errorf("Match(%q): key %d not adjacent", topic, e.Key)
			}
			keysDone[lastKey], lastKey = true, e.Key
		}
	}
	for id := range want.plain {
		if !seen[id] {
			return fmt.Errorf("Match(%q): stable subscription %s missing", topic, id)
		}
	}
	groups := map[string]bool{}
	for _, g := range r.Shared {
		gid := g.Name + "\x00" + g.Filter
		if groups[gid] {
			return fmt.Errorf("Match(%q): group %q %q twice", topic, g.Name, g.Filter)
		}
		groups[gid] = true
		if len(g.Members) == 0 || !Match(g.Filter, topic) {
			return fmt.Errorf("Match(%q): bad group %q %q with %d members", topic, g.Name, g.Filter, len(g.Members))
		}
		if n := g.Next(); n < 0 || n >= len(g.Members) {
			return fmt.Errorf("Match(%q): Next() = %d with %d members", topic, n, len(g.Members))
		}
		keys := map[int]bool{}
		for _, e := range g.Members {
			if keys[e.Key] || e.Filter != "$share/"+g.Name+"/"+g.Filter {
				return fmt.Errorf("Match(%q): group %q %q: bad member %+v", topic, g.Name, g.Filter, e)
			}
			keys[e.Key] = true
			seen[gid+"\x00"+fmt.Sprint(e.Key)] = true
			if e.Key < churnKeyBase && e.Val != want.shared[gid+"\x00"+fmt.Sprint(e.Key)] {
				return fmt.Errorf("Match(%q): group %q %q: stable member %+v has wrong value", topic, g.Name, g.Filter, e)
			}
		}
	}
	for id := range want.shared {
		if !seen[id] {
			return fmt.Errorf("Match(%q): stable shared member %q missing", topic, id)
		}
	}
	return nil
}

// contains reports whether r holds the subscription (f, key).
func contains(r *Result[int, int], f Filter, key int) bool {
	if f.Group == "" {
		for _, e := range r.Entries {
			if e.Key == key && e.Filter == f.Path {
				return true
			}
		}
		return false
	}
	for _, g := range r.Shared {
		if g.Name == f.Group && g.Filter == f.Path {
			for _, e := range g.Members {
				if e.Key == key {
					return true
				}
			}
		}
	}
	return false
}

// topicFor returns a random topic name matched by f.
func topicFor(rng *rand.Rand, f Filter) string {
	var out []string
	for i, l := range strings.Split(f.Path, "/") {
		switch l {
		case "+":
			out = append(out, []string{"a", "b", "z"}[rng.IntN(3)])
		case "#":
			n := rng.IntN(3)
			if i == 0 {
				n++ // the topic needs at least one level
			}
			for range n {
				out = append(out, []string{"a", "z", ""}[rng.IntN(3)])
			}
			if i == 0 && out[0] == "" && len(out) == 1 {
				out[0] = "a"
			}
		default:
			out = append(out, l)
		}
	}
	topic := strings.Join(out, "/")
	if !Match(f.Path, topic) {
		panic(fmt.Sprintf("topicFor(%q) = %q does not match", f.Path, topic))
	}
	return topic
}

// Many goroutines share one group's counter: each offset must be handed out exactly equally.
func TestGroupNextConcurrent(t *testing.T) {
	x := NewIndex[int, int](16)
	f := mustFilter(t, "$share/g/t")
	for k := range 5 {
		x.Subscribe(f, k, 0)
	}
	const goroutines, calls = 8, 1000
	var counts [5]atomic.Int64
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for range calls {
				counts[x.Match("t").Shared[0].Next()].Add(1)
			}
		})
	}
	wg.Wait()
	for i := range counts {
		if n := counts[i].Load(); n != goroutines*calls/5 {
			t.Fatalf("offset %d handed out %d times, want %d", i, n, goroutines*calls/5)
		}
	}
}

// TestReadYourWritesHotTopic targets the ordering of a change and its generation bump. Readers
// hammer one topic while a writer adds and removes a subscription on it; if the bump could become
// visible before the change, a reader would cache a result without the change under the new
// generation and the writer's own Match right after Subscribe would be served that stale result.
func TestReadYourWritesHotTopic(t *testing.T) {
	x := NewIndex[int, int](64)
	const topic = "hot/t"
	x.Subscribe(mustFilter(t, "hot/+"), 0, 0) // the leaf and its path stay; only entries change
	filters := []Filter{mustFilter(t, "hot/t"), mustFilter(t, "hot/+"), mustFilter(t, "$share/g/hot/t"), mustFilter(t, "#")}
	var stop atomic.Bool
	var readers sync.WaitGroup
	for range 2 {
		readers.Go(func() {
			for !stop.Load() {
				x.Match(topic)
			}
		})
	}
	for i := range 5000 {
		f := filters[i%len(filters)]
		x.Subscribe(f, 1, i)
		if !contains(x.Match(topic), f, 1) {
			t.Errorf("round %d: Match right after Subscribe(%v) misses it", i, f)
			break
		}
		x.Unsubscribe(f, 1)
		if contains(x.Match(topic), f, 1) {
			t.Errorf("round %d: Match right after Unsubscribe(%v) still has it", i, f)
			break
		}
	}
	stop.Store(true)
	readers.Wait()
}

// TestCacheConcurrentEviction drives the cache's insert, replacement and weight-eviction paths
// from several goroutines at once (a tiny cache, many topics, generations moving under them) and
// checks every result and, afterwards, the bounds and the weight accounting.
func TestCacheConcurrentEviction(t *testing.T) {
	const topics, weight = 32, 200
	x := NewIndexLimits[int, int](topics, weight)
	m := newModel()
	for k := range 12 {
		for _, s := range []string{"a/+", "+/b", "a/#", "$share/g/+/+"} {
			f := mustFilter(t, s)
			x.Subscribe(f, k, k)
			m.subscribe(f, k, k)
		}
	}
	var all []string
	for _, a := range []string{"a", "b", "c", "d"} {
		for _, b := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
			all = append(all, a+"/"+b, a+"/"+b+"/x", a)
		}
	}
	want := map[string][]string{}
	for _, topic := range all {
		want[topic] = m.expect(topic)
	}
	var stop atomic.Bool
	var bumper, matchers sync.WaitGroup
	bumper.Go(func() { // moves the generation without changing what any topic matches
		other := mustFilter(t, "unrelated")
		for !stop.Load() {
			x.Subscribe(other, 0, 0)
			x.Unsubscribe(other, 0)
		}
	})
	for g := range 4 {
		matchers.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 5))
			for range 4000 {
				topic := all[rng.IntN(len(all))]
				if got := canon(t, x.Match(topic)); !slices.Equal(got, want[topic]) {
					t.Errorf("Match(%q) = %q, want %q", topic, got, want[topic])
					return
				}
			}
		})
	}
	matchers.Wait()
	stop.Store(true)
	bumper.Wait()
	n, w, counter := x.cache.stats()
	if n > topics || w > weight || w != counter {
		t.Fatalf("cache holds %d topics weighing %d (counter %d), limits %d and %d", n, w, counter, topics, weight)
	}
}

// TestConcurrentRepresentationChanges makes a writer push a subscription set back and forth
// across the small (copy-on-write) / big (in place, lazily viewed) boundary and a node's children
// across the list / hash table boundary, while readers check that the stable subscriptions on
// the same set and node never disappear and nothing is duplicated.
func TestConcurrentRepresentationChanges(t *testing.T) {
	x := NewIndex[int, int](0) // no cache: every read walks the trie
	plain, shared, kidF := mustFilter(t, "s/x"), mustFilter(t, "$share/g/s/x"), mustFilter(t, "k/stable")
	for k := range 3 {
		x.Subscribe(plain, k, k)
		x.Subscribe(shared, k, k)
	}
	x.Subscribe(kidF, 0, 0)
	x.Subscribe(mustFilter(t, "k/+/deep"), 0, 0)

	var stop atomic.Bool
	var writer, readers sync.WaitGroup
	var rounds atomic.Int64
	writer.Go(func() {
		for !stop.Load() {
			for k := 3; k < 3+2*maxSmallSet; k++ { // up past maxSmallSet, down past minBigSet
				x.Subscribe(plain, k, -1)
				x.Subscribe(shared, k, -1)
			}
			for i := range 3 * maxKidList { // up past maxKidList, down past minKidTab
				x.Subscribe(mustFilter(t, fmt.Sprintf("k/c%d", i)), 1, -1)
			}
			for k := 3; k < 3+2*maxSmallSet; k++ {
				x.Unsubscribe(plain, k)
				x.Unsubscribe(shared, k)
			}
			for i := range 3 * maxKidList {
				x.Unsubscribe(mustFilter(t, fmt.Sprintf("k/c%d", i)), 1)
			}
			rounds.Add(1)
		}
	})
	for range 3 {
		readers.Go(func() {
			var r Result[int, int]
			for i := 0; i < 3000 || rounds.Load() < 3; i++ {
				x.MatchInto("s/x", &r)
				if err := checkStableKeys(r.Entries, 3); err != nil {
					t.Errorf("plain: %v", err)
					return
				}
				if len(r.Shared) != 1 {
					t.Errorf("Match(s/x) returned %d groups, want 1", len(r.Shared))
					return
				}
				if err := checkStableKeys(r.Shared[0].Members, 3); err != nil {
					t.Errorf("group: %v", err)
					return
				}
				x.MatchInto("k/stable", &r)
				if len(r.Entries) != 1 || r.Entries[0].Filter != "k/stable" {
					t.Errorf("Match(k/stable) = %v, want the stable subscription only", r.Entries)
					return
				}
				x.MatchInto("k/stable/deep", &r)
				if len(r.Entries) != 1 {
					t.Errorf("Match(k/stable/deep) = %v, want k/+/deep", r.Entries)
					return
				}
			}
		})
	}
	readers.Wait()
	stop.Store(true)
	writer.Wait()
	if x.Len() != 8 || x.nodeCount() != 6 {
		t.Fatalf("after churn: Len = %d, nodes = %d, want 8 and 6", x.Len(), x.nodeCount())
	}
}

// checkStableKeys checks that keys 0..n-1 are present with their value and no key repeats.
func checkStableKeys(es []Entry[int, int], n int) error {
	seen := map[int]bool{}
	for _, e := range es {
		if seen[e.Key] {
			return fmt.Errorf("key %d twice in %v", e.Key, es)
		}
		seen[e.Key] = true
		if e.Key < n && e.Val != e.Key {
			return fmt.Errorf("key %d has value %d", e.Key, e.Val)
		}
	}
	for k := range n {
		if !seen[k] {
			return fmt.Errorf("stable key %d missing from %v", k, es)
		}
	}
	return nil
}
