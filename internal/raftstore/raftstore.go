// Package raftstore keeps hashicorp/raft's log and stable state in a Pebble database of its own
// (in <data-dir>/raft, beside the broker's store, never inside it): raft fsyncs its log on every
// append and would otherwise share the broker's write-ahead log and its group commit.
//
// Keys are one prefix byte and a suffix:
//
//	'l' + big-endian index  -> an encoded raft.Log (codec.go)
//	's' + key               -> a stable value (Set/Get)
//	'u' + key               -> a stable uint64, 8 bytes big-endian (SetUint64/GetUint64)
//
// Every other prefix is left to the user of the database (DB): the cluster keeps its replicated
// state machine under 'f', so that applying a log entry and its effect are one Pebble instance's
// business.
package raftstore

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"
)

// ErrKeyNotFound is what Get and GetUint64 return for a key never set. Raft tells it from other
// failures by its text, "not found" (as its own InmemStore and raft-boltdb write it).
var ErrKeyNotFound = errors.New("not found")

const (
	prefixLog    = 'l'
	prefixStable = 's'
	prefixUint   = 'u'
)

// Store is a raft.LogStore and raft.StableStore on Pebble. It is safe for concurrent use.
type Store struct {
	db *pebble.DB
}

var (
	_ raft.LogStore    = (*Store)(nil)
	_ raft.StableStore = (*Store)(nil)
)

// Options adjust Open; the zero value is the production setup.
type Options struct {
	// FS is the filesystem (tests use vfs.NewMem); nil is the operating system's.
	FS vfs.FS
	// Log gets Pebble's error lines; nil discards them.
	Log *slog.Logger
}

// Open opens (creating if needed) the database in dir.
func Open(dir string, o Options) (*Store, error) {
	fs := o.FS
	if fs == nil {
		fs = vfs.Default
	}
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("raftstore: %w", err)
	}
	db, err := pebble.Open(filepath.Clean(dir), &pebble.Options{
		FS:                 fs,
		FormatMajorVersion: pebble.FormatNewest,
		// Raft's log is written and deleted in order and read back rarely: small memtables.
		MemTableSize: 4 << 20,
		Logger:       quietLogger{log: cmp.Or(o.Log, slog.New(slog.DiscardHandler))},
	})
	if err != nil {
		return nil, fmt.Errorf("raftstore: open %s: %w", dir, err)
	}
	return &Store{db: db}, nil
}

// DB is the underlying database, for state kept beside the log under prefixes this package does
// not use (any but 'l', 's' and 'u').
func (s *Store) DB() *pebble.DB { return s.db }

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

func logKey(index uint64) []byte {
	k := make([]byte, 9)
	k[0] = prefixLog
	binary.BigEndian.PutUint64(k[1:], index)
	return k
}

// logBounds are the keys of every log entry: [lower, upper).
var logLower, logUpper = []byte{prefixLog}, []byte{prefixLog + 1}

// FirstIndex implements raft.LogStore: the lowest index stored, 0 when the log is empty.
func (s *Store) FirstIndex() (uint64, error) {
	return s.edge(true)
}

// LastIndex implements raft.LogStore: the highest index stored, 0 when the log is empty.
func (s *Store) LastIndex() (uint64, error) {
	return s.edge(false)
}

func (s *Store) edge(first bool) (uint64, error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: logLower, UpperBound: logUpper})
	if err != nil {
		return 0, err
	}
	var ok bool
	if first {
		ok = it.First()
	} else {
		ok = it.Last()
	}
	var idx uint64
	if ok {
		k := it.Key()
		if len(k) != 9 {
			_ = it.Close()
			return 0, fmt.Errorf("raftstore: malformed log key %x", k)
		}
		idx = binary.BigEndian.Uint64(k[1:])
	}
	return idx, it.Close()
}

// GetLog implements raft.LogStore; a missing index is raft.ErrLogNotFound.
func (s *Store) GetLog(index uint64, out *raft.Log) error {
	v, closer, err := s.db.Get(logKey(index))
	if errors.Is(err, pebble.ErrNotFound) {
		return raft.ErrLogNotFound
	}
	if err != nil {
		return err
	}
	defer closer.Close()
	l, err := DecodeLog(v)
	if err != nil {
		return fmt.Errorf("raftstore: log %d: %w", index, err)
	}
	if l.Index != index {
		return fmt.Errorf("raftstore: log key %d holds entry %d", index, l.Index)
	}
	*out = l
	return nil
}

// StoreLog implements raft.LogStore.
func (s *Store) StoreLog(l *raft.Log) error { return s.StoreLogs([]*raft.Log{l}) }

// StoreLogs implements raft.LogStore: the entries are on disk (one fsync) when it returns.
func (s *Store) StoreLogs(logs []*raft.Log) error {
	b := s.db.NewBatch()
	defer b.Close()
	var buf []byte
	for _, l := range logs {
		buf = AppendLog(buf[:0], l)
		if err := b.Set(logKey(l.Index), buf, nil); err != nil {
			return err
		}
	}
	return b.Commit(pebble.Sync)
}

// DeleteRange implements raft.LogStore: entries min to max, both included, go.
func (s *Store) DeleteRange(min, max uint64) error {
	if min > max {
		return nil
	}
	end := logUpper
	if max < math.MaxUint64 {
		end = logKey(max + 1)
	}
	return s.db.DeleteRange(logKey(min), end, pebble.Sync)
}

func stableKey(prefix byte, key []byte) []byte {
	return append([]byte{prefix}, key...)
}

// Set implements raft.StableStore; it is on disk when it returns.
func (s *Store) Set(key, val []byte) error {
	return s.db.Set(stableKey(prefixStable, key), val, pebble.Sync)
}

// Get implements raft.StableStore; a key never set is ErrKeyNotFound.
func (s *Store) Get(key []byte) ([]byte, error) {
	v, closer, err := s.db.Get(stableKey(prefixStable, key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, ErrKeyNotFound
	}
	if err != nil {
		return nil, err
	}
	defer closer.Close()
	return append([]byte{}, v...), nil
}

// SetUint64 implements raft.StableStore; it is on disk when it returns.
func (s *Store) SetUint64(key []byte, val uint64) error {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], val)
	return s.db.Set(stableKey(prefixUint, key), b[:], pebble.Sync)
}

// GetUint64 implements raft.StableStore; a key never set is ErrKeyNotFound.
func (s *Store) GetUint64(key []byte) (uint64, error) {
	v, closer, err := s.db.Get(stableKey(prefixUint, key))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, ErrKeyNotFound
	}
	if err != nil {
		return 0, err
	}
	defer closer.Close()
	return DecodeUint64(v)
}

// DecodeUint64 reads a stable uint64 value.
func DecodeUint64(v []byte) (uint64, error) {
	if len(v) != 8 {
		return 0, fmt.Errorf("raftstore: uint64 value of %d bytes", len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// quietLogger keeps Pebble's informational lines out of tern's log; errors still show. Fatal
// panics like Pebble's default (which exits): a raft log that cannot be written must stop the node.
type quietLogger struct{ log *slog.Logger }

func (quietLogger) Infof(string, ...any) {}
func (q quietLogger) Errorf(format string, args ...any) {
	q.log.Error("raft log store: " + fmt.Sprintf(format, args...))
}
func (quietLogger) Fatalf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }
