package pebblestore

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/ternmq/tern/internal/message"
	"github.com/ternmq/tern/internal/store"
	"github.com/ternmq/tern/internal/store/storetest"
)

func item(i int) store.Item {
	return store.Item{Msg: &message.Message{ID: uint64(i), Topic: "t", Payload: []byte(fmt.Sprint(i))}, QoS: 1}
}

// ids returns the ids in a queue from its head, without consuming it.
func drain(t testing.TB, q store.Queue) []uint64 {
	t.Helper()
	var out []uint64
	for q.Len() > 0 {
		it, ok, err := q.Front()
		must(t, err)
		if !ok {
			t.Fatal("front of a non-empty queue")
		}
		out = append(out, it.Msg.ID)
		must(t, q.Pop())
	}
	return out
}

func wait(t testing.TB, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

func TestSyncNilWhenNothingToSync(t *testing.T) {
	s := mustOpen(t, "d", Options{FS: vfs.NewMem()})
	defer s.Close()
	if tk := s.Sync(); tk != nil {
		t.Fatal("ticket with nothing written")
	}
	must(t, queueOf(t, s, "q").Push(item(1)))
	tk := s.Sync()
	if tk == nil {
		t.Fatal("no ticket after a write")
	}
	must(t, tk.Wait())
	if tk := s.Sync(); tk != nil {
		t.Fatal("ticket after everything was synced")
	}
}

// TestSyncGroupCommit holds the syncer inside one cycle: every Sync meanwhile gets the same next
// ticket, and one more fsync completes them all.
func TestSyncGroupCommit(t *testing.T) {
	s := mustOpen(t, "d", Options{FS: vfs.NewMem()})
	defer s.Close()
	took, release := make(chan struct{}, 1), make(chan struct{})
	hook := func() {
		took <- struct{}{}
		<-release
	}
	s.sync.testTook.Store(&hook)
	q := queueOf(t, s, "q")
	must(t, q.Push(item(1)))
	first := s.Sync()
	wait(t, took, "the first cycle")
	var tickets []*store.Ticket
	for i := range 10 {
		must(t, q.Push(item(i+2)))
		tickets = append(tickets, s.Sync())
	}
	for _, tk := range tickets {
		if tk != tickets[0] || tk == first {
			t.Fatal("callers between two cycles got different tickets")
		}
	}
	s.sync.testTook.Store(nil)
	close(release)
	must(t, first.Wait())
	must(t, tickets[0].Wait())
	// The first cycle counts the writes after taking its ticket, so its fsync may already cover
	// the later ones and leave the second cycle nothing to do.
	if n := s.sync.fsyncs.Load(); n < 1 || n > 2 {
		t.Fatalf("%d fsyncs for two cycles", n)
	}
}

// TestSyncConcurrent: many writers each waiting for their own write share fsyncs.
func TestSyncConcurrent(t *testing.T) {
	s := mustOpen(t, t.TempDir(), Options{})
	defer s.Close()
	const writers, each = 16, 50
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			q := queueOf(t, s, fmt.Sprint("w", w))
			for i := range each {
				if err := q.Push(item(i)); err != nil {
					t.Error(err)
					return
				}
				if err := s.Sync().Wait(); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	n := s.sync.fsyncs.Load()
	t.Logf("%d fsyncs for %d acknowledged writes", n, writers*each)
	if n == 0 || n > writers*each {
		t.Fatalf("%d fsyncs", n)
	}
}

// TestSyncSurvivesPowerCut: after a ticket completes, a crash that loses every unsynced byte keeps
// the writes it covered. Writes nobody synced are lost, which shows the crash is real.
func TestSyncSurvivesPowerCut(t *testing.T) {
	fs := vfs.NewCrashableMem()
	s := mustOpen(t, "d", Options{FS: fs})
	q := queueOf(t, s, "q")
	for i := 1; i <= 100; i++ {
		must(t, q.Push(item(i)))
	}
	must(t, s.Sessions().Put(store.SessionRecord{ClientID: "q", Expiry: 60}))
	must(t, s.Retained().Set(storetest.Msg(500, "r", "kept")))
	must(t, s.Sync().Wait())
	for i := 101; i <= 110; i++ {
		must(t, q.Push(item(i)))
	}
	crashed := fs.CrashClone(vfs.CrashCloneCfg{})
	must(t, s.Close())

	s = mustOpen(t, "d", Options{FS: crashed})
	defer s.Close()
	got := drain(t, queueOf(t, s, "q"))
	if len(got) != 100 || got[0] != 1 || got[99] != 100 {
		t.Fatalf("after the crash the queue holds %d items (%v...), want exactly the 100 synced", len(got), got[:min(3, len(got))])
	}
	if len(records(t, s)) != 1 {
		t.Fatal("session record lost")
	}
	n := 0
	must(t, s.Retained().All(func(*message.Message) error { n++; return nil }))
	if n != 1 {
		t.Fatal("retained message lost")
	}
}

func records(t testing.TB, s store.Store) []store.SessionRecord {
	var out []store.SessionRecord
	must(t, s.Sessions().All(func(r store.SessionRecord) error { out = append(out, r); return nil }))
	return out
}

// TestSyncInterval: Sync returns nil and the ticker makes writes durable on its own.
func TestSyncInterval(t *testing.T) {
	fs := vfs.NewCrashableMem()
	s := mustOpen(t, "d", Options{FS: fs, Sync: SyncInterval, Interval: time.Millisecond})
	synced := make(chan struct{}, 1)
	hook := func() {
		select {
		case synced <- struct{}{}:
		default:
		}
	}
	s.sync.testSynced.Store(&hook)
	must(t, queueOf(t, s, "q").Push(item(1)))
	if s.Sync() != nil {
		t.Fatal("SyncInterval handed out a ticket")
	}
	wait(t, synced, "the interval's fsync")
	crashed := fs.CrashClone(vfs.CrashCloneCfg{})
	must(t, s.Close())
	s = mustOpen(t, "d", Options{FS: crashed})
	defer s.Close()
	if got := drain(t, queueOf(t, s, "q")); len(got) != 1 {
		t.Fatalf("interval sync kept %v", got)
	}
}

// TestCloseCompletesPendingTicket: a ticket handed out before Close completes, synced.
func TestCloseCompletesPendingTicket(t *testing.T) {
	fs := vfs.NewCrashableMem()
	s := mustOpen(t, "d", Options{FS: fs})
	took, release := make(chan struct{}, 1), make(chan struct{})
	hook := func() {
		took <- struct{}{}
		<-release
	}
	s.sync.testTook.Store(&hook)
	q := queueOf(t, s, "q")
	must(t, q.Push(item(1)))
	first := s.Sync()
	wait(t, took, "the first cycle")
	must(t, q.Push(item(2)))
	pending := s.Sync()
	s.sync.testTook.Store(nil)
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	close(release)
	must(t, first.Wait())
	must(t, pending.Wait())
	must(t, <-closed)
	if tk := s.Sync(); !errors.Is(tk.Wait(), ErrClosed) {
		t.Fatalf("Sync after Close: %v", tk.Wait())
	}
	if err := q.Push(item(3)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Push after Close: %v", err)
	}
	must(t, s.Close()) // a second Close is harmless
}
