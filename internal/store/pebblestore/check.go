package pebblestore

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Check inspects the store in dir without changing anything: the write-ahead logs (as Open
// does), the database opened read-only, its format version, and every key and value read
// (which verifies every table block's checksum) and decoded as Open's load does. It returns what
// it found; err is for a check that could not run (dir unreadable, locked by a running tern).
// An absent or empty directory is reported as Empty, with no damage.
func Check(dir string, fs vfs.FS, log *slog.Logger) (Report, error) {
	if fs == nil {
		fs = vfs.Default
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Store{dir: dir, log: log, opts: Options{FS: fs, CacheBytes: defaultCacheBytes},
		queues: map[string]*queue{}, inflights: map[string]*inflight{}, summaries: map[string]queueSummary{}}
	s.bodies.refs = map[uint64]int32{}
	s.bg.stop = make(chan struct{})
	defer close(s.bg.stop)
	in, err := s.inspect(fs)
	if err != nil {
		return Report{Dir: dir}, err
	}
	if in.Empty || len(in.Damage) > 0 {
		return in.Report, nil
	}
	db, err := s.openPebble(fs, true)
	if err != nil {
		in.Damage = append(in.Damage, damageOf(dir, err))
		return in.Report, nil
	}
	defer db.Close()
	s.db = db
	// load reads every entry's header and stops at the first that does not decode; a store
	// that refuses writes (as this one does: failed below) deletes nothing.
	s.fail(errors.New("checking read-only"))
	if err := s.load(); err != nil {
		in.Damage = append(in.Damage, Damage{File: dir, Offset: -1, What: oneLine(err)})
		return in.Report, nil
	}
	n, err := readEverything(db)
	in.Keys = n
	if err != nil {
		d := Damage{File: dir, Offset: -1, What: "damaged: " + oneLine(err)}
		if i := s.bg.corrupt.Load(); i != nil {
			d.File = i.Path
		}
		in.Damage = append(in.Damage, d)
	}
	return in.Report, nil
}

// readEverything reads every key and value, so that every block's checksum is verified.
func readEverything(db *pebble.DB) (int, error) {
	it, err := db.NewIter(nil)
	if err != nil {
		return 0, err
	}
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		if _, err := it.ValueAndErr(); err != nil {
			_ = it.Close()
			return n, fmt.Errorf("key %q: %w", it.Key(), err)
		}
		n++
	}
	return n, it.Close()
}
