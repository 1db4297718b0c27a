// Package pebblestore is tern's durable store.Store on Pebble: session records, session queues,
// deliveries in flight, retained messages. Writes are small batches applied without fsync; a
// syncer goroutine makes them durable for everyone waiting at once (group commit). Queues keep
// only their bounds and a small read-ahead in memory, so an offline session's queue can grow to
// millions of entries without growing the process.
package pebblestore

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/wal"

	"github.com/ternmq/tern/internal/store"
)

// SyncMode says when writes reach the disk.
type SyncMode int

const (
	// SyncAlways: Sync hands out a ticket that completes after the next fsync of the write-ahead
	// log, which covers every write made before it.
	SyncAlways SyncMode = iota
	// SyncInterval: Sync returns nil at once and the log is fsynced every Interval; a power cut
	// can lose the last interval's writes (a process crash loses nothing).
	SyncInterval
)

// Options configure Open. The zero value is usable.
type Options struct {
	Sync SyncMode
	// Interval is the SyncInterval period (default 100ms).
	Interval time.Duration
	// Logger receives Pebble's messages and the store's failures (default slog.Default()).
	Logger *slog.Logger
	// FS is the filesystem; nil means the real disk. Tests inject faults through it.
	FS vfs.FS
	// CacheBytes is Pebble's block cache (default 8 MiB).
	CacheBytes int64
	// AcceptCorruption lets Open go on past a damaged write-ahead log, losing what follows the
	// damage (the original is kept beside it as damaged-*.wal). Without it a damaged directory is
	// refused and left as it is. Damage Pebble cannot read past (a table, the manifest) is
	// refused either way.
	AcceptCorruption bool
}

const (
	defaultInterval   = 100 * time.Millisecond
	defaultCacheBytes = 8 << 20
	// memTableBytes is small so that resident memory stays low; a queue's throughput is bound by
	// the fsync, not by flushes.
	memTableBytes = 4 << 20
)

var (
	// ErrFailed wraps every write refused because an earlier write could not reach the disk.
	// Pebble cannot continue after a failed log write or sync, so neither can the store: what is
	// already stored stays readable, and a restart (with a healthy disk) resumes from what was
	// synced.
	ErrFailed = errors.New("pebblestore: storage failed, writes refused")
	// ErrNoSpace is returned by writes while Pebble cannot flush for lack of disk space; it
	// clears by itself once a flush succeeds again.
	ErrNoSpace = errors.New("pebblestore: disk full, writes refused until space is freed")
	// ErrClosed is returned by every operation after Close.
	ErrClosed = errors.New("pebblestore: store closed")
)

// Store is a store.Store on a Pebble database in one directory.
type Store struct {
	db   *pebble.DB
	dir  string
	opts Options
	log  *slog.Logger

	// gate is held shared by every operation that touches db and exclusively by Close, so that
	// Close never pulls the database from under a running operation.
	gate   sync.RWMutex
	closed bool

	failure        atomic.Pointer[error]
	lastRefusalLog atomic.Int64 // unix nanoseconds
	// wedged: Pebble panicked from inside its commit pipeline with the pipeline's lock held, so
	// any further commit, sync or Close of the database would block forever.
	wedged atomic.Bool

	lastID atomic.Uint64

	sync syncer
	bg   background
	// readOnly: the disk was full at start, so Pebble was opened read-only; every write is
	// refused (failure says why) and Close writes nothing.
	readOnly bool
	// diskBytes is the last DiskBytes figure, served while Pebble backs off (events.go).
	diskBytes atomic.Int64

	bodies bodies

	mu sync.Mutex // guards the maps below
	// queues and inflights are the opened queues and in-flight states, one object per session
	// so that every caller sees the same bounds and counters.
	queues    map[string]*queue
	inflights map[string]*inflight
	// summaries are the bounds Open found for queues nobody has opened yet.
	summaries map[string]queueSummary
}

var _ store.Store = (*Store)(nil)

