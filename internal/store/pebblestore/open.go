package pebblestore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/ternmq/tern/internal/store"
)

// formatVersion is the version of the key layout (keys.go) and value encodings (codec.go) this
// build writes. It also reads minFormatVersion and up, which are subsets of it, and stamps such a
// directory with formatVersion when it opens it for writing (so that an older build, which could
// not read the newer entries, refuses it). A directory with any other version is refused, never
// guessed at. Version 2 added the sequence marks ('k' keys) and the entry flag entrySeq.
// Version 3 keeps subscriptions under keys of their own ('u'), not in session records; opening an
// older directory for writing moves them there (migrateSubscriptions) in the batch that stamps it.
const (
	formatVersion    = 3
	minFormatVersion = 1
)

// errOldFormat: the database has a version this build reads but does not write.
var errOldFormat = errors.New("older format version")

// errNoFormat: the database is empty and has no format version yet.
var errNoFormat = errors.New("no format version")

// checkFormat accepts a database of our format version and returns errNoFormat for an empty one.
// A Pebble database with keys but no format key belongs to somebody else and is refused.
func checkFormat(db *pebble.DB, dir string) error {
	v, closer, err := db.Get(formatKey)
	switch {
	case err == nil:
		defer closer.Close()
		if len(v) != 4 {
			return fmt.Errorf("pebblestore: data dir %q: unreadable format version %x (this build reads versions %d to %d): %w",
				dir, v, minFormatVersion, formatVersion, store.ErrFormat)
		}
		switch got := binary.BigEndian.Uint32(v); {
		case got == formatVersion:
			return nil
		case got >= minFormatVersion && got < formatVersion:
			return errOldFormat
		default:
			return fmt.Errorf("pebblestore: data dir %q has format version %d, this build reads versions %d to %d: %w",
				dir, got, minFormatVersion, formatVersion, store.ErrFormat)
		}
	case errors.Is(err, pebble.ErrNotFound):
	default:
		return fmt.Errorf("pebblestore: open %q: read format version: %w", dir, err)
	}
	it, err := db.NewIter(nil)
	if err != nil {
		return fmt.Errorf("pebblestore: open %q: %w", dir, err)
	}
	foreign := it.First()
	if err := it.Close(); err != nil {
		return fmt.Errorf("pebblestore: open %q: %w", dir, err)
	}
	if foreign {
		return fmt.Errorf("pebblestore: data dir %q holds a Pebble database without a tern format version (not tern's?); this build reads versions %d to %d: %w",
			dir, minFormatVersion, formatVersion, store.ErrFormat)
	}
	return errNoFormat
}

// checkFormat checks the open database and stamps an empty one with our version.
func (s *Store) checkFormat() error {
	err := checkFormat(s.db, s.dir)
	if errors.Is(err, errOldFormat) {
		if s.failed() != nil {
			return nil // read-only: read it as it is
		}
		b := s.db.NewBatch()
		if err := s.migrateSubscriptions(b); err != nil {
			_ = b.Close()
			return fmt.Errorf("pebblestore: open %q: moving subscriptions out of session records: %w", s.dir, err)
		}
		return s.stampFormat(b)
	}
	if errors.Is(err, errNoFormat) {
		if s.failed() != nil {
			return fmt.Errorf("pebblestore: open %q: cannot stamp a new store: %w", s.dir, s.failed())
		}
		return s.stampFormat(s.db.NewBatch())
	}
	return err
}

// migrateSubscriptions adds to b what moves every session record's subscriptions (formats 1 and
// 2 keep them there) to keys of their own: the record again without them, and one key each. It
// reads every record before b is committed, so a record that does not decode stops the open
// with nothing written; b commits with the new format version, so the move is all or nothing.
func (s *Store) migrateSubscriptions(b *pebble.Batch) error {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{kindSession}, UpperBound: []byte{kindSession + 1}})
	if err != nil {
		return err
	}
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		var rec store.SessionRecord
		if err == nil {
			rec, err = decodeSession(v)
		}
		if err != nil {
			_ = it.Close()
			return fmt.Errorf("key %q: %w", it.Key(), err)
		}
		if len(rec.Subscriptions) == 0 {
			continue
		}
		setSubs(b, rec.ClientID, rec.Subscriptions)
		rec.Subscriptions = nil
		_ = b.Set(it.Key(), appendSession(nil, rec), nil)
	}
	return it.Close()
}

