package pebblestore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/ternmq/tern/internal/store"
	"github.com/ternmq/tern/internal/store/storetest"
)

// Fault modes of faultFS.
const (
	healthy = iota
	failWrites
	failSyncs
	// failAtMark: the disk fills up in the middle of a write: the bytes before the next sync mark
	// are written, the write stops there with ENOSPC, and every later write fails.
	failAtMark
	// failTables: writes to tables (.sst) fail, as a flush on a full disk does; the log is fine.
	failTables
)

// errNoSpace is what the disk says once faultFS is armed.
var errNoSpace = fmt.Errorf("injected fault: %w", syscall.ENOSPC)

// faultFS wraps a filesystem whose files start failing their writes or their syncs on command.
type faultFS struct {
	vfs.FS
	mode atomic.Int32
}

func (fs *faultFS) wrap(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return nil, err
	}
	return &faultFile{File: f, fs: fs, name: name}, nil
}

// Create fails as a full disk does (a new file needs space); the other opens do not.
func (fs *faultFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	if m := fs.mode.Load(); m == failWrites || (m == failTables && strings.HasSuffix(name, ".sst")) {
		return nil, errNoSpace
	}
	f, err := fs.FS.Create(name, c)
	return fs.wrap(name, f, err)
}

func (fs *faultFS) Open(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.FS.Open(name, opts...)
	return fs.wrap(name, f, err)
}

func (fs *faultFS) OpenReadWrite(name string, c vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.FS.OpenReadWrite(name, c, opts...)
	return fs.wrap(name, f, err)
}

func (fs *faultFS) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, c)
	return fs.wrap(newname, f, err)
}

func (fs *faultFS) Unwrap() vfs.FS { return fs.FS }

type faultFile struct {
	vfs.File
	fs   *faultFS
	name string
}

// markChunkPrefix is how far a mark's payload starts after its chunk: chunk header (19), batch
// header (12), LogData kind (1) and length (1).
const markChunkPrefix = 19 + 12 + 1 + 1

func (f *faultFile) Write(p []byte) (int, error) {
	switch f.fs.mode.Load() {
	case failWrites:
		return 0, errNoSpace
	case failTables:
		if strings.HasSuffix(f.name, ".sst") {
			return 0, errNoSpace
		}
	case failAtMark:
		if i := bytes.Index(p, markAlwaysData); i >= markChunkPrefix {
			f.fs.mode.Store(failWrites)
			n, err := f.File.Write(p[:i-markChunkPrefix])
			if err == nil {
				err = errNoSpace
			}
			return n, err
		}
	}
	return f.File.Write(p)
}

func (f *faultFile) WriteAt(p []byte, off int64) (int, error) {
	if f.fs.mode.Load() == failWrites {
		return 0, errNoSpace
	}
	return f.File.WriteAt(p, off)
}

func (f *faultFile) Sync() error {
	if f.fs.mode.Load() == failSyncs {
		return errNoSpace
	}
	return f.File.Sync()
}

func (f *faultFile) SyncData() error {
	if f.fs.mode.Load() == failSyncs {
		return errNoSpace
	}
	return f.File.SyncData()
}

func (f *faultFile) SyncTo(length int64) (bool, error) {
	if f.fs.mode.Load() == failSyncs {
		return false, errNoSpace
	}
	return f.File.SyncTo(length)
}

// logCounter counts log records by message.
type logCounter struct {
	mu   sync.Mutex
	msgs map[string]int
}

func (c *logCounter) Enabled(context.Context, slog.Level) bool { return true }
func (c *logCounter) WithAttrs([]slog.Attr) slog.Handler       { return c }
func (c *logCounter) WithGroup(string) slog.Handler            { return c }
func (c *logCounter) Handle(_ context.Context, r slog.Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.msgs[r.Message]++
	return nil
}

func (c *logCounter) count(prefix string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for m, k := range c.msgs {
		if strings.HasPrefix(m, prefix) {
			n += k
		}
	}
	return n
}

