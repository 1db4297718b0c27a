package auth

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/ternmq/tern/internal/topic"
)

func mustGrants(t testing.TB, specs ...string) []Grant {
	t.Helper()
	out := make([]Grant, 0, len(specs))
	for _, s := range specs {
		g, err := ParseGrant(s)
		if err != nil {
			t.Fatalf("ParseGrant(%q): %v", s, err)
		}
		out = append(out, g)
	}
	return out
}

func TestParseAction(t *testing.T) {
	for _, a := range Actions() {
		got, err := ParseAction(strings.ToUpper(a.String()))
		if err != nil || got != a {
			t.Errorf("ParseAction(%q) = %v, %v", a, got, err)
		}
	}
	if _, err := ParseAction("delete"); err == nil {
		t.Error("ParseAction(delete) succeeded")
	}
	if s := Action(200).String(); s != "action(200)" {
		t.Errorf("String of an unknown action = %q", s)
	}
}

func TestGrantJSON(t *testing.T) {
	in := []Grant{{Action: Publish, Filter: "a/#"}, {Action: Admin, Filter: "#"}}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if want := `[{"action":"publish","filter":"a/#"},{"action":"admin","filter":"#"}]`; string(b) != want {
		t.Fatalf("JSON = %s, want %s", b, want)
	}
	var out []Grant
	if err := json.Unmarshal(b, &out); err != nil || !slices.Equal(in, out) {
		t.Fatalf("round trip = %v, %v", out, err)
	}
	if err := json.Unmarshal([]byte(`[{"action":"fly","filter":"a"}]`), &out); err == nil {
		t.Error("unknown action decoded")
	}
	if _, err := Action(99).MarshalText(); err == nil {
		t.Error("unknown action encoded")
	}
}

func TestParseGrant(t *testing.T) {
	good := map[string]Grant{
		"publish:a/b":         {Action: Publish, Filter: "a/b"},
		"Subscribe:a/+/c":     {Action: Subscribe, Filter: "a/+/c"},
		" retain :#":          {Action: Retain, Filter: "#"},
		"call:svc:x/%u":       {Action: Call, Filter: "svc:x/%u"},
		"admin:$SYS/#":        {Action: Admin, Filter: "$SYS/#"},
		"push:users/%u-%c/in": {Action: Push, Filter: "users/%u-%c/in"},
	}
	for s, want := range good {
		g, err := ParseGrant(s)
		if err != nil || g != want {
			t.Errorf("ParseGrant(%q) = %v, %v; want %v", s, g, err, want)
		}
	}
	for _, s := range []string{"", "publish", "fly:a", "publish:", "publish:a/#/b", "publish:a+",
		"publish:$share/g/a", "publish:a\x00b", "publish:\xff"} {
		if _, err := ParseGrant(s); !errors.Is(err, ErrBadGrant) {
			t.Errorf("ParseGrant(%q) error = %v, want ErrBadGrant", s, err)
		}
	}
	if err := (Grant{Action: numActions, Filter: "a"}).Validate(); !errors.Is(err, ErrBadGrant) {
		t.Errorf("unknown action validated: %v", err)
	}
}

func TestAllowTable(t *testing.T) { eachMatcher(t, testAllowTable) }

