package pebblestore

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/cockroachdb/pebble/v2"

	"github.com/ternmq/tern/internal/message"
	"github.com/ternmq/tern/internal/store"
)

type sessions Store

// Put implements store.Sessions.
func (ss *sessions) Put(rec store.SessionRecord) error {
	s := (*Store)(ss)
	if err := s.enter(); err != nil {
		return err
	}
	defer s.exit()
	b := s.db.NewBatch()
	setSubs(b, rec.ClientID, rec.Subscriptions)
	bare := rec
	bare.Subscriptions = nil
	_ = b.Set(sessionKey(rec.ClientID), appendSession(nil, bare), nil)
	if err := s.commit(b); err != nil {
		return err
	}
	if rec.Will != nil {
		s.noteID(rec.Will.Msg.ID)
	}
	return nil
}

func setSubs(b *pebble.Batch, id string, subs []store.Subscription) {
	var v []byte
	for _, sub := range subs {
		v = appendSubOptions(v[:0], sub)
		_ = b.Set(subKey(id, sub.Filter), v, nil)
	}
}

// PutSubscriptions implements store.Sessions: one key per subscription, so the write is the size
// of what changed.
func (ss *sessions) PutSubscriptions(id string, subs []store.Subscription) error {
	s := (*Store)(ss)
	if err := s.enter(); err != nil {
		return err
	}
	defer s.exit()
	b := s.db.NewBatch()
	setSubs(b, id, subs)
	return s.commit(b)
}

// DeleteSubscriptions implements store.Sessions.
func (ss *sessions) DeleteSubscriptions(id string, filters []string) error {
	s := (*Store)(ss)
	if err := s.enter(); err != nil {
		return err
	}
	defer s.exit()
	b := s.db.NewBatch()
	for _, f := range filters {
		_ = b.Delete(subKey(id, f), nil)
	}
	return s.commit(b)
}

// Delete implements store.Sessions. The queue and in-flight entries go first and the record last,
// so a crash half way leaves a session with less queued, never a queue without its session.
func (ss *sessions) Delete(id string) error {
	s := (*Store)(ss)
	if err := s.enter(); err != nil {
		return err
	}
	defer s.exit()
	s.mu.Lock()
	defer s.mu.Unlock()
	q, f := s.queues[id], s.inflights[id]
	// Entries exist only if Open found some or the queue was opened since; only shared ones need
	// reading before they are deleted.
	var queueShares bool
	if q != nil {
		queueShares = q.shared > 0
	} else if sum, ok := s.summaries[id]; ok {
		queueShares = sum.shared > 0
	}
	inflightShares := f == nil // unknown until read; the window bounds the read
	if f != nil {
		for _, sl := range f.slots {
			inflightShares = inflightShares || sl.shared
		}
	}
	qp, fp, ip, up := idPrefix(kindQueue, id), idPrefix(kindInflight, id), idPrefix(kindIncoming, id), idPrefix(kindSub, id)
	if queueShares {
		if err := s.deleteEntries(qp, true); err != nil {
			return err
		}
	}
	if inflightShares {
		if err := s.deleteEntries(fp, true); err != nil {
			return err
		}
	}
	b := s.db.NewBatch()
	for _, p := range [][]byte{qp, fp, ip, up} {
		_ = b.DeleteRange(p, prefixEnd(p), nil)
	}
	_ = b.Delete(marksKey(id), nil)
	_ = b.Delete(sessionKey(id), nil)
	if err := s.commit(b); err != nil {
		return err
	}
	// Queue and Inflight objects handed out before read as empty; the next Queue or Inflight call
	// makes new ones, and the old ones must not be written to any more.
	if q != nil {
		q.reset()
	}
	if f != nil {
		f.reset()
	}
	delete(s.queues, id)
	delete(s.inflights, id)
	delete(s.summaries, id)
	return nil
}

// scanChunkRecords bounds how many records All reads before calling fn, so it neither holds every
// record in memory nor calls fn (which may use the store) while holding the gate.
const scanChunkRecords = 256

// All implements store.Sessions. A record's subscriptions are read with it; those it carries
// itself (a directory of format 1 or 2 opened read-only, never migrated) come back too, a key of
// the same filter winning. Records are read a chunk at a time, and a chunk's subscriptions
// through one iterator that seeks from one client to the next: an iterator of its own per record
// made reading 100,000 sessions take 1.7 times as long (BenchmarkAllSessions).
func (ss *sessions) All(fn func(store.SessionRecord) error) error {
	s := (*Store)(ss)
	return scanChunks(s, kindSession, func(v []byte) (store.SessionRecord, error) {
		rec, err := decodeSession(v)
		if err != nil {
			return rec, fmt.Errorf("pebblestore: session record: %w", err)
		}
		return rec, nil
	}, func(recs []store.SessionRecord) error {
		if err := s.fillSubscriptions(recs); err != nil {
			return err
		}
		return eachOf(recs, fn)
	})
}

// eachOf calls fn for each item until it fails.
func eachOf[T any](items []T, fn func(T) error) error {
	for _, item := range items {
		if err := fn(item); err != nil {
			return err
		}
	}
	return nil
}

// fillSubscriptions sets each record's Subscriptions to its stored subscriptions merged into
// those it carries (a record's own), ordered by filter.
func (s *Store) fillSubscriptions(recs []store.SessionRecord) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.exit()
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{kindSub}, UpperBound: []byte{kindSub + 1}})
	if err != nil {
		return err
	}
	for i := range recs {
		if recs[i].Subscriptions, err = subscriptionsAt(it, recs[i].ClientID, recs[i].Subscriptions); err != nil {
			_ = it.Close()
			return err
		}
	}
	return it.Close()
}

