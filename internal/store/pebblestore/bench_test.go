package pebblestore

import (
	"bytes"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/message"
	"github.com/ternmq/tern/internal/store"
)

func benchItem(i int, payload []byte) store.Item {
	return store.Item{Msg: &message.Message{ID: uint64(i + 1), Topic: "bench/topic", Payload: payload, QoS: 1}, QoS: 1}
}

// BenchmarkPushPop: one inline 128-byte message through a queue, on disk, no fsync.
func BenchmarkPushPop(b *testing.B) {
	s := mustOpen(b, b.TempDir(), Options{})
	defer s.Close()
	q := queueOf(b, s, "q")
	payload := bytes.Repeat([]byte("x"), 128)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if err := q.Push(benchItem(i, payload)); err != nil {
			b.Fatal(err)
		}
		if _, ok, err := q.Front(); err != nil || !ok {
			b.Fatal(ok, err)
		}
		if err := q.Pop(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPushSync: writers each pushing to their own queue and waiting for the disk before the
// next push, as a QoS 1 publish is acknowledged. Reports throughput and fsyncs per message: below
// 1 with several writers is group commit at work.
func BenchmarkPushSync(b *testing.B) {
	for _, writers := range []int{1, 16} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			s := mustOpen(b, b.TempDir(), Options{})
			defer s.Close()
			payload := bytes.Repeat([]byte("x"), 128)
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			before := s.sync.fsyncs.Load()
			for w := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					q := queueOf(b, s, fmt.Sprint("w", w))
					for {
						i := int(next.Add(1)) - 1
						if i >= b.N {
							return
						}
						if err := q.Push(benchItem(i, payload)); err != nil {
							b.Error(err)
							return
						}
						if err := s.Sync().Wait(); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
			b.ReportMetric(float64(s.sync.fsyncs.Load()-before)/float64(b.N), "fsyncs/msg")
		})
	}
}

// BenchmarkOpen: Open of a directory holding a queue of 100k items, then the first Front.
func BenchmarkOpen(b *testing.B) {
	const n = 100_000
	dir := b.TempDir()
	s := mustOpen(b, dir, Options{})
	q := queueOf(b, s, "q")
	payload := bytes.Repeat([]byte("x"), 128)
	for i := range n {
		if err := q.Push(benchItem(i, payload)); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		s := mustOpen(b, dir, Options{})
		q := queueOf(b, s, "q")
		if _, ok, err := q.Front(); !ok || err != nil || q.Len() != n {
			b.Fatal(ok, err, q.Len())
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAllSessions: what a start reads of 100,000 persistent sessions with a subscription
// each (store.Sessions.All), the part of recovery that grows with the number of devices.
func BenchmarkAllSessions(b *testing.B) {
	const n = 100_000
	dir := b.TempDir()
	s := mustOpen(b, dir, Options{})
	for i := range n {
		id := fmt.Sprintf("device-%06d", i)
		rec := store.SessionRecord{ClientID: id, Expiry: 3600,
			Subscriptions: []store.Subscription{{Filter: "cmd/" + id + "/#", QoS: 1}}}
		if err := s.Sessions().Put(rec); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Sync().Wait(); err != nil {
		b.Fatal(err)
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	s = mustOpen(b, dir, Options{})
	defer s.Close()
	b.ResetTimer()
	for range b.N {
		got, subs := 0, 0
		err := s.Sessions().All(func(rec store.SessionRecord) error {
			got++
			subs += len(rec.Subscriptions)
			return nil
		})
		if err != nil || got != n || subs != n {
			b.Fatalf("%d sessions, %d subscriptions, %v; want %d each", got, subs, err, n)
		}
	}
}
