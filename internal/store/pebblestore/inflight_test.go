package pebblestore

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/ternmq/tern/internal/message"
	"github.com/ternmq/tern/internal/store"
	"github.com/ternmq/tern/internal/store/storetest"
)

func pids(t testing.TB, f store.Inflight) []uint16 {
	t.Helper()
	all, err := f.All()
	must(t, err)
	var out []uint16
	for _, e := range all {
		out = append(out, e.PacketID)
	}
	return out
}

// TestInflightOrderAcrossReopen: after a reopen, an update keeps its place and a new packet id
// goes after every stored one.
func TestInflightOrderAcrossReopen(t *testing.T) {
	fs := vfs.NewMem()
	s := mustOpen(t, "d", Options{FS: fs})
	f := inflightOf(t, s, "c")
	for _, pid := range []uint16{5, 6, 7} {
		must(t, f.Put(store.InflightEntry{PacketID: pid, Item: item(int(pid))}))
	}
	must(t, s.Close())
	s = mustOpen(t, "d", Options{FS: fs})
	defer s.Close()
	f = inflightOf(t, s, "c")
	must(t, f.Put(store.InflightEntry{PacketID: 6, Item: item(6), Released: true}))
	must(t, f.Put(store.InflightEntry{PacketID: 1, Item: item(1)}))
	must(t, f.Delete(5))
	must(t, f.Delete(999)) // unknown: nothing to do
	if got := pids(t, f); !slices.Equal(got, []uint16{6, 7, 1}) {
		t.Fatalf("order %v, want [6 7 1]", got)
	}
	if n := len(f.(*inflight).slots); n != 3 {
		t.Fatalf("%d slots kept for 3 deliveries", n)
	}
}

// TestSessionsAllInChunks: more records than one read chunk, and fn may use the store.
func TestSessionsAllInChunks(t *testing.T) {
	s := mustOpen(t, "d", Options{FS: vfs.NewMem()})
	defer s.Close()
	const n = 2*scanChunkRecords + 10
	for i := range n {
		must(t, s.Sessions().Put(store.SessionRecord{ClientID: fmt.Sprint("c", i), Expiry: uint32(i)}))
	}
	seen := map[string]bool{}
	must(t, s.Sessions().All(func(r store.SessionRecord) error {
		if seen[r.ClientID] {
			t.Fatalf("%s twice", r.ClientID)
		}
		seen[r.ClientID] = true
		_, err := s.Sessions().Inflight(r.ClientID) // re-entering the store from fn
		return err
	}))
	if len(seen) != n {
		t.Fatalf("saw %d of %d sessions", len(seen), n)
	}
	stop := errors.New("stop")
	calls := 0
	err := s.Sessions().All(func(store.SessionRecord) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("fn's error: %v after %d calls", err, calls)
	}
	for i := range 300 {
		must(t, s.Retained().Set(storetest.Msg(uint64(i+1), fmt.Sprint("r/", i), "x")))
	}
	count := 0
	must(t, s.Retained().All(func(*message.Message) error { count++; return nil }))
	if count != 300 {
		t.Fatalf("%d retained", count)
	}
}
