package topic

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// model is the brute-force reference: the set of live subscriptions, matched with Match.
type model struct {
	subs map[modelKey]int
}

type modelKey struct {
	filter string // Filter.String()
	key    int
}

func newModel() *model { return &model{subs: map[modelKey]int{}} }

func (m *model) subscribe(f Filter, key, val int) (replaced bool) {
	k := modelKey{f.String(), key}
	_, replaced = m.subs[k]
	m.subs[k] = val
	return replaced
}

func (m *model) unsubscribe(f Filter, key int) (removed bool) {
	k := modelKey{f.String(), key}
	_, removed = m.subs[k]
	delete(m.subs, k)
	return removed
}

// expect returns the canonical form of what matching topic must return.
func (m *model) expect(topic string) []string {
	plain := []string{}
	groups := map[string][]string{}
	for k, v := range m.subs {
		f, err := ParseFilter(k.filter)
		if err != nil {
			panic(err)
		}
		if !Match(f.Path, topic) {
			continue
		}
		if f.Group == "" {
			plain = append(plain, fmt.Sprintf("P %d %q=%d", k.key, f.Path, v))
		} else {
			g := fmt.Sprintf("S %q %q", f.Group, f.Path)
			groups[g] = append(groups[g], fmt.Sprintf("%d %q=%d", k.key, k.filter, v))
		}
	}
	return canonical(plain, groups)
}

func canonical(plain []string, groups map[string][]string) []string {
	out := slices.Clone(plain)
	for g, ms := range groups {
		slices.Sort(ms)
		out = append(out, g+" ["+strings.Join(ms, " ")+"]")
	}
	slices.Sort(out)
	return out
}

// canon returns the canonical form of a Result, failing t on structural problems that the
// canonical form would hide (empty groups).
func canon(t testing.TB, r *Result[int, int]) []string {
	t.Helper()
	plain := []string{}
	groups := map[string][]string{}
	for _, e := range r.Entries {
		plain = append(plain, fmt.Sprintf("P %d %q=%d", e.Key, e.Filter, e.Val))
	}
	for _, g := range r.Shared {
		if len(g.Members) == 0 {
			t.Errorf("group %q %q has no members", g.Name, g.Filter)
		}
		k := fmt.Sprintf("S %q %q", g.Name, g.Filter)
		if _, dup := groups[k]; dup {
			t.Errorf("group %s appears twice", k)
		}
		ms := []string{}
		for _, e := range g.Members {
			ms = append(ms, fmt.Sprintf("%d %q=%d", e.Key, e.Filter, e.Val))
		}
		groups[k] = ms
	}
	return canonical(plain, groups)
}

// checkAdjacent fails t unless entries with equal keys are contiguous.
func checkAdjacent(t testing.TB, topic string, es []Entry[int, int]) {
	t.Helper()
	seen := map[int]bool{}
	for i, e := range es {
		if i > 0 && es[i-1].Key == e.Key {
			continue
		}
		if seen[e.Key] {
			t.Errorf("Match(%q): key %d not adjacent in %v", topic, e.Key, es)
			return
		}
		seen[e.Key] = true
	}
}

// checkAgree compares Match and MatchInto on x against the model for topic.
func checkAgree(t testing.TB, x *Index[int, int], m *model, topic string) {
	t.Helper()
	want := m.expect(topic)
	r := x.Match(topic)
	if got := canon(t, r); !slices.Equal(got, want) {
		t.Fatalf("Match(%q)\n got %q\nwant %q", topic, got, want)
	}
	checkAdjacent(t, topic, r.Entries)
	var into Result[int, int]
	x.MatchInto(topic, &into)
	if got := canon(t, &into); !slices.Equal(got, want) {
		t.Fatalf("MatchInto(%q)\n got %q\nwant %q", topic, got, want)
	}
}

// Random generators over a small alphabet, so that filters and topics collide often.
var (
	topicLevels  = []string{"a", "b", "c", "", "$x"}
	filterLevels = []string{"a", "b", "c", "", "$x", "+", "+", "#"}
	groupNames   = []string{"g1", "g2"}
)

func randTopic(rng *rand.Rand) string {
	n := 1 + rng.IntN(4)
	ls := make([]string, n)
	for i := range ls {
		ls[i] = topicLevels[rng.IntN(len(topicLevels))]
	}
	return strings.Join(ls, "/")
}

func randFilter(rng *rand.Rand) Filter {
	n := 1 + rng.IntN(4)
	ls := make([]string, 0, n)
	for i := 0; i < n; i++ {
		l := filterLevels[rng.IntN(len(filterLevels))]
		ls = append(ls, l)
		if l == "#" {
			break
		}
	}
	s := strings.Join(ls, "/")
	if s == "" {
		s = "/" // a lone empty level is not a valid filter; two are
	}
	if rng.IntN(4) == 0 {
		s = "$share/" + groupNames[rng.IntN(len(groupNames))] + "/" + s
	}
	f, err := ParseFilter(s)
	if err != nil {
		panic(fmt.Sprintf("generated invalid filter %q: %v", s, err))
	}
	return f
}

func mustFilter(t testing.TB, s string) Filter {
	t.Helper()
	f, err := ParseFilter(s)
	if err != nil {
		t.Fatalf("ParseFilter(%q): %v", s, err)
	}
	return f
}
