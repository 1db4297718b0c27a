package topic

import (
	"context"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/topic/topictest"
)

// churnFilter is the i-th filter of the mix bench/subload subscribes too.
func churnFilter(i int) Filter { return Filter{Path: topictest.Filter(i)} }

// churnTopic is a topic that matches (some of) the filters above.
func churnTopic(rng *rand.Rand, n int) string {
	i := rng.IntN(n)
	id := strconv.Itoa(i)
	switch i % 4 {
	case 0:
		return "device/" + id + "/" + benchKinds[i%len(benchKinds)]
	case 1:
		return "device/" + id + "/x/status"
	case 2:
		return "site/" + id + "/a/b"
	default:
		return "fleet/f1/" + id + "/t"
	}
}

var (
	churnX        *Index[*benchSession, benchOpts]
	churnBytes    float64
	churnNext     int
	churnSessions = func() []*benchSession {
		s := make([]*benchSession, 100) // 100 connections × 10,000 filters
		for i := range s {
			s[i] = &benchSession{id: i}
		}
		return s
	}()
)

// BenchmarkChurn1M loads 1,000,000 distinct filters, reports heap bytes per subscription, then
// matches while a goroutine subscribes and unsubscribes at a fixed rate (churn_per_s target).
func BenchmarkChurn1M(b *testing.B) {
	const n = 1_000_000
	const churnRate = 10_000 // subscribe+unsubscribe pairs per second
	// The index is loaded once and kept across the benchmark's rounds (loading takes seconds);
	// churn carries on from where the previous round left it.
	if churnX == nil {
		before := heapAlloc()
		churnX = NewIndex[*benchSession, benchOpts](benchCache)
		for i := 0; i < n; i++ {
			churnX.Subscribe(churnFilter(i), churnSessions[i%len(churnSessions)], benchOpts{QoS: 1})
		}
		churnBytes = float64(heapAlloc()-before) / n
		churnNext = n
	}
	x, sessions := churnX, churnSessions

	ctx, cancel := context.WithCancel(context.Background())
	var churned atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		per := churnRate / 1000
		next := churnNext
		defer func() { churnNext = next }()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			for j := 0; j < per; j++ {
				old := next - n
				x.Unsubscribe(churnFilter(old), sessions[old%len(sessions)])
				x.Subscribe(churnFilter(next), sessions[next%len(sessions)], benchOpts{QoS: 1})
				next++
				churned.Add(1)
			}
		}
	}()
	rng := rand.New(rand.NewPCG(7, 7))
	topics := make([]string, 1<<16)
	for i := range topics {
		topics[i] = churnTopic(rng, n)
	}
	b.ResetTimer()
	start := time.Now()
	matched := 0
	for i := 0; i < b.N; i++ {
		matched += len(x.Match(topics[i&(len(topics)-1)]).Entries)
	}
	el := time.Since(start).Seconds()
	b.StopTimer()
	cancel()
	<-done
	if matched == 0 && b.N > len(topics) {
		b.Fatal("no topic matched any filter")
	}
	b.ReportMetric(churnBytes, "bytes/sub")
	b.ReportMetric(float64(b.N)/el, "matches/s")
	b.ReportMetric(float64(churned.Load())/el, "churn/s")
}
