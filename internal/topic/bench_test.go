package topic

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
)

// The benchmark shape: a fleet of devices, each with its own session subscribed to
// device/<id>/<kind> for every kind, plus a few hundred wildcard subscriptions (dashboards on
// device/+/<kind>, trackers on device/<id>/#) and two shared worker pools.

type benchSession struct{ id int }

// benchOpts is the size of what a broker stores per subscription (QoS, flags, subscription id).
type benchOpts struct {
	QoS     uint8
	NoLocal bool
	SubID   uint32
}

var benchKinds = []string{"temp", "humidity", "pressure", "status", "alarm", "cmd", "config", "battery", "location", "firmware"}

const (
	benchDashboards = 20  // × len(benchKinds) device/+/<kind> filters
	benchTrackers   = 200 // device/<id>/# filters
	benchCache      = 1 << 16
	benchHot        = 1 << 10 // distinct topics in the cached benchmarks
	benchCold       = 1 << 16 // distinct topics in the uncached ones
)

type benchFixture struct {
	x    *Index[*benchSession, benchOpts]
	hot  []string
	cold []string
}

var (
	fixtureMu sync.Mutex
	fixtures  = map[int]*benchFixture{}
)

// benchSubs are the subscription counts the brief asks for.
var benchSubs = []struct {
	name string
	n    int
}{{"10k", 10_000}, {"100k", 100_000}, {"1M", 1_000_000}}

type benchSub struct {
	f   Filter
	key *benchSession
}

// benchSubscriptions generates the subscriptions of a fixture with about n of them.
func benchSubscriptions(n int) []benchSub {
	rng := rand.New(rand.NewPCG(uint64(n), 1))
	devices := n / len(benchKinds)
	subs := make([]benchSub, 0, n+1000)
	add := func(s string, key *benchSession) {
		f, err := ParseFilter(s)
		if err != nil {
			panic(err)
		}
		subs = append(subs, benchSub{f, key})
	}
	for d := range devices {
		sess := &benchSession{id: d}
		id := strconv.Itoa(d)
		for _, k := range benchKinds {
			add("device/"+id+"/"+k, sess)
		}
	}
	for i := range benchDashboards {
		sess := &benchSession{id: -1 - i}
		for _, k := range benchKinds {
			add("device/+/"+k, sess)
		}
	}
	for i := range benchTrackers {
		add("device/"+strconv.Itoa(rng.IntN(devices))+"/#", &benchSession{id: -100 - i})
	}
	for i := range 16 {
		add("$share/ingest/device/+/temp", &benchSession{id: -1000 - i})
	}
	for i := range 8 {
		add("$share/alarms/device/+/alarm", &benchSession{id: -2000 - i})
	}
	return subs
}

func benchTopics(rng *rand.Rand, n, devices int) []string {
	ts := make([]string, n)
	for i := range ts {
		ts[i] = "device/" + strconv.Itoa(rng.IntN(devices)) + "/" + benchKinds[rng.IntN(len(benchKinds))]
	}
	return ts
}

func fixture(b *testing.B, n int) *benchFixture {
	b.Helper()
	fixtureMu.Lock()
	defer fixtureMu.Unlock()
	if fx := fixtures[n]; fx != nil {
		return fx
	}
	x := NewIndex[*benchSession, benchOpts](benchCache)
	for _, s := range benchSubscriptions(n) {
		x.Subscribe(s.f, s.key, benchOpts{QoS: 1})
	}
	rng := rand.New(rand.NewPCG(uint64(n), 2))
	devices := n / len(benchKinds)
	fx := &benchFixture{x: x, hot: benchTopics(rng, benchHot, devices), cold: benchTopics(rng, benchCold, devices)}
	fixtures[n] = fx
	return fx
}

