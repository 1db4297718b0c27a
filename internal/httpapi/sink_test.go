package httpapi

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/message"
)

func sinkDelivery(id uint64) broker.Delivery {
	return broker.Delivery{Msg: &message.Message{ID: id, Topic: "t", Payload: []byte("p")}}
}

// sendFrom sends each deliveries from each of senders goroutines, numbered 1 on and apart, and
// returns what to wait on; yield has them let others run every 16 sends.
func sendFrom(t *testing.T, k *sink, senders, each int, yield bool) *sync.WaitGroup {
	var wg sync.WaitGroup
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if k.Send(sinkDelivery(uint64(s*each+i+1))) != broker.Sent {
					t.Error("refused under the bound")
					return
				}
				if yield && i%16 == 0 {
					runtime.Gosched()
				}
			}
		}()
	}
	return &wg
}

// The sink holds at most its bound, answers Busy past it, hands deliveries over in order, and
// keeps the ready token while some are left behind.
func TestSinkBoundOrderAndToken(t *testing.T) {
	k := newFrameSink(5)
	for i := range uint64(5) {
		if r := k.Send(sinkDelivery(i + 1)); r != broker.Sent {
			t.Fatalf("send %d: %v, want Sent", i+1, r)
		}
	}
	if r := k.Send(sinkDelivery(6)); r != broker.Busy || !k.busy.Load() {
		t.Fatalf("send past the bound: %v (busy %v), want Busy", r, k.busy.Load())
	}
	<-k.ready
	got := k.take(nil, 3)
	select {
	case <-k.ready:
	default:
		t.Fatal("two deliveries left behind without the ready token")
	}
	got = k.take(got, 10)
	for i, d := range got {
		if d.id != uint64(i+1) || len(d.frame) == 0 {
			t.Fatalf("delivery %d is %d (frame %q), want %d in order", i, d.id, d.frame, i+1)
		}
	}
	if len(got) != 5 {
		t.Fatalf("took %d, want 5", len(got))
	}
	select {
	case <-k.ready:
		t.Fatal("ready token with nothing queued")
	default:
	}
}

// A drained sink lets go of what a burst grew, so an idle stream holds no queue.
func TestSinkLetsGoOfABurst(t *testing.T) {
	k := newFrameSink(128)
	if cap(k.queue) != 0 {
		t.Fatalf("a new sink holds a queue of %d", cap(k.queue))
	}
	for i := range uint64(100) {
		k.Send(sinkDelivery(i))
	}
	if got := k.take(nil, 1000); len(got) != 100 {
		t.Fatalf("took %d, want 100", len(got))
	}
	if cap(k.queue) > keptQueue {
		t.Fatalf("drained sink keeps a queue of %d, want at most %d", cap(k.queue), keptQueue)
	}
}

// Senders on several goroutines and one handler taking as tokens come: nothing is lost or
// duplicated, and the handler never waits on a token for deliveries already queued.
func TestSinkConcurrentSenders(t *testing.T) {
	const senders, each = 4, 2000
	k := newSink(senders * each)
	wg := sendFrom(t, k, senders, each, false)
	seen := make(map[uint64]bool, senders*each)
	var batch []delivery
	for len(seen) < senders*each {
		<-k.ready
		batch = k.take(batch[:0], 64)
		for _, d := range batch {
			if seen[d.id] {
				t.Fatalf("delivery %d taken twice", d.id)
			}
			seen[d.id] = true
		}
	}
	wg.Wait()
}

// With a writer, Send starts it when deliveries arrive and none runs; it ends when the queue
// is empty, and no delivery is ever left behind with no writer to come: senders racing the
// writer's end start the next one.
func TestSinkWriterOnDemand(t *testing.T) {
	const senders, each = 4, 3000
	k := newSink(senders * each)
	var (
		mu     sync.Mutex
		seen   = make(map[uint64]bool, senders*each)
		runs   int
		done   = make(chan struct{})
		active atomic.Bool // a writer holds a batch
	)
	k.writer = func() {
		mu.Lock()
		runs++
		mu.Unlock()
		var batch []delivery
		for {
			batch = k.takeOrStop(batch[:0], 7)
			if len(batch) == 0 {
				return
			}
			if !active.CompareAndSwap(false, true) {
				t.Error("two writers with a batch at once")
			}
			mu.Lock()
			for _, d := range batch {
				if seen[d.id] {
					t.Errorf("delivery %d written twice", d.id)
				}
				seen[d.id] = true
			}
			if len(seen) == senders*each {
				close(done)
			}
			mu.Unlock()
			active.Store(false)
		}
	}
	// The senders yield now and then, so the writer empties the queue and ends, often.
	sendFrom(t, k, senders, each, true).Wait()
	select {
	case <-done:
	case <-time.After(20 * time.Second): // bounds a failure only
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("%d of %d deliveries written: the rest were left with no writer", len(seen), senders*each)
	}
	select {
	case <-k.ready:
		t.Fatal("a writer sink left a ready token")
	default:
	}
	// Once the writer has ended, the next delivery starts another run.
	for {
		k.mu.Lock()
		writing := k.writing
		k.mu.Unlock()
		if !writing {
			break
		}
		runtime.Gosched()
	}
	mu.Lock()
	before := runs
	mu.Unlock()
	last := make(chan struct{})
	k.writer = func() {
		if got := k.takeOrStop(nil, 10); len(got) != 1 || got[0].id != 1<<40 {
			t.Errorf("the next run took %v", got)
		}
		k.takeOrStop(nil, 10)
		close(last)
	}
	k.Send(sinkDelivery(1 << 40))
	select {
	case <-last:
	case <-time.After(20 * time.Second):
		t.Fatal("a delivery after the writer ended started no writer")
	}
	t.Logf("%d deliveries written by %d runs of the writer", len(seen), before)
}