func testAllowTable(t *testing.T) {
	p, err := NewPrincipal("alice", "dev-1", mustGrants(t,
		"publish:sensors/%u/#",
		"publish:cmd/%c",
		"publish:a/+/c",
		"publish:exact",
		"subscribe:news/#",
		"subscribe:feeds/+/items",
		"subscribe:$SYS/broker/#",
		"retain:sensors/%u/state",
		"call:svc/%u/+",
	))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		a     Action
		topic string
		want  bool
	}{
		{Publish, "sensors/alice", true},
		{Publish, "sensors/alice/t/1", true},
		{Publish, "sensors/bob/t", false},
		{Publish, "sensors", false},
		{Publish, "cmd/dev-1", true},
		{Publish, "cmd/dev-2", false},
		{Publish, "cmd/dev-1/x", false},
		{Publish, "a/b/c", true},
		{Publish, "a//c", true},
		{Publish, "a/b/c/d", false},
		{Publish, "a/b", false},
		{Publish, "exact", true},
		{Publish, "exact/", false},
		{Subscribe, "news", true},
		{Subscribe, "news/x/y", true},
		{Subscribe, "$SYS/broker/load", true},
		{Subscribe, "$SYS/other", false},
		{Retain, "sensors/alice/state", true},
		{Retain, "sensors/alice/other", false},
		{Retain, "news", false},
		{Call, "svc/alice/get", true},
		{Call, "svc/bob/get", false},
		{Serve, "svc/alice/get", false},
		{Push, "anything", false},
		{numActions, "exact", false},
		{Publish, "", false},
	}
	for _, c := range cases {
		if got := p.Allow(c.a, c.topic); got != c.want {
			t.Errorf("Allow(%v, %q) = %v, want %v", c.a, c.topic, got, c.want)
		}
	}
	var nilP *Principal
	if nilP.Allow(Publish, "x") || nilP.AllowFilter(Subscribe, "x") || nilP.Unrestricted() || nilP.Grants() != nil {
		t.Error("a nil principal allows something")
	}
}

func TestDollarTopicsRule(t *testing.T) { eachMatcher(t, testDollarTopicsRule) }

func testDollarTopicsRule(t *testing.T) {
	p, _ := NewPrincipal("u", "c", mustGrants(t, "subscribe:#", "publish:+/x", "publish:$ctl/+"))
	for _, c := range []struct {
		a     Action
		s     string
		topic bool // Allow rather than AllowFilter
		want  bool
	}{
		{Subscribe, "$SYS/x", true, false},
		{Subscribe, "$SYS/#", false, false},
		{Subscribe, "#", false, true},
		{Subscribe, "a/$b", true, true},
		{Publish, "$a/x", true, false},
		{Publish, "b/x", true, true},
		{Publish, "$ctl/go", true, true},
		{Publish, "$ctl/+", false, true},
		{Publish, "$ctl", true, false},
	} {
		var got bool
		if c.topic {
			got = p.Allow(c.a, c.s)
		} else {
			got = p.AllowFilter(c.a, c.s)
		}
		if got != c.want {
			t.Errorf("%v %q = %v, want %v", c.a, c.s, got, c.want)
		}
	}
	u := Unrestricted("root")
	if !u.Allow(Admin, "$SYS/x") || !u.AllowFilter(Subscribe, "$SYS/#") || !u.Unrestricted() {
		t.Error("unrestricted principal refused a $ topic")
	}
}

func TestAllowFilterTable(t *testing.T) { eachMatcher(t, testAllowFilterTable) }

func testAllowFilterTable(t *testing.T) {
	p, _ := NewPrincipal("alice", "c1", mustGrants(t,
		"subscribe:a/#", "subscribe:b/+", "subscribe:c/d", "subscribe:e/+/f/#",
		// g is covered without any '#' grant at g: g itself, g/+ and g/+/#.
		"subscribe:g", "subscribe:g/+", "subscribe:g/+/#",
		"subscribe:h/x", "subscribe:h/+/y",
		"subscribe:users/%u/#",
	))
	cases := map[string]bool{
		"a/+": true, "a/#": true, "a": true, "a/b/c": true, "+/x": false, "#": false,
		"b/+": true, "b/x": true, "b/#": false, "b": false, "b/+/x": false,
		"c/d": true, "c/+": false, "c/#": false,
		"e/+/f": true, "e/x/f/#": true, "e/+/f/+/+": true, "e/+/g": false, "e/#": false,
		"g/#": true, "g/+/+/#": true,
		"h/+": false, "h/x": true, "h/+/y": true, "h/#": false,
		"users/alice/#": true, "users/+/x": false, "users/bob/x": false,
		"$share/grp/a/+": true, "$share/grp/c/+": false, "$share/bad": false,
		"": false,
	}
	for f, want := range cases {
		if got := p.AllowFilter(Subscribe, f); got != want {
			t.Errorf("AllowFilter(%q) = %v, want %v", f, got, want)
		}
	}
	if p.AllowFilter(Publish, "a/+") {
		t.Error("subscribe grant allowed a publish filter")
	}
	if p.AllowFilter(numActions, "a/+") {
		t.Error("unknown action allowed")
	}
}

