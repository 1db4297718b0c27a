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
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

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

// Open opens (creating if needed) the store in dir.
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
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("pebblestore: create data dir %q: %w", dir, err)
	}
	s := &Store{
		dir: dir, opts: opts, log: opts.Logger,
		queues:    map[string]*queue{},
		inflights: map[string]*inflight{},
		summaries: map[string]queueSummary{},
	}
	s.bodies.refs = map[uint64]int32{}
	db, err := s.openDB(fs)
	if err != nil {
		return nil, fmt.Errorf("pebblestore: open %q: %w", dir, err)
	}
	s.db = db
	err = s.checkFormat()
	if err == nil {
		err = s.load()
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

// openDB opens Pebble, turning a fatal report during its recovery into an error.
func (s *Store) openDB(fs vfs.FS) (db *pebble.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			fe, ok := r.(*fatalError)
			if !ok {
				panic(r)
			}
			err = fe
		}
	}()
	cache := pebble.NewCache(s.opts.CacheBytes)
	defer cache.Unref()
	return pebble.Open(s.dir, &pebble.Options{
		FS:                 fs,
		Cache:              cache,
		MemTableSize:       memTableBytes,
		Logger:             pebbleLogger{s},
		FormatMajorVersion: pebble.FormatNewest,
	})
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
	m := s.db.Metrics()
	n := int64(m.DiskSpaceUsage())
	// DiskSpaceUsage counts the live logs at the size they had when opened; the current one has
	// grown since by up to its logical size, which for an offline queue is most of the data.
	if grown := int64(m.WAL.Size) - int64(m.WAL.PhysicalSize); grown > 0 {
		n += grown
	}
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
