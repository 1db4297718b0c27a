package topic

import (
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/topic/topictest"
)

// cpuTime is the process's user+system CPU time: on a machine shared with other work, CPU per
// operation moves far less than wall time per operation.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

type rrFixture struct {
	x        *Index[*benchSession, benchOpts]
	sessions []*benchSession
	topics   []string // in the publisher's order: round robin over the sessions
	next     int      // the next fresh filter to churn
}

var rrFixtures = map[int]*rrFixture{}

// rrFix loads n distinct filters (the churn mix) over n/per sessions, as bench/subscriptions.sh
// does with --conns n/per --filters per, and kept across rounds: loading 1M takes seconds.
func rrFix(n, per int) *rrFixture {
	if fx := rrFixtures[n]; fx != nil {
		return fx
	}
	conns := n / per
	fx := &rrFixture{x: NewIndex[*benchSession, benchOpts](benchCache), next: n}
	for i := range conns {
		fx.sessions = append(fx.sessions, &benchSession{id: i})
	}
	for i := range n {
		fx.x.Subscribe(churnFilter(i), fx.sessions[i/per], benchOpts{QoS: 1})
	}
	fx.topics = make([]string, n)
	for seq := range n {
		c := seq % conns
		fx.topics[seq] = topictest.Topic(c*per + (seq/conns)%per)
	}
	rrFixtures[n] = fx
	return fx
}

// BenchmarkMatchRoundRobin is bench/subscriptions.sh's workload at the index: the publisher
// cycles through one topic per subscription (each matching exactly one filter), so with more
// subscriptions than the cache holds every Match misses. churn=K interleaves one subscribe or
// unsubscribe of a fresh filter every K matches (the live run saw about one change per 4
// deliveries at 100k); churn=0 is the steady phase.
func BenchmarkMatchRoundRobin(b *testing.B) {
	for _, sz := range []struct {
		name   string
		n, per int
	}{{"10k", 10_000, 5000}, {"100k", 100_000, 5000}, {"1M", 1_000_000, 10_000}} {
		for _, every := range []int{0, 4} {
			b.Run("subs="+sz.name+"/churn="+strconv.Itoa(every), func(b *testing.B) {
				fx := rrFix(sz.n, sz.per)
				x, n := fx.x, sz.n
				b.ReportAllocs()
				cpu0 := cpuTime()
				i, matched, sub := 0, 0, true
				for b.Loop() {
					matched += len(x.Match(fx.topics[i%n]).Entries)
					i++
					if every > 0 && i%every == 0 {
						// Alternate: subscribe a fresh filter, then unsubscribe it.
						f := fx.next
						if sub {
							x.Subscribe(churnFilter(f), fx.sessions[f%len(fx.sessions)], benchOpts{QoS: 1})
						} else {
							x.Unsubscribe(churnFilter(f), fx.sessions[f%len(fx.sessions)])
							fx.next++
						}
						sub = !sub
					}
				}
				b.ReportMetric(float64(cpuTime()-cpu0)/float64(i), "cpu-ns/op")
				if matched < i/2 {
					b.Fatalf("%d of %d matches found a subscription", matched, i)
				}
			})
		}
	}
}
