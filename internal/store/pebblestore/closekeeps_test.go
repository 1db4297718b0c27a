package pebblestore

import (
	"testing"

	"github.com/ternmq/tern/internal/store"
)

// A clean Close keeps every write applied before it, synced or not: the cut after the last sync
// mark at open is for crashes only.
func TestCloseKeepsUnsyncedWrites(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, Options{})
	f, err := s.Sessions().Inflight("c")
	must(t, err)
	must(t, f.AddIncoming(9))
	must(t, s.Sessions().Put(store.SessionRecord{ClientID: "c", Expiry: 60}))
	must(t, s.Close())
	s = mustOpen(t, dir, Options{})
	defer s.Close()
	f, err = s.Sessions().Inflight("c")
	must(t, err)
	in, err := f.Incoming()
	must(t, err)
	if len(in) != 1 || in[0] != 9 {
		t.Fatalf("incoming after a clean close: %v, want [9]", in)
	}
	n := 0
	must(t, s.Sessions().All(func(store.SessionRecord) error { n++; return nil }))
	if n != 1 {
		t.Fatalf("%d session records after a clean close, want 1", n)
	}
}
