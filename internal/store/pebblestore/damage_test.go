package pebblestore

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/store"
	"github.com/ternmq/tern/internal/store/storetest"
)

// dirState is every file of a directory: name, size and content hash.
func dirState(t *testing.T, dir string) string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	must(t, err)
	var lines []string
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		must(t, err)
		lines = append(lines, fmt.Sprintf("%s %d %x", e.Name(), len(b), sha256.Sum256(b)))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// filled makes a data directory holding a user record, a retained message and a queue of n
// items, each synced, and stops the store cleanly.
func filled(t *testing.T, n int) string {
	t.Helper()
	dir := t.TempDir()
	s := mustOpen(t, dir, Options{})
	must(t, s.Records().Put("users", "alice", []byte("hash")))
	must(t, s.Retained().Set(storetest.Msg(1, "r/t", "kept")))
	q := queueOf(t, s, "q")
	for i := 1; i <= n; i++ {
		must(t, q.Push(item(i)))
		if i%10 == 0 || i == n {
			must(t, s.Sync().Wait())
		}
	}
	must(t, s.Close())
	return dir
}

// glob returns the one file of dir matching pattern.
func glob(t *testing.T, dir, pattern string) string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, pattern))
	must(t, err)
	if len(m) == 0 {
		t.Fatalf("no %s in %s", pattern, dir)
	}
	sort.Strings(m)
	return m[len(m)-1]
}

// refusedUntouched opens dir, wants a refusal naming each of want, and the directory unchanged.
func refusedUntouched(t *testing.T, dir string, opts Options, want ...string) {
	t.Helper()
	before := dirState(t, dir)
	opts.Logger = testLogger(t)
	s, err := Open(dir, opts)
	if err == nil {
		n := queueOf(t, s, "q").Len()
		_ = s.Close()
		t.Fatalf("a damaged directory opened (queue of %d)", n)
	}
	if !errors.Is(err, store.ErrDamaged) {
		t.Fatalf("err = %v, want ErrDamaged", err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Fatalf("error %q does not say %q", err, w)
		}
	}
	if after := dirState(t, dir); after != before {
		t.Fatalf("a refused start changed the directory:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// TestDamagedDirRefusedUntouched: a directory whose database cannot be read is refused with a
// message naming the damage, and not one file changes (Pebble used to create an empty store over
// a directory without its manifest marker, deleting the old tables and logs).
func TestDamagedDirRefusedUntouched(t *testing.T) {
	cases := []struct {
		name   string
		damage func(t *testing.T, dir string)
		want   []string
	}{
		{"manifest marker removed", func(t *testing.T, dir string) {
			must(t, os.Remove(glob(t, dir, "marker.manifest.*")))
		}, []string{"marker.manifest", "nothing was changed"}},
		{"manifest cut short", func(t *testing.T, dir string) {
			must(t, os.Truncate(glob(t, dir, "MANIFEST-*"), 20))
		}, []string{"nothing was changed"}},
		{"manifest missing", func(t *testing.T, dir string) {
			must(t, os.Remove(glob(t, dir, "MANIFEST-*")))
		}, []string{"nothing was changed"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := filled(t, 50)
			c.damage(t, dir)
			refusedUntouched(t, dir, Options{}, c.want...)
			// Accepting corruption does not reach what Pebble cannot read, and changes nothing either.
			refusedUntouched(t, dir, Options{AcceptCorruption: true}, c.want...)
		})
	}
}

// damageNewestLog applies fn to the content of the directory's newest write-ahead log.
func damageNewestLog(t *testing.T, dir string, fn func([]byte) []byte) {
	t.Helper()
	p := glob(t, dir, "*.log")
	b, err := os.ReadFile(p)
	must(t, err)
	must(t, os.WriteFile(p, fn(b), 0o644))
}

// TestWALDamageRefused: garbage in the last block of the newest log, or a log cut while tern was
// stopped, used to be replayed as far as it read, and the rest of the acknowledged messages were
// gone without a word. Now the start is refused, untouched; accepting corruption opens the store
// with what precedes the damage and keeps the original log.
func TestWALDamageRefused(t *testing.T) {
	const n = 2000
	cases := []struct {
		name   string
		damage func([]byte) []byte
		want   string
	}{
		{"garbage in the last block", func(b []byte) []byte {
			for i := len(b) - 2000; i < len(b)-1900; i++ {
				b[i] ^= 0xA5
			}
			return b
		}, "write-ahead log"},
		{"garbage in the middle", func(b []byte) []byte {
			for i := len(b) / 2; i < len(b)/2+100; i++ {
				b[i] ^= 0xA5
			}
			return b
		}, "garbage in the write-ahead log"},
		{"cut in half after a clean stop", func(b []byte) []byte { return b[:len(b)/2] }, "while tern was stopped"},
		{"cut at the end after a clean stop", func(b []byte) []byte { return b[:len(b)-100] }, "while tern was stopped"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := filled(t, n)
			damageNewestLog(t, dir, c.damage)
			refusedUntouched(t, dir, Options{}, c.want, "accept_corruption")

			logs := &logCounter{msgs: map[string]int{}}
			s, err := Open(dir, Options{AcceptCorruption: true, Logger: slog.New(logs)})
			must(t, err)
			got := queueOf(t, s, "q").Len()
			must(t, s.Close())
			if got >= n || logs.count("pebblestore: accepting damage") == 0 {
				t.Fatalf("accepted: queue of %d (of %d), %d accept lines", got, n, logs.count("pebblestore: accepting damage"))
			}
			if _, err := os.Stat(glob(t, dir, "damaged-*.wal")); err != nil {
				t.Fatal("the damaged log was not kept")
			}
			// Once accepted, the directory opens as it now is.
			mustOpen(t, dir, Options{}).Close()
		})
	}
}

// crashCopy copies dir as a crash would leave it: every file as it is now, while the store is
// still open (so no clean-stop marker, and the log as far as it was written).
func crashCopy(t *testing.T, dir string) string {
	t.Helper()
	dst := t.TempDir()
	ents, err := os.ReadDir(dir)
	must(t, err)
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		must(t, err)
		must(t, os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644))
	}
	return dst
}

