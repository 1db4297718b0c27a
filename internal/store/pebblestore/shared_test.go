package pebblestore

import (
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/ternmq/tern/internal/message"
	"github.com/ternmq/tern/internal/store"
	"github.com/ternmq/tern/internal/store/storetest"
)

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// countKind counts the keys of one kind in the database.
func countKind(t testing.TB, s *Store, kind byte) int {
	t.Helper()
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{kind}, UpperBound: []byte{kind + 1}})
	must(t, err)
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		n++
	}
	must(t, it.Close())
	return n
}

func queueOf(t testing.TB, s *Store, id string) store.Queue {
	t.Helper()
	q, err := s.Sessions().Queue(id)
	must(t, err)
	return q
}

func inflightOf(t testing.TB, s *Store, id string) store.Inflight {
	t.Helper()
	f, err := s.Sessions().Inflight(id)
	must(t, err)
	return f
}

func (s *Store) refsOf(id uint64) int32 {
	s.bodies.mu.Lock()
	defer s.bodies.mu.Unlock()
	return s.bodies.refs[id]
}

// TestSharedBodyLifetime follows one shared body through every way a reference goes: it is
// written once, and deleted with its last reference whichever operation drops it.
func TestSharedBodyLifetime(t *testing.T) {
	s := mustOpen(t, "d", Options{FS: vfs.NewMem()})
	defer s.Close()
	m := storetest.Msg(77, "fan/out", "one body")
	shared := store.Item{Msg: m, QoS: 1, Shared: true}
	for _, id := range []string{"a", "b", "c"} {
		must(t, queueOf(t, s, id).Push(shared))
	}
	f := inflightOf(t, s, "d")
	must(t, f.Put(store.InflightEntry{PacketID: 1, Item: shared}))
	// Re-putting the same delivery (released now) keeps the one reference.
	must(t, f.Put(store.InflightEntry{PacketID: 1, Item: shared, Released: true}))
	if n := countKind(t, s, kindBody); n != 1 || s.refsOf(77) != 4 {
		t.Fatalf("%d bodies, %d refs; want 1 body, 4 refs", n, s.refsOf(77))
	}
	steps := []struct {
		name string
		do   func() error
	}{
		{"pop", func() error { return queueOf(t, s, "a").Pop() }},
		{"session delete", func() error { return s.Sessions().Delete("b") }},
		{"clear", func() error { return queueOf(t, s, "c").Clear() }},
		{"in-flight delete", func() error { return inflightOf(t, s, "d").Delete(1) }},
	}
	for i, st := range steps {
		must(t, st.do())
		left := int32(len(steps) - 1 - i)
		wantBodies := 0
		if left > 0 {
			wantBodies = 1
		}
		if n := countKind(t, s, kindBody); n != wantBodies || s.refsOf(77) != left {
			t.Fatalf("after %s: %d bodies, %d refs; want %d, %d", st.name, n, s.refsOf(77), wantBodies, left)
		}
	}
}

func TestInlineItemsWriteNoBody(t *testing.T) {
	s := mustOpen(t, "d", Options{FS: vfs.NewMem()})
	defer s.Close()
	must(t, queueOf(t, s, "a").Push(store.Item{Msg: storetest.Msg(1, "t", "x")}))
	// Shared without an id has nothing to share under: stored inline.
	must(t, queueOf(t, s, "a").Push(store.Item{Msg: &message.Message{Topic: "t"}, Shared: true}))
	if n := countKind(t, s, kindBody); n != 0 {
		t.Fatalf("%d bodies for inline items", n)
	}
}

// TestSharedRefsRebuiltAtOpen: the counts come back from the entries, and a body nothing
// references any more (as a crash between writes could leave) is collected.
func TestSharedRefsRebuiltAtOpen(t *testing.T) {
	fs := vfs.NewMem()
	s := mustOpen(t, "d", Options{FS: fs})
	m := storetest.Msg(5, "t", "x")
	for _, id := range []string{"a", "b"} {
		must(t, queueOf(t, s, id).Push(store.Item{Msg: m, Shared: true}))
	}
	must(t, inflightOf(t, s, "c").Put(store.InflightEntry{PacketID: 9, Item: store.Item{Msg: m, Shared: true}}))
	orphan := storetest.Msg(999, "t", "orphan")
	b := s.db.NewBatch()
	must(t, b.Set(bodyKey(orphan.ID), appendMessage(nil, orphan), nil))
	must(t, b.Commit(pebble.Sync))
	must(t, s.Close())

	s = mustOpen(t, "d", Options{FS: fs})
	defer s.Close()
	if s.refsOf(5) != 3 || countKind(t, s, kindBody) != 1 {
		t.Fatalf("refs %d, bodies %d; want 3, 1", s.refsOf(5), countKind(t, s, kindBody))
	}
	if s.LastMessageID() != 999 {
		t.Fatalf("LastMessageID %d, want the orphan's 999", s.LastMessageID())
	}
	must(t, queueOf(t, s, "a").Pop())
	must(t, s.Sessions().Delete("b"))
	must(t, inflightOf(t, s, "c").Delete(9))
	if n := countKind(t, s, kindBody); n != 0 {
		t.Fatalf("%d bodies left", n)
	}
}