// subscriptionsAt reads a session's stored subscriptions through it (bounded to the
// subscription keys) and merges them into inline.
func subscriptionsAt(it *pebble.Iterator, id string, inline []store.Subscription) ([]store.Subscription, error) {
	p := idPrefix(kindSub, id)
	var out []store.Subscription
	for ok := it.SeekGE(p); ok && bytes.HasPrefix(it.Key(), p); ok = it.Next() {
		v, err := it.ValueAndErr()
		if err == nil {
			var sub store.Subscription
			sub, err = decodeSubscription(string(it.Key()[len(p):]), v)
			out = append(out, sub)
		}
		if err != nil {
			return nil, fmt.Errorf("pebblestore: subscription of %q: %w", id, err)
		}
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("pebblestore: subscriptions of %q: %w", id, err)
	}
	if len(inline) == 0 {
		return out, nil
	}
	for _, sub := range inline {
		if !slices.ContainsFunc(out, func(o store.Subscription) bool { return o.Filter == sub.Filter }) {
			out = append(out, sub)
		}
	}
	slices.SortFunc(out, func(a, b store.Subscription) int { return strings.Compare(a.Filter, b.Filter) })
	return out, nil
}

// scanChunks reads every value of one key kind, scanChunkRecords at a time: decode runs under the
// gate for each value, chunk outside it with what a chunk decoded.
func scanChunks[T any](s *Store, kind byte, decode func(v []byte) (T, error), chunk func([]T) error) error {
	lower, upper := []byte{kind}, []byte{kind + 1}
	items := make([]T, 0, scanChunkRecords)
	for lower != nil {
		items = items[:0]
		var err error
		lower, err = s.readChunk(lower, upper, func(v []byte) error {
			item, err := decode(v)
			items = append(items, item)
			return err
		})
		if err == nil {
			err = chunk(items)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// readChunk passes up to scanChunkRecords values from lower to fn and returns where the next
// chunk starts, nil at the end.
func (s *Store) readChunk(lower, upper []byte, fn func(v []byte) error) ([]byte, error) {
	return s.readChunkKV(lower, upper, func(_, v []byte) error { return fn(v) })
}

// readChunkKV is readChunk with the keys too.
func (s *Store) readChunkKV(lower, upper []byte, fn func(k, v []byte) error) ([]byte, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.exit()
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, err
	}
	var next []byte
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		if n == scanChunkRecords {
			next = append([]byte(nil), it.Key()...)
			break
		}
		v, err := it.ValueAndErr()
		if err == nil {
			err = fn(it.Key(), v)
		}
		if err != nil {
			_ = it.Close()
			return nil, err
		}
		n++
	}
	return next, it.Close()
}

// Queue implements store.Sessions. It reads nothing: Open summed the queue's entries already.
func (ss *sessions) Queue(id string) (store.Queue, error) {
	s := (*Store)(ss)
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.queues[id]
	if q == nil {
		sum, ok := s.summaries[id]
		if ok {
			delete(s.summaries, id)
		}
		q = newQueue(s, id, sum)
		s.queues[id] = q
	}
	return q, nil
}

// Inflight implements store.Sessions.
func (ss *sessions) Inflight(id string) (store.Inflight, error) {
	s := (*Store)(ss)
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.exit()
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.inflights[id]
	if f == nil {
		var err error
		if f, err = openInflight(s, id); err != nil {
			return nil, err
		}
		s.inflights[id] = f
	}
	return f, nil
}

type retained Store

// Set implements store.Retained.
func (r *retained) Set(m *message.Message) error {
	s := (*Store)(r)
	if err := s.enter(); err != nil {
		return err
	}
	defer s.exit()
	b := s.db.NewBatch()
	_ = b.Set(retainedKey(m.Topic), appendMessage(nil, m), nil)
	if err := s.commit(b); err != nil {
		return err
	}
	s.noteID(m.ID)
	return nil
}

// Delete implements store.Retained.
func (r *retained) Delete(topic string) error {
	s := (*Store)(r)
	if err := s.enter(); err != nil {
		return err
	}
	defer s.exit()
	b := s.db.NewBatch()
	_ = b.Delete(retainedKey(topic), nil)
	return s.commit(b)
}

// All implements store.Retained. The messages are fresh copies.
func (r *retained) All(fn func(*message.Message) error) error {
	s := (*Store)(r)
	return scanChunks(s, kindRetained, func(v []byte) (*message.Message, error) {
		m, err := decodeMessage(v)
		if err != nil {
			return nil, fmt.Errorf("pebblestore: retained message: %w", err)
		}
		return m, nil
	}, func(ms []*message.Message) error { return eachOf(ms, fn) })
}

// Marks implements store.Sessions.
func (ss *sessions) Marks(id string) (store.Marks, error) {
	s := (*Store)(ss)
	if err := s.enter(); err != nil {
		return store.Marks{}, err
	}
	defer s.exit()
	v, closer, err := s.db.Get(marksKey(id))
	if errors.Is(err, pebble.ErrNotFound) {
		return store.Marks{}, nil
	}
	if err != nil {
		return store.Marks{}, err
	}
	defer closer.Close()
	m, err := decodeMarks(v)
	if err != nil {
		return store.Marks{}, fmt.Errorf("pebblestore: marks of %q: %w", id, err)
	}
	return m, nil
}

// PutMarks implements store.Sessions.
func (ss *sessions) PutMarks(id string, m store.Marks) error {
	s := (*Store)(ss)
	if err := s.enter(); err != nil {
		return err
	}
	defer s.exit()
	b := s.db.NewBatch()
	_ = b.Set(marksKey(id), appendMarks(nil, m), nil)
	return s.commit(b)
}
