package pebblestore

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/ternmq/tern/internal/message"
	"github.com/ternmq/tern/internal/store"
	"github.com/ternmq/tern/internal/store/storetest"
)

// rawPebble opens dir as a plain Pebble database, to play another program or another version.
func rawPebble(t *testing.T, fs vfs.FS, dir string, fn func(db *pebble.DB)) {
	t.Helper()
	db, err := pebble.Open(dir, &pebble.Options{FS: fs, Logger: quietLogger{t}})
	if err != nil {
		t.Fatal(err)
	}
	fn(db)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// rawGet is a copy of key's value in db; the test fails if it is not there.
func rawGet(t *testing.T, db *pebble.DB, key []byte) []byte {
	t.Helper()
	v, closer, err := db.Get(key)
	if err != nil {
		t.Fatalf("%q: %v", key, err)
	}
	defer closer.Close()
	return append([]byte(nil), v...)
}

func TestFormatNewDirIsStamped(t *testing.T) {
	fs := vfs.NewMem()
	s := mustOpen(t, "d", Options{FS: fs})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	rawPebble(t, fs, "d", func(db *pebble.DB) {
		if v := rawGet(t, db, formatKey); len(v) != 4 || binary.BigEndian.Uint32(v) != formatVersion {
			t.Fatalf("format key = %x", v)
		}
	})
	mustOpen(t, "d", Options{FS: fs}).Close() // and it opens again
}

// A directory of format 1 (before sequence numbers) is read as it is and stamped with the current
// version when opened for writing, so that an older build refuses it afterwards.
func TestFormatOneUpgraded(t *testing.T) {
	fs := vfs.NewMem()
	s := mustOpen(t, "d", Options{FS: fs})
	if err := s.Retained().Set(&message.Message{ID: 7, Topic: "kept", Payload: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	setVersion := func(db *pebble.DB) {
		if err := db.Set(formatKey, binary.BigEndian.AppendUint32(nil, 1), pebble.Sync); err != nil {
			t.Fatal(err)
		}
	}
	rawPebble(t, fs, "d", setVersion)
	s = mustOpen(t, "d", Options{FS: fs})
	n := 0
	if err := s.Retained().All(func(m *message.Message) error { n++; return nil }); err != nil || n != 1 {
		t.Fatalf("retained after the upgrade: %d, %v", n, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	rawPebble(t, fs, "d", func(db *pebble.DB) {
		if v := rawGet(t, db, formatKey); binary.BigEndian.Uint32(v) != formatVersion {
			t.Fatalf("format after opening a version 1 directory: %x, want %d", v, formatVersion)
		}
	})
}

func TestFormatRefused(t *testing.T) {
	cases := []struct {
		name  string
		setup func(db *pebble.DB) error
		want  []string // in the error message
	}{
		{"other version", func(db *pebble.DB) error {
			return db.Set(formatKey, binary.BigEndian.AppendUint32(nil, 99), pebble.Sync)
		}, []string{"format version 99", "reads versions 1 to 3"}},
		{"unreadable version", func(db *pebble.DB) error {
			return db.Set(formatKey, []byte("x"), pebble.Sync)
		}, []string{"unreadable format version", "reads versions 1 to 3"}},
		{"foreign database", func(db *pebble.DB) error {
			if err := db.Delete(formatKey, pebble.Sync); err != nil {
				return err
			}
			return db.Set([]byte("somebody else's key"), []byte("v"), pebble.Sync)
		}, []string{"without a tern format version", "reads versions 1 to 3"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fs := vfs.NewMem()
			mustOpen(t, "data", Options{FS: fs}).Close()
			rawPebble(t, fs, "data", func(db *pebble.DB) {
				if err := c.setup(db); err != nil {
					t.Fatal(err)
				}
			})
			_, err := Open("data", Options{FS: fs, Logger: testLogger(t)})
			if !errors.Is(err, store.ErrFormat) {
				t.Fatalf("err = %v, want ErrFormat", err)
			}
			for _, w := range append(c.want, `"data"`) {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func TestOpenForeignNeverStamped(t *testing.T) {
	// A foreign database never got our key: refused, and left as it was.
	fs := vfs.NewMem()
	rawPebble(t, fs, "x", func(db *pebble.DB) { _ = db.Set([]byte("k"), []byte("v"), pebble.Sync) })
	if _, err := Open("x", Options{FS: fs, Logger: testLogger(t)}); !errors.Is(err, store.ErrFormat) {
		t.Fatalf("err = %v", err)
	}
	rawPebble(t, fs, "x", func(db *pebble.DB) {
		if _, _, err := db.Get(formatKey); !errors.Is(err, pebble.ErrNotFound) {
			t.Fatalf("foreign database stamped: %v", err)
		}
	})
}

func TestOpenDirCannotBeCreated(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(file, "data")
	_, err := Open(dir, Options{Logger: testLogger(t)})
	if err == nil || !strings.Contains(err.Error(), "create data dir") || !strings.Contains(err.Error(), dir) {
		t.Fatalf("err = %v", err)
	}
}

// TestOpenRefusesCorruptEntry: a damaged entry stops Open with an error naming it, not a panic
// and not a silently shorter queue.
func TestOpenRefusesCorruptEntry(t *testing.T) {
	fs := vfs.NewMem()
	mustOpen(t, "d", Options{FS: fs}).Close()
	rawPebble(t, fs, "d", func(db *pebble.DB) {
		must(t, db.Set(seqKey(idPrefix(kindQueue, "c"), 1), []byte{0xff, 9}, pebble.Sync))
	})
	_, err := Open("d", Options{FS: fs, Logger: testLogger(t)})
	if !errors.Is(err, errCorrupt) || !strings.Contains(err.Error(), "key") {
		t.Fatalf("err = %v", err)
	}
}

// TestMissingBodyIsAnError: a shared entry whose body is gone reads as an error, and Pop removes
// it.
func TestMissingBodyIsAnError(t *testing.T) {
	fs := vfs.NewMem()
	s := mustOpen(t, "d", Options{FS: fs})
	must(t, queueOf(t, s, "c").Push(store.Item{Msg: storetest.Msg(4, "t", "x"), Shared: true}))
	must(t, s.Close())
	rawPebble(t, fs, "d", func(db *pebble.DB) { must(t, db.Delete(bodyKey(4), pebble.Sync)) })
	s = mustOpen(t, "d", Options{FS: fs})
	defer s.Close()
	q := queueOf(t, s, "c")
	if _, _, err := q.Front(); err == nil || !strings.Contains(err.Error(), "body missing") {
		t.Fatalf("front: %v", err)
	}
	// Pop removes it, so the entries behind it are not blocked.
	must(t, q.Push(store.Item{Msg: storetest.Msg(5, "t", "behind")}))
	must(t, q.Pop())
	it, ok, err := q.Front()
	if err != nil || !ok || it.Msg.ID != 5 {
		t.Fatalf("after dropping the bad entry: %v %v %v", it.Msg, ok, err)
	}
	must(t, q.Pop())
	if q.Len() != 0 || q.Bytes() != 0 {
		t.Fatalf("len %d bytes %d", q.Len(), q.Bytes())
	}
}
