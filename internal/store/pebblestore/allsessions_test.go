package pebblestore

import (
	"fmt"
	"testing"

	"github.com/ternmq/tern/internal/store"
)

// All reads records a chunk at a time and each chunk's subscriptions through one iterator that
// seeks from client to client: across several chunks, with clients that have none, two, or an
// id that extends another's, every record comes back with exactly its own.
func TestAllSessionsAcrossChunks(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, Options{})
	const n = 3*scanChunkRecords + 17
	want := map[string][]store.Subscription{}
	for i := range n {
		id := fmt.Sprintf("c%d", i) // c1 is a prefix of c10..c19, c100...
		var subs []store.Subscription
		for j := range i % 3 { // none, one or two
			subs = append(subs, store.Subscription{Filter: fmt.Sprintf("t/%s/%d", id, j), QoS: byte(j)})
		}
		if err := s.Sessions().Put(store.SessionRecord{ClientID: id, Expiry: 60, Subscriptions: subs}); err != nil {
			t.Fatal(err)
		}
		want[id] = subs
	}
	check := func(s *Store) {
		t.Helper()
		seen := 0
		err := s.Sessions().All(func(rec store.SessionRecord) error {
			seen++
			w, ok := want[rec.ClientID]
			if !ok {
				return fmt.Errorf("unknown session %q", rec.ClientID)
			}
			if fmt.Sprint(rec.Subscriptions) != fmt.Sprint(w) {
				return fmt.Errorf("%s: subscriptions %v, want %v", rec.ClientID, rec.Subscriptions, w)
			}
			return nil
		})
		if err != nil || seen != n {
			t.Fatalf("%d of %d sessions: %v", seen, n, err)
		}
	}
	check(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, dir, Options{})
	defer s.Close()
	check(s)
}