// TestDiskFault: once the disk fails, the failing write or its ticket says so, every later write
// is refused with ErrFailed, nothing panics, reads go on, and a reopen on a healthy disk has every
// write whose ticket completed without error.
func TestDiskFault(t *testing.T) {
	for _, mode := range []int32{failWrites, failSyncs} {
		t.Run(map[int32]string{failWrites: "write", failSyncs: "sync"}[mode], func(t *testing.T) {
			mem := vfs.NewCrashableMem()
			ffs := &faultFS{FS: mem}
			logs := &logCounter{msgs: map[string]int{}}
			s, err := Open("d", Options{FS: ffs, Logger: slog.New(logs)})
			must(t, err)
			q := queueOf(t, s, "q")
			acked := 0
			for i := 1; i <= 50; i++ {
				must(t, q.Push(item(i)))
				if i%10 == 0 {
					must(t, s.Sync().Wait())
					acked = i
				}
			}

			ffs.mode.Store(mode)
			err = q.Push(item(51))
			if err == nil {
				err = s.Sync().Wait()
			}
			if !errors.Is(err, ErrFailed) || !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("write after the fault: %v, want ErrFailed wrapping ENOSPC", err)
			}
			refused := []func() error{
				func() error { return q.Push(item(52)) },
				func() error { return q.Pop() },
				func() error { return s.Sessions().Put(store.SessionRecord{ClientID: "x"}) },
				func() error { return s.Retained().Set(storetest.Msg(1, "r", "x")) },
				func() error { return inflightOf(t, s, "q").AddIncoming(1) },
				func() error { return s.Records().Put("users", "x", []byte("x")) },
				func() error { return s.Records().Delete("users", "x") },
				func() error { return s.Sync().Wait() },
			}
			for i, fn := range refused {
				if err := fn(); !errors.Is(err, ErrFailed) {
					t.Fatalf("write %d after failure: %v", i, err)
				}
			}
			// What is stored is still readable.
			if it, ok, err := q.Front(); err != nil || !ok || it.Msg.ID != 1 {
				t.Fatalf("front after failure: %v %v %v", it.Msg, ok, err)
			}
			if n := logs.count("pebblestore: storage failed"); n != 1 {
				t.Fatalf("failure logged %d times", n)
			}
			if n := logs.count("pebblestore: still refusing"); n != 0 {
				t.Fatalf("refusals logged %d times within a minute", n)
			}
			closed := make(chan error, 1)
			go func() { closed <- s.Close() }()
			select {
			case err := <-closed:
				if !errors.Is(err, ErrFailed) {
					t.Fatalf("close of a failed store: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Close hangs after a fault")
			}

			// Reopened on the disk as the fault left it, and as a power cut now would leave it
			// (only what was synced), with the fault gone: every acknowledged write is there.
			for name, fs := range map[string]vfs.FS{"healthy": mem, "power cut": mem.CrashClone(vfs.CrashCloneCfg{})} {
				s = mustOpen(t, "d", Options{FS: fs})
				got := drain(t, queueOf(t, s, "q"))
				must(t, s.Close())
				if len(got) < acked {
					t.Fatalf("%s: after reopen %d items, %d were acknowledged", name, len(got), acked)
				}
				for i, id := range got {
					if id != uint64(i+1) {
						t.Fatalf("%s: item %d has id %d", name, i, id)
					}
				}
			}
		})
	}
}

// TestFatalfFailsStore: Pebble's fatal report becomes our sentinel panic and the failed state.
func TestFatalfFailsStore(t *testing.T) {
	s := mustOpen(t, "d", Options{FS: vfs.NewMem()})
	defer s.Close()
	func() {
		defer func() {
			r := recover()
			if _, ok := r.(*fatalError); !ok {
				t.Fatalf("Fatalf panicked with %v", r)
			}
			if err := s.recovered(r); !errors.Is(err, ErrFailed) || !strings.Contains(err.Error(), "disk on fire") {
				t.Fatalf("recovered: %v", err)
			}
		}()
		pebbleLogger{s}.Fatalf("disk on fire: %d", 1)
	}()
	if err := queueOf(t, s, "q").Push(item(1)); !errors.Is(err, ErrFailed) {
		t.Fatalf("push after Fatalf: %v", err)
	}
	func() {
		defer func() {
			if r := recover(); r != "a bug" {
				t.Fatalf("a foreign panic was swallowed: %v", r)
			}
		}()
		_ = s.recovered("a bug")
	}()
}

// TestWedgedStoreCloses: when Pebble panics with its commit pipeline locked, Close returns
// instead of waiting on that lock, and tickets waiting for the syncer complete with the failure.
func TestWedgedStoreCloses(t *testing.T) {
	// Pebble stays open after the test, so its logger must not be the test's.
	s := mustOpen(t, "d", Options{FS: vfs.NewMem(), Logger: slog.New(slog.DiscardHandler)})
	took, release := make(chan struct{}, 1), make(chan struct{})
	hook := func() {
		took <- struct{}{}
		<-release
	}
	s.sync.testTook.Store(&hook)
	must(t, queueOf(t, s, "q").Push(item(1)))
	running := s.Sync()
	wait(t, took, "the syncer")
	_ = s.recovered(errors.New("log writer: no space left on device"))
	if err := running.Wait(); !errors.Is(err, ErrFailed) {
		t.Fatalf("running ticket: %v", err)
	}
	if err := s.Close(); !errors.Is(err, ErrFailed) {
		t.Fatalf("close: %v", err)
	}
	close(release)
}

func (c *logCounter) countContaining(sub string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for m, k := range c.msgs {
		if strings.Contains(m, sub) {
			n += k
		}
	}
	return n
}
