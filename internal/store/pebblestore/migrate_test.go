package pebblestore

import (
	"encoding/binary"
	"errors"
	"reflect"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/ternmq/tern/internal/store"
)

// oldSubs are subscriptions as a format 2 record carries them.
var oldSubs = []store.Subscription{
	{Filter: "a/#", QoS: 1, NoLocal: true, RetainHandling: 2, ID: 4},
	{Filter: "b", QoS: 2, RetainAsPublished: true},
}

// formatTwoDir makes a directory of format 2 whose records carry their subscriptions, plus what
// extra writes, as a build of that format left it.
func formatTwoDir(t *testing.T, fs vfs.FS, extra func(db *pebble.DB)) {
	t.Helper()
	mustOpen(t, "d", Options{FS: fs}).Close()
	rawPebble(t, fs, "d", func(db *pebble.DB) {
		b := db.NewBatch()
		must(t, b.Set(formatKey, binary.BigEndian.AppendUint32(nil, 2), nil))
		must(t, b.Set(sessionKey("c"), appendSession(nil, store.SessionRecord{ClientID: "c", Expiry: 60, Subscriptions: oldSubs}), nil))
		must(t, b.Set(sessionKey("bare"), appendSession(nil, store.SessionRecord{ClientID: "bare", Expiry: 60}), nil))
		must(t, b.Commit(pebble.Sync))
		if extra != nil {
			extra(db)
		}
	})
}

// TestFormatTwoMigrated: opening a format 2 directory moves the records' subscriptions to keys of
// their own and stamps the directory 3; the sessions read the same before and after.
func TestFormatTwoMigrated(t *testing.T) {
	fs := vfs.NewMem()
	formatTwoDir(t, fs, nil)
	s := mustOpen(t, "d", Options{FS: fs})
	check := func(s *Store) {
		t.Helper()
		got := map[string]store.SessionRecord{}
		must(t, s.Sessions().All(func(r store.SessionRecord) error { got[r.ClientID] = r; return nil }))
		if len(got) != 2 || !reflect.DeepEqual(got["c"].Subscriptions, oldSubs) || len(got["bare"].Subscriptions) != 0 {
			t.Fatalf("sessions after the migration: %+v", got)
		}
	}
	check(s)
	// A subscription removed after the migration stays removed: it is not in the record any more.
	must(t, s.Sessions().DeleteSubscriptions("c", []string{"b"}))
	must(t, s.Close())
	rawPebble(t, fs, "d", func(db *pebble.DB) {
		if v := rawGet(t, db, formatKey); binary.BigEndian.Uint32(v) != 3 {
			t.Fatalf("format after the migration: %x", v)
		}
		rec, err := decodeSession(rawGet(t, db, sessionKey("c")))
		if err != nil || len(rec.Subscriptions) != 0 {
			t.Fatalf("record still carries subscriptions: %+v %v", rec, err)
		}
		rawGet(t, db, subKey("c", "a/#")) // the subscription key is there
	})
	s = mustOpen(t, "d", Options{FS: fs})
	defer s.Close()
	var subs []store.Subscription
	must(t, s.Sessions().All(func(r store.SessionRecord) error {
		if r.ClientID == "c" {
			subs = r.Subscriptions
		}
		return nil
	}))
	if !reflect.DeepEqual(subs, oldSubs[:1]) {
		t.Fatalf("after a delete and a restart: %+v", subs)
	}
}

// TestFormatTwoMigrationAllOrNothing: a record that does not decode stops the open, and the
// directory is left as it was (still format 2, the good record still carrying its subscriptions).
func TestFormatTwoMigrationAllOrNothing(t *testing.T) {
	fs := vfs.NewMem()
	formatTwoDir(t, fs, func(db *pebble.DB) {
		must(t, db.Set(sessionKey("zz-bad"), []byte{0xff}, pebble.Sync))
	})
	if _, err := Open("d", Options{FS: fs, Logger: testLogger(t)}); !errors.Is(err, errCorrupt) {
		t.Fatalf("open: %v", err)
	}
	rawPebble(t, fs, "d", func(db *pebble.DB) {
		if v := rawGet(t, db, formatKey); binary.BigEndian.Uint32(v) != 2 {
			t.Fatalf("format after a refused migration: %x", v)
		}
		rec, _ := decodeSession(rawGet(t, db, sessionKey("c")))
		if !reflect.DeepEqual(rec.Subscriptions, oldSubs) {
			t.Fatalf("record changed by a refused migration: %+v", rec)
		}
		if _, _, err := db.Get(subKey("c", "a/#")); !errors.Is(err, pebble.ErrNotFound) {
			t.Fatalf("subscription key written by a refused migration: %v", err)
		}
	})
}