// Open opens the store in dir, creating it only in an absent or empty directory. A directory
// with content is checked without writing first (inspect.go) and refused, untouched, when it is
// damaged: the error wraps store.ErrDamaged (or store.ErrFormat). When the disk is full, the
// store opens read-only and refuses writes (Health says why).
func Open(dir string, opts Options) (*Store, error) {
	if opts.Interval <= 0 {
		opts.Interval = defaultInterval
	}
	if opts.CacheBytes <= 0 {
		opts.CacheBytes = defaultCacheBytes
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	fs := opts.FS
	if fs == nil {
		fs = vfs.Default
	}
	s := &Store{
		dir: dir, opts: opts, log: opts.Logger,
		queues:    map[string]*queue{},
		inflights: map[string]*inflight{},
		summaries: map[string]queueSummary{},
	}
	s.bodies.refs = map[uint64]int32{}
	s.bg.stop = make(chan struct{})
	in, err := s.inspect(fs)
	if errors.Is(err, store.ErrFormat) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("pebblestore: open %q: %w", dir, s.readError(err))
	}
	for _, n := range in.Notes {
		s.log.Warn("pebblestore: "+n, "dir", dir)
	}
	if len(in.Damage) > 0 {
		if !opts.AcceptCorruption || !allAcceptable(in.Damage) {
			return nil, s.refusal(in, opts.AcceptCorruption)
		}
		for _, d := range in.Damage {
			s.log.Error("pebblestore: accepting damage: "+d.String(), "dir", dir)
		}
	}
	if in.Empty {
		if err := fs.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("pebblestore: create data dir %q: %w", dir, err)
		}
	}
	// Pebble's writable open flushes the logs it replays, and on a full disk it retries that
	// flush without end (events.go): so the space is checked first.
	err = s.enoughSpace(fs, in)
	var db *pebble.DB
	if err == nil {
		db, err = s.openWritable(fs, in)
	}
	if err != nil && isNoSpace(err) && !in.Empty {
		s.log.Error("pebblestore: the disk is full: serving what is stored, refusing writes; restart tern once space is freed",
			"dir", dir, "err", err)
		s.readOnly = true
		s.fail(fmt.Errorf("disk full at start: %w", err))
		db, err = s.openPebble(fs, true)
	}
	if err != nil {
		return nil, fmt.Errorf("pebblestore: open %q: %w", dir, s.readError(err))
	}
	s.db = db
	err = s.checkFormat()
	if err == nil {
		err = s.load()
	}
	if err == nil && !s.readOnly {
		err = s.writeMark(pebble.NoSync)
	}
	if err != nil {
		if !s.wedged.Load() { // see Close
			_ = s.closeDB()
		}
		return nil, err
	}
	s.sync.start(s)
	return s, nil
}

// openWritable makes the changes a start makes before Pebble opens (accepted damage cut, writes
// after the last sync mark dropped, the clean-stop marker removed) and opens Pebble for writing.
func (s *Store) openWritable(fs vfs.FS, in *inspection) (*pebble.DB, error) {
	if len(in.Damage) > 0 {
		if err := s.acceptDamage(in); err != nil {
			return nil, err
		}
	}
	if c, ok := planCut(in.scans); ok {
		if err := s.cutUnsynced(c); err != nil {
			return nil, err
		}
	}
	if err := fs.Remove(fs.PathJoin(s.dir, closedMarker)); err == nil {
		if err := syncDir(fs, s.dir); err != nil {
			return nil, err
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	return s.openPebble(fs, false)
}

// openPebble opens Pebble on an existing database (or creates one in an empty directory, never
// otherwise), turning a fatal report during its recovery into an error.
func (s *Store) openPebble(fs vfs.FS, readOnly bool) (db *pebble.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			fe, ok := r.(*fatalError)
			if !ok {
				panic(r)
			}
			err = fe
		}
	}()
	empty, err := isEmptyDir(fs, s.dir)
	if err != nil {
		return nil, err
	}
	cache := pebble.NewCache(s.opts.CacheBytes)
	defer cache.Unref()
	return pebble.Open(s.dir, &pebble.Options{
		FS:                 fs,
		Cache:              cache,
		MemTableSize:       memTableBytes,
		Logger:             pebbleLogger{s},
		EventListener:      s.eventListener(),
		FormatMajorVersion: pebble.FormatNewest,
		ReadOnly:           readOnly,
		ErrorIfNotExists:   !empty,
	})
}

// spareBytes is the free space Open wants beyond the logs it replays: room for the new log,
// the manifest and the options file.
const spareBytes = 2 * memTableBytes

