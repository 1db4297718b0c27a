package pebblestore

import (
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/ternmq/tern/internal/store"
	"github.com/ternmq/tern/internal/store/storetest"
)

// TestConformance runs the store suite on the real disk, reopening by Close and Open.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) (store.Store, func() store.Store) {
		dir := t.TempDir()
		return reopener(t, dir, Options{})
	})
}

// TestConformanceMemFS runs it on an in-memory filesystem shared by every reopen.
func TestConformanceMemFS(t *testing.T) {
	storetest.Run(t, func(t *testing.T) (store.Store, func() store.Store) {
		return reopener(t, "data", Options{FS: vfs.NewMem()})
	})
}

// TestConformanceInterval runs it in SyncInterval mode.
func TestConformanceInterval(t *testing.T) {
	storetest.Run(t, func(t *testing.T) (store.Store, func() store.Store) {
		return reopener(t, t.TempDir(), Options{Sync: SyncInterval})
	})
}

// reopener opens a store in dir and returns it with a function that closes the current one and
// opens dir again. Whatever is open when the test ends is closed then.
func reopener(t *testing.T, dir string, opts Options) (store.Store, func() store.Store) {
	t.Helper()
	cur := mustOpen(t, dir, opts)
	t.Cleanup(func() { _ = cur.Close() })
	return cur, func() store.Store {
		t.Helper()
		if err := cur.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
		cur = mustOpen(t, dir, opts)
		return cur
	}
}

func mustOpen(t testing.TB, dir string, opts Options) *Store {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("open %s: %v", dir, err)
	}
	return s
}
