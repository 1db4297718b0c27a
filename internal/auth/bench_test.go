package auth

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
)

// benchGrants makes n distinct publish grants of 2 to 7 levels: per-site device trees with '+'
// at various depths, a '#' on a third of them, and every tenth with '+' in the device level.
func benchGrants(n int) []Grant {
	r := rand.New(rand.NewPCG(7, uint64(n)))
	out := make([]Grant, 0, n)
	for i := range n {
		parts := []string{fmt.Sprintf("site%d", i%50), fmt.Sprintf("dev%d", i)}
		if i%10 == 9 {
			parts[1] = "+"
			parts = append(parts, fmt.Sprintf("k%d", i)) // keeps the filter distinct
		}
		for d := 2; d < 2+i%5; d++ {
			if r.IntN(4) == 0 {
				parts = append(parts, "+")
			} else {
				parts = append(parts, fmt.Sprintf("m%d", r.IntN(20)))
			}
		}
		if r.IntN(3) == 0 {
			parts = append(parts, "#")
		}
		out = append(out, Grant{Action: Publish, Filter: strings.Join(parts, "/")})
	}
	return out
}

// benchTopics makes 1024 topics from the grants, wildcards filled in; every other one has its
// deepest literal level changed, so that it is refused only there. Topic j comes from a
// grant of depth class j%5 whatever the number of grants, so both benchmark sizes see the same
// mix of depths.
func benchTopics(grants []Grant) []string {
	r := rand.New(rand.NewPCG(9, uint64(len(grants))))
	out := make([]string, 0, 1024)
	for j := 0; len(out) < 1024; j++ {
		levels := strings.Split(grants[r.IntN(len(grants)/5)*5+j%5].Filter, "/")
		last := 0
		for i, l := range levels {
			switch l {
			case "+":
				levels[i] = "x"
			case "#":
				levels[i] = "tail/end"
			default:
				last = i
			}
		}
		if j%2 == 1 {
			levels[last] += "-nope" // the deepest literal level no longer matches
		}
		out = append(out, strings.Join(levels, "/"))
	}
	return out
}

// BenchmarkAllow shows that Allow costs the same for 10 and for 10,000 grants: one map lookup per
// topic level. "topics=16" is a client publishing to a handful of topics, as clients do, so the
// automaton stays in cache; "topics=1024" spreads over the whole automaton and so also measures
// cache misses, which grow with its size (about 16 MB for 10,000 grants), not the algorithm.
func BenchmarkAllow(b *testing.B) {
	for _, n := range []int{10, 10000} {
		grants := benchGrants(n)
		p, err := NewPrincipal("u", "c", grants)
		if err != nil {
			b.Fatal(err)
		}
		if !p.rules(Publish).deterministic() {
			b.Fatalf("%d grants: not determinized", n)
		}
		topics := benchTopics(grants)
		allowed := 0
		for _, t := range topics {
			if p.Allow(Publish, t) {
				allowed++
			}
		}
		if allowed < 450 || allowed > 600 {
			b.Fatalf("%d of 1024 topics allowed; the mix is off", allowed)
		}
		for _, k := range []int{16, 1024} {
			b.Run(fmt.Sprintf("grants=%d/topics=%d", n, k), func(b *testing.B) {
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					p.Allow(Publish, topics[i&(k-1)])
					i++
				}
			})
		}
	}
}

func BenchmarkAllowFilter(b *testing.B) {
	for _, n := range []int{10, 10000} {
		grants := benchGrants(n)
		p, _ := NewPrincipal("u", "c", grants)
		filters := benchTopics(grants)
		for i := range filters {
			if i%3 == 0 {
				parts := strings.Split(filters[i], "/")
				parts[len(parts)-1] = "#"
				filters[i] = strings.Join(parts, "/")
			} else if i%3 == 1 {
				filters[i] = strings.Replace(filters[i], "/x", "/+", 1)
			}
		}
		b.Run(fmt.Sprintf("grants=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				p.AllowFilter(Publish, filters[i&1023])
				i++
			}
		})
	}
}

// BenchmarkAllowLinearScan is the baseline the automaton replaces: matching the topic against
// every grant in turn, whose cost grows with the number of grants.
func BenchmarkAllowLinearScan(b *testing.B) {
	for _, n := range []int{10, 10000} {
		grants := benchGrants(n)
		topics := benchTopics(grants)
		b.Run(fmt.Sprintf("grants=%d", n), func(b *testing.B) {
			i := 0
			for b.Loop() {
				tp := topics[i&1023]
				for _, g := range grants {
					if topicMatch(g.Filter, tp) {
						break
					}
				}
				i++
			}
		})
	}
}