// enoughSpace tells whether the disk has room to replay the logs into tables and go on; where
// the filesystem cannot say, it writes and syncs a small probe file.
func (s *Store) enoughSpace(fs vfs.FS, in *inspection) error {
	if in.Empty {
		return nil
	}
	need := uint64(spareBytes)
	for _, w := range in.scans {
		need += uint64(w.size)
	}
	if u, err := fs.GetDiskUsage(s.dir); err == nil {
		if u.AvailBytes < need {
			return fmt.Errorf("%d bytes free, %d needed to start: %w", u.AvailBytes, need, syscall.ENOSPC)
		}
		return nil
	}
	probe := fs.PathJoin(s.dir, "tern-space-probe")
	f, err := fs.Create(probe, vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	_, err = f.Write(make([]byte, 4096))
	if err == nil {
		err = f.Sync()
	}
	err = errors.Join(err, f.Close(), fs.Remove(probe))
	return err
}

// isNoSpace tells a full disk (or quota) from other failures.
func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// enter admits an operation: it holds the gate shared until the caller's exit.
func (s *Store) enter() error {
	s.gate.RLock()
	if s.closed {
		s.gate.RUnlock()
		return ErrClosed
	}
	return nil
}

func (s *Store) exit() { s.gate.RUnlock() }

// Sessions implements store.Store.
func (s *Store) Sessions() store.Sessions { return (*sessions)(s) }

// Retained implements store.Store.
func (s *Store) Retained() store.Retained { return (*retained)(s) }

// LastMessageID implements store.Store.
func (s *Store) LastMessageID() uint64 { return s.lastID.Load() }

// noteID raises LastMessageID to id.
func (s *Store) noteID(id uint64) {
	for {
		cur := s.lastID.Load()
		if id <= cur || s.lastID.CompareAndSwap(cur, id) {
			return
		}
	}
}

// DiskBytes implements store.Store: everything Pebble keeps on disk, live and obsolete.
func (s *Store) DiskBytes() int64 {
	if s.enter() != nil {
		return 0
	}
	defer s.exit()
	if s.bg.backingOff.Load() { // Metrics would wait for Pebble's back-off (events.go)
		return s.diskBytes.Load()
	}
	m := s.db.Metrics()
	n := int64(m.DiskSpaceUsage())
	// DiskSpaceUsage counts the live logs at the size they had when opened; the current one has
	// grown since by up to its logical size, which for an offline queue is most of the data.
	if grown := int64(m.WAL.Size) - int64(m.WAL.PhysicalSize); grown > 0 {
		n += grown
	}
	s.diskBytes.Store(n)
	return n
}

// Close implements store.Store: it stops the syncer (completing any pending ticket after one last
// sync) and closes Pebble. A second Close returns nil.
func (s *Store) Close() error {
	s.gate.Lock()
	if s.closed {
		s.gate.Unlock()
		return nil
	}
	s.closed = true
	s.gate.Unlock()
	close(s.bg.stop)
	s.sync.stop(s)
	failure := s.failed()
	if s.wedged.Load() {
		// Pebble's commit pipeline is locked by the write that panicked; DB.Close takes that lock
		// and would never return. The process keeps the files open until it exits.
		return fmt.Errorf("pebblestore: close %q: database left open: %w", s.dir, failure)
	}
	err := s.closeDB()
	if failure != nil {
		return errors.Join(failure, err)
	}
	if err != nil {
		return fmt.Errorf("pebblestore: close %q: %w", s.dir, err)
	}
	return s.markClosed()
}

// markClosed records the newest log and its size (marks.go: the clean-stop marker).
func (s *Store) markClosed() error {
	fs := s.opts.FS
	if fs == nil {
		fs = vfs.Default
	}
	logs, err := wal.Scan(wal.Dir{FS: fs, Dirname: s.dir})
	if err != nil || len(logs) == 0 {
		return err
	}
	newest := logs[0]
	for _, l := range logs {
		if l.Num > newest.Num {
			newest = l
		}
	}
	lfs, path := newest.SegmentLocation(newest.NumSegments() - 1)
	st, err := lfs.Stat(path)
	if err != nil {
		return fmt.Errorf("pebblestore: close %q: %w", s.dir, err)
	}
	if err := writeClosed(fs, s.dir, closedState{log: lfs.PathBase(path), size: st.Size()}); err != nil {
		return fmt.Errorf("pebblestore: close %q: record the clean stop: %w", s.dir, err)
	}
	return nil
}

func (s *Store) closeDB() (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = s.recovered(r)
		}
	}()
	return s.db.Close()
}