// warm fills the cache with the hot topics and returns a function that reports their mean
// fan-out; call it after the timed loop (b.Loop discards metrics reported before it).
func (fx *benchFixture) warm(b *testing.B) (report func()) {
	entries, groups := 0, 0
	for _, t := range fx.hot {
		r := fx.x.Match(t)
		entries += len(r.Entries)
		groups += len(r.Shared)
	}
	return func() {
		b.ReportMetric(float64(entries)/float64(len(fx.hot)), "entries/match")
		b.ReportMetric(float64(groups)/float64(len(fx.hot)), "groups/match")
	}
}

func BenchmarkMatch(b *testing.B) {
	for _, sz := range benchSubs {
		b.Run("subs="+sz.name, func(b *testing.B) {
			fx := fixture(b, sz.n)
			// Cached: the hot topics stay in the cache; this is what a publish to a topic seen
			// before costs. Must be 0 allocs/op.
			b.Run("cached", func(b *testing.B) {
				report := fx.warm(b)
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					_ = fx.x.Match(fx.hot[i&(benchHot-1)])
					i++
				}
				report()
			})
			// Uncached: a full trie walk into a reused Result. Must be 0 allocs/op.
			b.Run("uncached", func(b *testing.B) {
				var r Result[*benchSession, benchOpts]
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					fx.x.MatchInto(fx.cold[i&(benchCold-1)], &r)
					i++
				}
			})
			// Miss: Match on a topic not in the cache — walk, freeze an immutable exact-size
			// result, insert into the cache evicting a random item. The price of a publish to a
			// topic not seen since the last change. The index shares fx's (read-only here) trie but
			// has a 64-topic cache, so with 2^20 random topics nearly every Match misses.
			b.Run("miss", func(b *testing.B) {
				y := NewIndex[*benchSession, benchOpts](64)
				y.root.kids.Store(fx.x.root.kids.Load())
				topics := benchTopics(rand.New(rand.NewPCG(9, 9)), 1<<20, sz.n/len(benchKinds))
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					_ = y.Match(topics[i&(1<<20-1)])
					i++
				}
			})
		})
	}
}

func BenchmarkMatchParallel(b *testing.B) {
	for _, sz := range benchSubs[:2] {
		b.Run("subs="+sz.name, func(b *testing.B) {
			fx := fixture(b, sz.n)
			b.Run("cached", func(b *testing.B) {
				report := fx.warm(b)
				b.ReportAllocs()
				b.ResetTimer()
				var seed atomic.Uint64
				b.RunParallel(func(pb *testing.PB) {
					i := int(seed.Add(1) * 7919)
					for pb.Next() {
						_ = fx.x.Match(fx.hot[i&(benchHot-1)])
						i++
					}
				})
				report()
			})
			b.Run("uncached", func(b *testing.B) {
				b.ReportAllocs()
				var seed atomic.Uint64
				b.RunParallel(func(pb *testing.PB) {
					var r Result[*benchSession, benchOpts]
					i := int(seed.Add(1) * 7919)
					for pb.Next() {
						fx.x.MatchInto(fx.cold[i&(benchCold-1)], &r)
						i++
					}
				})
			})
			// Readers walking while a writer subscribes and unsubscribes on the same subtrees
			// without pause (far above real subscribe rates): per-node locks keep readers going.
			b.Run("uncached+writer", func(b *testing.B) {
				var stop atomic.Bool
				var writes atomic.Int64
				var wg sync.WaitGroup
				wg.Go(func() {
					devices := sz.n / len(benchKinds)
					sess := &benchSession{id: -9999}
					fs := make([]Filter, 1024)
					for i := range fs {
						fs[i], _ = ParseFilter("device/" + strconv.Itoa(i*7%devices) + "/extra/+")
					}
					for i := 0; !stop.Load(); i++ {
						f := fs[i&1023]
						fx.x.Subscribe(f, sess, benchOpts{})
						fx.x.Unsubscribe(f, sess)
						writes.Add(2)
					}
				})
				b.ReportAllocs()
				b.ResetTimer()
				var seed atomic.Uint64
				b.RunParallel(func(pb *testing.PB) {
					var r Result[*benchSession, benchOpts]
					i := int(seed.Add(1) * 7919)
					for pb.Next() {
						fx.x.MatchInto(fx.cold[i&(benchCold-1)], &r)
						i++
					}
				})
				stop.Store(true)
				wg.Wait()
				b.ReportMetric(float64(writes.Load())/b.Elapsed().Seconds(), "writes/s")
			})
		})
	}
}

