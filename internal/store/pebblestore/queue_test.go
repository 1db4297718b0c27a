package pebblestore

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/ternmq/tern/internal/message"
	"github.com/ternmq/tern/internal/store"
)

// TestQueueMatchesModel drives a queue with random pushes, pops, clears and reopens and checks it
// against a slice after every step.
func TestQueueMatchesModel(t *testing.T) {
	fs := vfs.NewMem()
	s := mustOpen(t, "d", Options{FS: fs})
	defer func() { _ = s.Close() }()
	q := queueOf(t, s, "q")
	rng := rand.New(rand.NewPCG(1, 2))
	var model []store.Item
	var bytesWant int64
	steps := 4000
	if testing.Short() {
		steps = 1000
	}
	for step := range steps {
		pushBias := 60
		if (step/400)%2 == 1 {
			pushBias = 35
		}
		switch r := rng.IntN(1000); {
		case r < 3:
			must(t, q.Clear())
			model, bytesWant = nil, 0
		case r < 10:
			must(t, s.Close())
			s = mustOpen(t, "d", Options{FS: fs})
			q = queueOf(t, s, "q")
		case r%100 < pushBias:
			size := rng.IntN(200)
			if rng.IntN(50) == 0 {
				size = 300 << 10 // a few large ones test the read-ahead's byte bound
			}
			it := store.Item{
				Msg:    &message.Message{ID: uint64(step + 1), Topic: "t", Payload: bytes.Repeat([]byte{byte(step)}, size)},
				QoS:    byte(step % 3),
				Shared: rng.IntN(3) == 0,
			}
			if step%7 == 0 {
				it.SubIDs = []uint32{uint32(step)}
			}
			must(t, q.Push(it))
			model = append(model, it)
			bytesWant += int64(it.Size())
		default:
			it, ok, err := q.Front()
			must(t, err)
			if ok != (len(model) > 0) {
				t.Fatalf("step %d: front ok=%v, model has %d", step, ok, len(model))
			}
			if ok {
				w := model[0]
				if it.Msg.ID != w.Msg.ID || !bytes.Equal(it.Msg.Payload, w.Msg.Payload) || it.QoS != w.QoS ||
					fmt.Sprint(it.SubIDs) != fmt.Sprint(w.SubIDs) {
					t.Fatalf("step %d: front %d, want %d", step, it.Msg.ID, w.Msg.ID)
				}
				must(t, q.Pop())
				model = model[1:]
				bytesWant -= int64(w.Size())
			}
		}
		if q.Len() != len(model) || q.Bytes() != bytesWant {
			t.Fatalf("step %d: len %d bytes %d, want %d %d", step, q.Len(), q.Bytes(), len(model), bytesWant)
		}
		qq := q.(*queue)
		if n := len(qq.ahead) - qq.pos; n > aheadItems || (n > 1 && qq.aheadSum > aheadBytes) {
			t.Fatalf("step %d: read-ahead holds %d items, %d bytes", step, n, qq.aheadSum)
		}
	}
	if countKind(t, s, kindBody) > len(model) {
		t.Fatalf("%d bodies for %d queued", countKind(t, s, kindBody), len(model))
	}
}

// TestQueueNobodyReadsKeepsNothing: pushes to a queue nobody reads stay on disk only.
func TestQueueNobodyReadsKeepsNothing(t *testing.T) {
	s := mustOpen(t, "d", Options{FS: vfs.NewMem()})
	defer s.Close()
	q := queueOf(t, s, "offline")
	for i := range 100 {
		must(t, q.Push(store.Item{Msg: &message.Message{ID: uint64(i + 1), Topic: "t"}}))
	}
	if n := len(q.(*queue).ahead); n != 0 {
		t.Fatalf("unread queue holds %d items in memory", n)
	}
}

// TestLargeQueueFlatMemory pushes 200k items, reopens, and pops them all in order. Open must not
// read the items into memory and popping must not accumulate them. (50k under the race detector,
// to keep the run short.)
func TestLargeQueueFlatMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("200k items; skipped with -short")
	}
	n := 200_000
	if raceEnabled {
		n = 50_000
	}
	dir := t.TempDir()
	s := mustOpen(t, dir, Options{})
	q := queueOf(t, s, "big")
	payload := bytes.Repeat([]byte("p"), 64)
	var wantBytes int64
	start := time.Now()
	for i := range n {
		it := store.Item{Msg: &message.Message{ID: uint64(i + 1), Topic: "big/queue", Payload: payload}, QoS: 1}
		must(t, q.Push(it))
		wantBytes += int64(it.Size())
	}
	must(t, s.Sync().Wait())
	must(t, s.Close())
	pushed := time.Since(start)

	base := heapInUse()
	start = time.Now()
	s = mustOpen(t, dir, Options{})
	defer s.Close()
	q = queueOf(t, s, "big")
	opened := time.Since(start)
	atOpen := heapInUse()
	if q.Len() != n || q.Bytes() != wantBytes {
		t.Fatalf("after reopen: len %d bytes %d, want %d %d", q.Len(), q.Bytes(), n, wantBytes)
	}
	var peak uint64
	start = time.Now()
	for i := range n {
		it, ok, err := q.Front()
		must(t, err)
		if !ok || it.Msg.ID != uint64(i+1) {
			t.Fatalf("item %d: ok=%v id %d", i, ok, it.Msg.ID)
		}
		must(t, q.Pop())
		if i%(n/4) == n/8 {
			peak = max(peak, heapInUse())
		}
	}
	popped := time.Since(start)
	if _, ok, _ := q.Front(); ok || q.Len() != 0 || q.Bytes() != 0 {
		t.Fatalf("not empty: len %d bytes %d", q.Len(), q.Bytes())
	}
	t.Logf("push %v, open %v, pop %v; heap before open %d MiB, after %d MiB, peak while popping %d MiB",
		pushed, opened, popped, base>>20, atOpen>>20, peak>>20)
	// Holding 200k decoded items would take over 40 MiB; Pebble's cache and memtables take at most
	// 16 (outside the Go heap when cgo is on).
	const allowance = 24 << 20
	if atOpen > base+allowance || peak > base+allowance {
		t.Fatalf("memory grows with the queue: %d MiB before open, %d after, %d peak", base>>20, atOpen>>20, peak>>20)
	}
}

func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}
