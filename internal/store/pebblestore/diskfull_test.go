package pebblestore

import (
	"errors"
	"log/slog"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/ternmq/tern/internal/store"
)

// TestRefusedWriteNotReplayed: the disk fills up in the middle of writing the log, after a
// message's record and before the sync mark that would have made it durable. The writer was told
// the write failed (a PUBACK 0x80), so after a restart the message must not be there (it used to
// be, and a publisher that retried got it delivered twice).
func TestRefusedWriteNotReplayed(t *testing.T) {
	mem := vfs.NewCrashableMem()
	ffs := &faultFS{FS: mem}
	s := mustOpen(t, "d", Options{FS: ffs, Logger: slog.New(slog.DiscardHandler)})
	q := queueOf(t, s, "q")
	for i := 1; i <= 20; i++ {
		must(t, q.Push(item(i)))
		must(t, s.Sync().Wait())
	}
	ffs.mode.Store(failAtMark)
	err := q.Push(item(21))
	if err == nil {
		err = s.Sync().Wait()
	}
	if !errors.Is(err, ErrFailed) {
		t.Fatalf("write on a full disk: %v, want ErrFailed", err)
	}
	// The process ends (the store cannot continue); the disk keeps what was written.
	crashed := mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 100, RNG: rand.New(rand.NewPCG(1, 2))})
	_ = s.Close()

	s = mustOpen(t, "d", Options{FS: crashed})
	defer s.Close()
	got := drain(t, queueOf(t, s, "q"))
	if slices.Contains(got, 21) {
		t.Fatalf("a write refused with ErrFailed came back after the restart: %v", got)
	}
	if len(got) != 20 {
		t.Fatalf("after the restart %d items, want the 20 acknowledged", len(got))
	}
}

// TestFullDiskAtStart: on a disk with no space left, Open serves what is stored and refuses
// writes, saying why, instead of failing to start.
func TestFullDiskAtStart(t *testing.T) {
	mem := vfs.NewMem()
	ffs := &faultFS{FS: mem}
	s := mustOpen(t, "d", Options{FS: ffs})
	q := queueOf(t, s, "q")
	for i := 1; i <= 20; i++ {
		must(t, q.Push(item(i)))
	}
	must(t, s.Records().Put("users", "alice", []byte("x")))
	must(t, s.Close())

	ffs.mode.Store(failWrites)
	s, err := Open("d", Options{FS: ffs, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("open on a full disk: %v", err)
	}
	defer s.Close()
	if err := s.Health(); !errors.Is(err, ErrFailed) {
		t.Fatalf("health on a full disk: %v", err)
	}
	if v, ok, err := s.Records().Get("users", "alice"); err != nil || !ok || string(v) != "x" {
		t.Fatalf("read on a full disk: %q %v", v, err)
	}
	if n := queueOf(t, s, "q").Len(); n != 20 {
		t.Fatalf("queue on a full disk: %d", n)
	}
	if err := queueOf(t, s, "q").Push(item(21)); !errors.Is(err, ErrFailed) {
		t.Fatalf("write on a full disk: %v", err)
	}
}

// TestFlushFailureBacksOffAndRecovers: when flushes fail (tables cannot be written), Pebble
// retries at once, forever; the store logs the failure once and backs off, and once space
// returns the flush succeeds without a restart.
func TestFlushFailureBacksOffAndRecovers(t *testing.T) {
	mem := vfs.NewMem()
	ffs := &faultFS{FS: mem}
	logs := &logCounter{msgs: map[string]int{}}
	s := mustOpen(t, "d", Options{FS: ffs, Logger: slog.New(logs)})
	defer s.Close()
	q := queueOf(t, s, "q")
	for i := 1; i <= 100; i++ {
		must(t, q.Push(item(i)))
	}
	ffs.mode.Store(failTables)
	flushed, err := s.db.AsyncFlush()
	must(t, err)
	deadline := time.Now().Add(20 * time.Second)
	for s.bg.failures.Load() < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("%d flush failures seen", s.bg.failures.Load())
		}
		<-time.After(10 * time.Millisecond)
	}
	if n := logs.countContaining("background write"); n != 1 {
		t.Fatalf("%d log lines for %d failures, want 1", n, s.bg.failures.Load())
	}
	if n := logs.countContaining("background error"); n != 0 {
		t.Fatalf("Pebble's own background error logged %d times", n)
	}
	ffs.mode.Store(healthy)
	select {
	case <-flushed:
	case <-time.After(20 * time.Second):
		t.Fatal("the flush did not succeed once space returned")
	}
	if err := s.Health(); err != nil {
		t.Fatalf("health after recovery: %v", err)
	}
	if logs.countContaining("succeed again") != 1 {
		t.Fatal("recovery not logged")
	}
	must(t, q.Push(item(101)))
	must(t, s.Sync().Wait())
}

// TestBackoffGrows: the wait between retries doubles up to its cap.
func TestBackoffGrows(t *testing.T) {
	prev := time.Duration(0)
	for n := int64(1); n < 20; n++ {
		d := backoffFor(n)
		if d < prev || d > backoffMax {
			t.Fatalf("backoff %d = %s after %s", n, d, prev)
		}
		prev = d
	}
	if backoffFor(1) != backoffMin || backoffFor(19) != backoffMax {
		t.Fatalf("backoff from %s to %s", backoffFor(1), backoffFor(19))
	}
}

var _ store.Store = (*Store)(nil)