func TestPlaceholders(t *testing.T) { eachMatcher(t, testPlaceholders) }

func testPlaceholders(t *testing.T) {
	gs := mustGrants(t, "publish:u/%u/#", "publish:c/%c", "publish:both/%u/%c", "publish:lit/%x/%")
	p, _ := NewPrincipal("alice", "dev1", gs)
	for topic, want := range map[string]bool{
		"u/alice/x": true, "u/bob": false, "u/%u/x": false,
		"c/dev1": true, "c/dev2": false, "both/alice/dev1": true, "both/dev1/alice": false,
		"lit/%x/%": true,
	} {
		if got := p.Allow(Publish, topic); got != want {
			t.Errorf("Allow(%q) = %v, want %v", topic, got, want)
		}
	}
	// An identity or client id that would turn a placeholder into several levels or a wildcard
	// drops the grants that use it, and only those.
	for _, bad := range []string{"", "a/b", "+", "#", "x+"} {
		p, _ := NewPrincipal(bad, bad, gs)
		for _, g := range p.Grants() {
			if strings.Contains(g.Filter, "u/") || strings.HasPrefix(g.Filter, "c/") || strings.HasPrefix(g.Filter, "both/") {
				t.Errorf("identity %q kept grant %v", bad, g)
			}
		}
		if !p.Allow(Publish, "lit/%x/%") {
			t.Errorf("identity %q lost an unrelated grant", bad)
		}
		if p.Allow(Publish, "u/anything/x") || p.AllowFilter(Publish, "u/#") {
			t.Errorf("identity %q widened u/%%u/#", bad)
		}
	}
}

// randomFilter draws a filter over a tiny alphabet so that random grants overlap a lot.
func randomFilter(r *rand.Rand, wild bool) string {
	labels := []string{"a", "b", "", "$s"}
	n := 1 + r.IntN(4)
	parts := make([]string, 0, n)
	for i := range n {
		switch x := r.IntN(10); {
		case wild && x == 0 && i == n-1:
			parts = append(parts, "#")
		case wild && x < 3:
			parts = append(parts, "+")
		default:
			l := labels[r.IntN(len(labels))]
			if l == "$s" && i > 0 && r.IntN(2) == 0 {
				l = "b"
			}
			parts = append(parts, l)
		}
	}
	if f := strings.Join(parts, "/"); f != "" {
		return f
	}
	return "a"
}

// allTopics enumerates every topic over the labels up to depth levels; with a label no grant uses
// ("z") this decides coverage for grants and filters no deeper than depth-1.
func allTopics(depth int) []string {
	labels := []string{"a", "b", "", "$s", "z"}
	var out []string
	cur := []string{""}
	for d := 1; d <= depth; d++ {
		var next []string
		for _, prefix := range cur {
			for _, l := range labels {
				t := l
				if d > 1 {
					t = prefix + "/" + l
				}
				next = append(next, t)
			}
		}
		out = append(out, next...)
		cur = next
	}
	return out
}