// TestDeleteLongSharedQueue deletes a session whose queue is longer than a deletion chunk, with
// bodies shared with a neighbour that must keep them.
func TestDeleteLongSharedQueue(t *testing.T) {
	s := mustOpen(t, "d", Options{FS: vfs.NewMem()})
	defer s.Close()
	long, keep := queueOf(t, s, "long"), queueOf(t, s, "keep")
	const n = 3*deleteChunk + 17
	for i := range n {
		it := store.Item{Msg: storetest.Msg(uint64(i+1), "t", "x"), Shared: i%3 != 0}
		must(t, long.Push(it))
		if i%100 == 0 {
			must(t, keep.Push(it))
		}
	}
	must(t, s.Sessions().Delete("long"))
	if long.Len() != 0 || countKind(t, s, kindQueue) != keep.Len() {
		t.Fatalf("long: len %d; %d queue keys, want %d", long.Len(), countKind(t, s, kindQueue), keep.Len())
	}
	// Bodies left: keep's shared items only.
	want := 0
	for i := 0; i < n; i += 100 {
		if i%3 != 0 {
			want++
		}
	}
	if got := countKind(t, s, kindBody); got != want {
		t.Fatalf("%d bodies left, want %d", got, want)
	}
	for keep.Len() > 0 {
		it, ok, err := keep.Front()
		must(t, err)
		if !ok || string(it.Msg.Payload) != "x" {
			t.Fatalf("keep lost its message: %v %+v", ok, it)
		}
		must(t, keep.Pop())
	}
	if got := countKind(t, s, kindBody); got != 0 {
		t.Fatalf("%d bodies left after draining", got)
	}
}

// TestLastMessageID: each place a message can be kept raises it, and Open finds it again.
func TestLastMessageID(t *testing.T) {
	writes := map[string]func(s *Store, id uint64) error{
		"will": func(s *Store, id uint64) error {
			return s.Sessions().Put(store.SessionRecord{ClientID: "c", Will: &store.Will{Msg: storetest.Msg(id, "w", "x")}})
		},
		"retained": func(s *Store, id uint64) error { return s.Retained().Set(storetest.Msg(id, "r", "x")) },
		"queued": func(s *Store, id uint64) error {
			return queueOf(t, s, "q").Push(store.Item{Msg: storetest.Msg(id, "t", "x")})
		},
		"shared": func(s *Store, id uint64) error {
			return queueOf(t, s, "q").Push(store.Item{Msg: storetest.Msg(id, "t", "x"), Shared: true})
		},
		"in flight": func(s *Store, id uint64) error {
			return inflightOf(t, s, "f").Put(store.InflightEntry{PacketID: 1, Item: store.Item{Msg: storetest.Msg(id, "t", "x")}})
		},
	}
	for name, write := range writes {
		t.Run(name, func(t *testing.T) {
			fs := vfs.NewMem()
			s := mustOpen(t, "d", Options{FS: fs})
			must(t, queueOf(t, s, "low").Push(store.Item{Msg: storetest.Msg(3, "t", "x")}))
			const id = 1_000_000_007
			must(t, write(s, id))
			if s.LastMessageID() != id {
				t.Fatalf("after write: %d", s.LastMessageID())
			}
			must(t, s.Close())
			s = mustOpen(t, "d", Options{FS: fs})
			defer s.Close()
			if s.LastMessageID() != id {
				t.Fatalf("after reopen: %d, want %d", s.LastMessageID(), id)
			}
		})
	}
}

func TestDiskBytes(t *testing.T) {
	s := mustOpen(t, t.TempDir(), Options{})
	q := queueOf(t, s, "q")
	before := s.DiskBytes()
	for i := range 1000 {
		must(t, q.Push(store.Item{Msg: storetest.Msg(uint64(i), "t", fmt.Sprint(i))}))
	}
	must(t, s.Sync().Wait())
	if after := s.DiskBytes(); after <= before || before <= 0 {
		t.Fatalf("disk bytes %d then %d", before, after)
	}
	must(t, s.Close())
	if s.DiskBytes() != 0 {
		t.Fatal("closed store reports disk bytes")
	}
}