// stampFormat commits b (empty, or a migration) with our format version, synced.
func (s *Store) stampFormat(b *pebble.Batch) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = s.recovered(r)
		}
	}()
	_ = b.Set(formatKey, binary.BigEndian.AppendUint32(nil, formatVersion), nil)
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("pebblestore: open %q: write format version: %w", s.dir, err)
	}
	if err := b.Close(); err != nil {
		return err
	}
	// Pebble creates a new database's first write-ahead log before it raises the format to the
	// one asked for, so that log lacks the synced offsets its records carry in later formats
	// (walscan.go needs them to tell damage from a torn tail). A flush moves to a new log.
	return s.db.Flush()
}

// load reads what Open must know before serving: every queue's summary (from entry headers, not
// bodies), the references to shared bodies, and the highest message id anywhere. Memory grows
// with the number of queues and shared bodies, not with queue lengths.
func (s *Store) load() error {
	it, err := s.db.NewIter(nil)
	if err != nil {
		return fmt.Errorf("pebblestore: open %q: %w", s.dir, err)
	}
	l := loader{s: s}
	for ok := it.First(); ok; ok = it.Next() {
		if err = l.entry(it); err != nil {
			err = fmt.Errorf("pebblestore: open %q: key %q: %w", s.dir, it.Key(), err)
			_ = it.Close()
			return err
		}
	}
	l.flushQueue()
	if err := it.Close(); err != nil {
		return fmt.Errorf("pebblestore: open %q: %w", s.dir, s.readError(err))
	}
	return s.collectBodies()
}

// loader accumulates one queue's summary at a time: keys are sorted, so a queue's entries are
// consecutive and the map is touched once per queue.
type loader struct {
	s     *Store
	curID []byte
	cur   queueSummary
}

func (l *loader) flushQueue() {
	if l.cur.n > 0 {
		id, _, _ := splitIDKey(append([]byte{kindQueue}, l.curID...), 0)
		l.s.summaries[string(id)] = l.cur
	}
	l.cur = queueSummary{}
}

func (l *loader) entry(it *pebble.Iterator) error {
	s := l.s
	k := it.Key()
	switch k[0] {
	case kindMeta, kindIncoming, kindBody, kindRecord: // bodies: collectBodies, once every reference is counted
		return nil
	case kindQueue, kindInflight, kindRetained, kindSession, kindMarks, kindSub:
	default:
		return errBadKey
	}
	v, err := it.ValueAndErr()
	if err != nil {
		return err
	}
	switch k[0] {
	case kindMarks:
		_, err := decodeMarks(v)
		return err
	case kindSub:
		_, filter, err := splitSubKey(k)
		if err == nil {
			_, err = decodeSubscription(string(filter), v)
		}
		return err
	case kindRetained:
		id, err := messageID(v)
		s.noteID(id)
		return err
	case kindSession:
		rec, err := decodeSession(v)
		if err == nil && rec.Will != nil {
			s.noteID(rec.Will.Msg.ID)
		}
		return err
	}
	h, err := decodeEntryHeader(v)
	if err != nil {
		return err
	}
	if _, _, err := splitIDKey(k, 8); err != nil {
		return err
	}
	s.noteID(h.msgID)
	if h.shared() {
		s.bodies.refs[h.msgID]++
	}
	if k[0] == kindInflight {
		return nil
	}
	// The length prefix and id, compared rather than parsed per entry.
	if idb := k[1 : len(k)-8]; !bytes.Equal(idb, l.curID) {
		l.flushQueue()
		l.curID = append(l.curID[:0], idb...)
		l.cur.head = seqOf(k)
	}
	l.cur.tail = seqOf(k) + 1
	l.cur.n++
	l.cur.bytes += h.size
	if h.shared() {
		l.cur.shared++
	}
	return nil
}

// collectBodies notes the ids of shared bodies and deletes those no entry references.
func (s *Store) collectBodies() error {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{kindBody}, UpperBound: []byte{kindBody + 1}})
	if err != nil {
		return fmt.Errorf("pebblestore: open %q: %w", s.dir, err)
	}
	b := s.db.NewBatch()
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		if len(k) != 9 {
			_ = it.Close()
			return fmt.Errorf("pebblestore: open %q: key %q: %w", s.dir, k, errBadKey)
		}
		id := binary.BigEndian.Uint64(k[1:])
		s.noteID(id)
		if s.bodies.refs[id] == 0 {
			_ = b.Delete(k, nil)
		}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("pebblestore: open %q: %w", s.dir, err)
	}
	if b.Empty() || s.failed() != nil { // a store that refuses writes keeps its orphans for later
		return b.Close()
	}
	return s.commit(b)
}
