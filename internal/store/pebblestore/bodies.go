package pebblestore

import (
	"errors"
	"fmt"
	"sync"

	"github.com/cockroachdb/pebble/v2"

	"github.com/ternmq/tern/internal/message"
)

// Shared bodies. A message fanned out to many sessions (Item.Shared) is written once under
// bodyKey(msgID); each queue or in-flight entry holding it keeps only its id. refs counts the
// entries per body. It lives in memory only: Open rebuilds it from the entries, and deletes
// bodies no entry references (left by nothing we write, but cheap to tolerate).
//
// A decision about a body (write it on the first reference, delete it with the last) and the
// batch carrying it must reach Pebble in the same order as other sessions' decisions about that
// body, so the lock is held from the decision until the batch is applied. Only writes of shared
// entries take it.
type bodies struct {
	mu   sync.Mutex
	refs map[uint64]int32
}

// add references m's body from an entry being written in b, writing the body if it is new.
// The caller holds mu.
func (bs *bodies) add(b *pebble.Batch, m *message.Message) {
	n := bs.refs[m.ID]
	if n == 0 {
		_ = b.Set(bodyKey(m.ID), appendMessage(nil, m), nil)
	}
	bs.refs[m.ID] = n + 1
}

// drop removes one reference to body id from an entry being deleted in b, deleting the body with
// its last reference. The caller holds mu.
func (bs *bodies) drop(b *pebble.Batch, id uint64) {
	switch n := bs.refs[id]; {
	case n > 1:
		bs.refs[id] = n - 1
	case n == 1:
		delete(bs.refs, id)
		_ = b.Delete(bodyKey(id), nil)
	}
}

// errMissingBody: a shared entry's body is not there, which only damage can cause.
var errMissingBody = errors.New("body missing")

// readBody returns a fresh copy of a shared body. The caller holds the gate.
func (s *Store) readBody(id uint64) (*message.Message, error) {
	v, closer, err := s.db.Get(bodyKey(id))
	if errors.Is(err, pebble.ErrNotFound) {
		err = errMissingBody
	}
	if err != nil {
		return nil, fmt.Errorf("shared message %d: %w", id, err)
	}
	m, err := decodeMessage(v)
	_ = closer.Close()
	if err != nil {
		return nil, fmt.Errorf("shared message %d: %w", id, err)
	}
	return m, nil
}

// commitShared applies b after fn has made its body decisions in it, under the bodies lock.
func (s *Store) commitShared(b *pebble.Batch, fn func(*bodies)) error {
	if err := s.writable(); err != nil {
		_ = b.Close()
		return s.refuse(err)
	}
	s.bodies.mu.Lock()
	defer s.bodies.mu.Unlock()
	fn(&s.bodies)
	return s.commit(b)
}

// deleteChunk bounds the entries deleteEntries reads before it writes.
const deleteChunk = 1024

// deleteEntries deletes every queue or in-flight entry under prefix and drops their references
// to shared bodies. Without shared entries (mayShare false) it is one range deletion. Otherwise
// it goes in chunks, each one batch with its entries and its body decisions, so memory stays
// bounded however long the queue is, and a crash between chunks leaves no entry without its body.
// The caller holds the gate.
func (s *Store) deleteEntries(prefix []byte, mayShare bool) error {
	end := prefixEnd(prefix)
	if !mayShare {
		b := s.db.NewBatch()
		_ = b.DeleteRange(prefix, end, nil)
		return s.commit(b)
	}
	lower := prefix
	for {
		ids, last, more, err := s.scanChunk(lower, end)
		if err != nil || last == nil {
			return err
		}
		next := append(last, 0) // the smallest key after last
		b := s.db.NewBatch()
		_ = b.DeleteRange(lower, next, nil)
		err = s.commitShared(b, func(bs *bodies) {
			for _, id := range ids {
				bs.drop(b, id)
			}
		})
		if err != nil || !more {
			return err
		}
		lower = next
	}
}

// scanChunk reads up to deleteChunk entries from lower: the bodies they reference, the last key
// read (nil if none) and whether more follow. An entry whose header does not decode is deleted
// all the same; its body, if any, waits for the next Open to find it unreferenced.
func (s *Store) scanChunk(lower, upper []byte) (ids []uint64, last []byte, more bool, err error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, nil, false, err
	}
	n := 0
	for ok := it.First(); ok && n < deleteChunk; ok = it.Next() {
		v, verr := it.ValueAndErr()
		if verr != nil {
			_ = it.Close()
			return nil, nil, false, verr
		}
		if h, herr := decodeEntryHeader(v); herr == nil && h.shared() {
			ids = append(ids, h.msgID)
		}
		last = append(last[:0], it.Key()...)
		n++
	}
	more = it.Valid()
	return ids, last, more, it.Close()
}