// BenchmarkBuildPrincipal is the per-connection cost of compiling grants.
func BenchmarkBuildPrincipal(b *testing.B) {
	for _, n := range []int{10, 10000} {
		grants := benchGrants(n)
		b.Run(fmt.Sprintf("grants=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				buildPrincipal("u", "c", SourceInternal, grants)
			}
		})
	}
}

func TestBenchGrantsAgainstOracle(t *testing.T) {
	// The benchmark's claim is only worth something if the answers are right.
	grants := benchGrants(2000)
	p, _ := NewPrincipal("u", "c", grants)
	for _, tp := range benchTopics(grants)[:200] {
		want := false
		for _, g := range grants {
			if topicMatch(g.Filter, tp) {
				want = true
				break
			}
		}
		if got := p.Allow(Publish, tp); got != want {
			t.Fatalf("Allow(%q) = %v, want %v", tp, got, want)
		}
	}
}

// deviceGrants are a device's usual grants: its own tree to publish, subscribe and retain in,
// and a broadcast tree to subscribe to.
var deviceGrants = []Grant{
	{Action: Publish, Filter: "devices/%u/#"},
	{Action: Subscribe, Filter: "devices/%u/#"},
	{Action: Subscribe, Filter: "broadcast/#"},
	{Action: Retain, Filter: "devices/%u/state"},
}

// BenchmarkDevice is what a device's principal costs per message and per connect, walked
// (listed.go, the default for so few grants) and compiled into automata.
func BenchmarkDevice(b *testing.B) {
	saved := maxListed
	defer func() { maxListed = saved }()
	for _, mode := range []struct {
		name  string
		limit int
	}{{"listed", saved}, {"automata", -1}} {
		maxListed = mode.limit
		p := buildPrincipal("dev-1", "dev-1", SourcePassword, deviceGrants)
		if p.listed != (mode.name == "listed") {
			b.Fatalf("%s: listed is %v", mode.name, p.listed)
		}
		b.Run(mode.name+"/allow", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if !p.Allow(Publish, "devices/dev-1/telemetry/temp") || p.Allow(Publish, "devices/dev-2/telemetry") {
					b.Fatal("wrong answer")
				}
			}
		})
		b.Run(mode.name+"/allowfilter", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if !p.AllowFilter(Subscribe, "broadcast/+/firmware") || p.AllowFilter(Subscribe, "devices/+/cmd") {
					b.Fatal("wrong answer")
				}
			}
		})
		b.Run(mode.name+"/build", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				buildPrincipal("dev-1", "dev-1", SourcePassword, deviceGrants)
			}
		})
	}
}

// BenchmarkPrincipalMemory reports what an authenticated device's principal keeps for its
// connection's life (live heap bytes per principal): a device's usual grants, its own tree to
// publish, subscribe and retain in and a broadcast tree to subscribe to, compiled for 10,000
// identities. An anonymous client of an open broker shares one principal and pays nothing.
func BenchmarkPrincipalMemory(b *testing.B) {
	grants := deviceGrants
	const n = 10000
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("dev-%d", i)
	}
	for b.Loop() {
		kept := make([]*Principal, n)
		before := heapAlloc()
		for i := range kept {
			kept[i] = buildPrincipal(ids[i], ids[i], SourcePassword, grants)
		}
		b.ReportMetric(float64(heapAlloc()-before)/n, "bytes/principal")
		runtime.KeepAlive(kept)
	}
}

func heapAlloc() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// A state's exact transitions answer as a map would, through the list and past it into a map,
// with levels set again replacing their target.
func TestExactTransitionsLikeAMap(t *testing.T) {
	var x dexact
	ref := map[string]*dstate{}
	for i := range 3 * maxExactList {
		level := fmt.Sprintf("l%d", i%(2*maxExactList))
		to := &dstate{}
		x.set(level, to)
		ref[level] = to
		for l, want := range ref {
			if got := x.get(l); got != want {
				t.Fatalf("after %d sets: get(%q) is not the target set last", i+1, l)
			}
		}
		if x.get("absent") != nil {
			t.Fatal("get of a level never set")
		}
	}
	if x.m == nil {
		t.Fatalf("%d levels and still a list", len(ref))
	}
}