// TestTornTailAcceptedAndReported: a log whose last record was cut by a crash opens, with every
// synced write, and the log says where the tail was cut.
func TestTornTailAcceptedAndReported(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, Options{})
	q := queueOf(t, s, "q")
	for i := 1; i <= 100; i++ {
		must(t, q.Push(item(i)))
	}
	must(t, s.Sync().Wait())
	synced := fileSize(t, glob(t, dir, "*.log"))
	big := item(101)
	big.Msg.Payload = make([]byte, 100<<10) // spans blocks: a crash can cut it in the middle
	must(t, q.Push(big))
	// Pebble writes the log from a goroutine of its own, and without a sync it writes the blocks
	// a record fills (32 KiB each) but may leave the last, partial one in memory: wait for two
	// blocks past the synced end, which a 100 KiB record always fills. Cutting 50 KiB off the
	// copy then tears this record and leaves every synced one whole.
	for deadline := time.Now().Add(10 * time.Second); fileSize(t, glob(t, dir, "*.log")) < synced+(64<<10); {
		if time.Now().After(deadline) {
			t.Fatal("the unsynced record's first blocks never reached the log file")
		}
		time.Sleep(time.Millisecond)
	}
	crashed := crashCopy(t, dir)
	must(t, s.Close())
	damageNewestLog(t, crashed, func(b []byte) []byte { return b[:len(b)-(50<<10)] })

	logs := &logCounter{msgs: map[string]int{}}
	s, err := Open(crashed, Options{Logger: slog.New(logs)})
	must(t, err)
	defer s.Close()
	if got := drain(t, queueOf(t, s, "q")); len(got) != 100 {
		t.Fatalf("after a torn tail: %d items, want the 100 synced", len(got))
	}
	if logs.countContaining("torn tail") == 0 {
		t.Fatal("the torn tail was not reported")
	}
}

// TestCorruptTableIsAnError: a damaged table makes Open fail with an error that names the file,
// instead of a panic on Pebble's fatal report.
func TestCorruptTableIsAnError(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, Options{})
	q := queueOf(t, s, "q")
	for i := 1; i <= 3000; i++ {
		must(t, q.Push(item(i)))
	}
	must(t, s.db.Flush())
	must(t, s.Close())
	p := glob(t, dir, "*.sst")
	b, err := os.ReadFile(p)
	must(t, err)
	for i := len(b) / 3; i < len(b)/3+50; i++ {
		b[i] ^= 0x5A
	}
	must(t, os.WriteFile(p, b, 0o644))
	_, err = Open(dir, Options{Logger: testLogger(t)})
	if !errors.Is(err, store.ErrDamaged) || !strings.Contains(err.Error(), filepath.Base(p)) {
		t.Fatalf("err = %v, want ErrDamaged naming %s", err, filepath.Base(p))
	}
}

// TestWALGarbageAfterCrashRefused: garbage in the newest log of a store that crashed is refused
// when later records show that the log was synced past it: a crash cannot explain it.
func TestWALGarbageAfterCrashRefused(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, Options{})
	q := queueOf(t, s, "q")
	for i := 1; i <= 500; i++ {
		must(t, q.Push(item(i)))
		must(t, s.Sync().Wait())
	}
	crashed := crashCopy(t, dir)
	must(t, s.Close())
	damageNewestLog(t, crashed, func(b []byte) []byte {
		for i := len(b) - 5000; i < len(b)-4900; i++ {
			b[i] ^= 0xA5
		}
		return b
	})
	refusedUntouched(t, crashed, Options{}, "garbage in the write-ahead log", "synced up to offset")
}

func fileSize(t *testing.T, p string) int64 {
	t.Helper()
	fi, err := os.Stat(p)
	must(t, err)
	return fi.Size()
}