// TestMatcherAgainstOracle cross-checks both matchers (deterministic and fallback) with
// topic.Match, which is written independently: Allow must equal "some grant matches", and
// AllowFilter "every topic the filter matches is matched by some grant".
func TestMatcherAgainstOracle(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	topics := allTopics(5)
	iters := 400
	if testing.Short() {
		iters = 50
	}
	for it := range iters {
		var filters []string
		for range 1 + r.IntN(6) {
			filters = append(filters, randomFilter(r, true))
		}
		granted := func(tp string) bool {
			for _, f := range filters {
				if topic.Match(f, tp) {
					return true
				}
			}
			return false
		}
		// The walk of the grant list (listed.go), the automaton and its fallback.
		l := listedACL(Publish, filters)
		det, nfa := compileFilters(filters), compileLimited(filters, 0)
		if !det.deterministic() || nfa.deterministic() {
			t.Fatalf("iter %d: the automaton and the fallback were not built as asked", it)
		}
		for _, m := range []struct {
			name          string
			match, covers func(string) bool
		}{
			{"listed", func(tp string) bool { return tp != "" && l.allowListed(Publish, tp) }, // Allow refuses "" first
				func(f string) bool { return l.coversListed(Publish, f, false) }},
			{"automaton", det.match, det.covers},
			{"fallback", nfa.match, nfa.covers},
		} {
			for _, tp := range topics {
				if got, want := m.match(tp), tp != "" && granted(tp); got != want {
					t.Fatalf("iter %d %s filters %q: match(%q) = %v, want %v", it, m.name, filters, tp, got, want)
				}
			}
			for range 20 {
				f := randomFilter(r, true)
				want := true
				for _, tp := range topics {
					if topic.Match(f, tp) && !granted(tp) {
						want = false
						break
					}
				}
				if got := m.covers(f); got != want {
					t.Fatalf("iter %d %s filters %q: covers(%q) = %v, want %v", it, m.name, filters, f, got, want)
				}
			}
		}
	}
}

func TestAllowDoesNotAllocate(t *testing.T) {
	p, _ := NewPrincipal("u", "c", mustGrants(t, "publish:a/+/c/#", "publish:a/b/#", "publish:x/y"))
	n := testing.AllocsPerRun(100, func() {
		if !p.Allow(Publish, "a/b/c/d/e") || p.Allow(Publish, "x/z") {
			panic("wrong answer")
		}
	})
	if n != 0 {
		t.Fatalf("Allow allocates %v times per call", n)
	}
	m := compileLimited([]string{"a/+/c/#", "a/b/#"}, 0)
	if m.deterministic() {
		t.Fatal("limit 0 still determinized")
	}
	if n := testing.AllocsPerRun(100, func() { m.match("a/q/c/d") }); n != 0 {
		t.Fatalf("fallback match allocates %v times per call", n)
	}
}

// topicMatch is the independent oracle: the topic package's own matcher.
func topicMatch(filter, name string) bool { return topic.Match(filter, name) }

// TestPathologicalGrantsFallBack builds grants whose deterministic automaton would need 2^16
// states (each filter fixes a different level, so every prefix leaves a different set of them
// alive) and checks that compiling stays bounded and answers stay right.
func TestPathologicalGrantsFallBack(t *testing.T) {
	const k = 16
	var filters []string
	for i := range k {
		parts := make([]string, k)
		for j := range parts {
			parts[j] = "+"
		}
		parts[i] = "x"
		filters = append(filters, strings.Join(parts, "/"))
	}
	m := compileFilters(filters)
	if m.deterministic() {
		t.Fatal("determinized a 2^16-state automaton")
	}
	r := rand.New(rand.NewPCG(3, 4))
	for range 500 {
		parts := make([]string, k-1+r.IntN(3))
		for j := range parts {
			parts[j] = []string{"x", "y"}[r.IntN(2)]
		}
		tp := strings.Join(parts, "/")
		want := slices.ContainsFunc(filters, func(f string) bool { return topic.Match(f, tp) })
		if m.match(tp) != want {
			t.Fatalf("match(%q) = %v", tp, !want)
		}
	}
	if !m.covers(filters[3]) || m.covers(strings.Repeat("+/", k-1)+"+") || !m.covers("x/"+strings.Repeat("+/", k-2)+"+") {
		t.Fatal("covers wrong on the fallback")
	}
}
