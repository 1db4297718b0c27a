package pebblestore

import (
	"errors"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/store"
)

// The two interfaces must keep the same method set, so that the broker can hand its store's
// records to auth as they are. Both directions, so a method added to either side breaks the build.
var (
	_ auth.Store    = store.Records(nil)
	_ store.Records = auth.Store(nil)
)

// TestRecordsDurableWhenReturned: a Put or Delete that returned survives a power cut at once, in
// both sync modes. The interval is an hour, so in SyncInterval mode only the records' own sync
// can have made them durable.
func TestRecordsDurableWhenReturned(t *testing.T) {
	for name, mode := range map[string]SyncMode{"always": SyncAlways, "interval": SyncInterval} {
		t.Run(name, func(t *testing.T) {
			fs := vfs.NewCrashableMem()
			opts := Options{FS: fs, Sync: mode, Interval: time.Hour}
			s := mustOpen(t, "d", opts)
			r := s.Records()
			must(t, r.Put("users", "alice", []byte("a")))
			must(t, r.Put("users", "bob", []byte("b")))
			must(t, r.Delete("users", "alice"))
			crashed := fs.CrashClone(vfs.CrashCloneCfg{})
			must(t, s.Close())

			s = mustOpen(t, "d", Options{FS: crashed})
			defer s.Close()
			r = s.Records()
			if v, ok, err := r.Get("users", "bob"); err != nil || !ok || string(v) != "b" {
				t.Fatalf("bob after a power cut: %q %v %v", v, ok, err)
			}
			if _, ok, err := r.Get("users", "alice"); err != nil || ok {
				t.Fatalf("alice, deleted before the power cut, is back: %v %v", ok, err)
			}
		})
	}
}

// TestRecordsClosed: every method says the store is closed rather than touching Pebble.
func TestRecordsClosed(t *testing.T) {
	s := mustOpen(t, "d", Options{FS: vfs.NewMem()})
	r := s.Records()
	must(t, r.Put("users", "alice", []byte("a")))
	must(t, s.Close())
	calls := map[string]func() error{
		"get":    func() error { _, _, err := r.Get("users", "alice"); return err },
		"put":    func() error { return r.Put("users", "bob", nil) },
		"delete": func() error { return r.Delete("users", "alice") },
		"scan":   func() error { return r.Scan("users", func(string, []byte) error { return nil }) },
	}
	for name, fn := range calls {
		if err := fn(); !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
}