func BenchmarkSubscribe(b *testing.B) {
	const base = 100_000
	// new: a subscription on a filter nobody has (a new leaf, sometimes a new device node).
	b.Run("new", func(b *testing.B) {
		x := NewIndex[*benchSession, benchOpts](benchCache)
		for _, s := range benchSubscriptions(base) {
			x.Subscribe(s.f, s.key, benchOpts{})
		}
		fs := make([]Filter, b.N)
		for i := range fs {
			fs[i], _ = ParseFilter("device/" + strconv.Itoa(base/len(benchKinds)+i/4) + "/" + benchKinds[i%4])
		}
		sess := &benchSession{}
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			x.Subscribe(fs[i], sess, benchOpts{})
		}
	})
	// replace: an existing (filter, key) with a new value.
	b.Run("replace", func(b *testing.B) {
		x := NewIndex[*benchSession, benchOpts](benchCache)
		subs := benchSubscriptions(base)
		for _, s := range subs {
			x.Subscribe(s.f, s.key, benchOpts{})
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			s := subs[i%len(subs)]
			x.Subscribe(s.f, s.key, benchOpts{QoS: 2})
			i++
		}
	})
	// churn: Subscribe then Unsubscribe of a fresh leaf, which creates and prunes a node.
	b.Run("churn", func(b *testing.B) {
		x := NewIndex[*benchSession, benchOpts](benchCache)
		for _, s := range benchSubscriptions(base) {
			x.Subscribe(s.f, s.key, benchOpts{})
		}
		fs := make([]Filter, 4096)
		for i := range fs {
			fs[i], _ = ParseFilter("device/" + strconv.Itoa(i*13%(base/len(benchKinds))) + "/extra")
		}
		sess := &benchSession{}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			f := fs[i&4095]
			x.Subscribe(f, sess, benchOpts{})
			x.Unsubscribe(f, sess)
			i++
		}
	})
}

// BenchmarkIndexMemory measures the heap the index itself holds per subscription: the filter
// strings and session values are created before the first measurement, so only trie nodes,
// child maps and entries are counted. Run with -benchtime=1x.
func BenchmarkIndexMemory(b *testing.B) {
	for _, sz := range benchSubs {
		b.Run("subs="+sz.name, func(b *testing.B) {
			var perSub float64
			for b.Loop() {
				subs := benchSubscriptions(sz.n)
				before := heapAlloc()
				x := NewIndex[*benchSession, benchOpts](0)
				for _, s := range subs {
					x.Subscribe(s.f, s.key, benchOpts{QoS: 1})
				}
				after := heapAlloc()
				perSub = float64(after-before) / float64(x.Len())
				runtime.KeepAlive(x)
				runtime.KeepAlive(subs)
			}
			b.ReportMetric(perSub, "B/sub")
		})
	}
}

func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// Example-style sanity check that the fixture has the intended shape; it runs as a test so a
// broken generator cannot silently make the benchmarks meaningless.
func TestBenchFixtureShape(t *testing.T) {
	subs := benchSubscriptions(10_000)
	x := NewIndex[*benchSession, benchOpts](64)
	for _, s := range subs {
		x.Subscribe(s.f, s.key, benchOpts{})
	}
	r := x.Match("device/42/temp")
	// device/42/temp, 20 dashboards on device/+/temp, maybe trackers on device/42/#.
	if len(r.Entries) < 1+benchDashboards || len(r.Shared) != 1 || len(r.Shared[0].Members) != 16 {
		t.Fatalf("device/42/temp matched %d entries, %d groups", len(r.Entries), len(r.Shared))
	}
	if x.Len() != len(subs) {
		t.Fatalf("Len = %d, want %d", x.Len(), len(subs))
	}
	_ = fmt.Sprint(r)
}
