package pebblestore

import (
	"encoding/binary"
	"errors"

	"github.com/cockroachdb/pebble/v2"

	"github.com/ternmq/tern/internal/store"
)

// recordStore implements store.Records under 'a' keys: 'a' len(ns) ns key.
type recordStore Store

// Records implements store.Store.
func (s *Store) Records() store.Records { return (*recordStore)(s) }

func recordPrefix(ns string) []byte {
	b := make([]byte, 0, 1+binary.MaxVarintLen64+len(ns))
	b = append(b, kindRecord)
	b = binary.AppendUvarint(b, uint64(len(ns)))
	return append(b, ns...)
}

func recordKey(ns, key string) []byte { return append(recordPrefix(ns), key...) }

// Get implements store.Records.
func (r *recordStore) Get(ns, key string) ([]byte, bool, error) {
	s := (*Store)(r)
	if err := s.enter(); err != nil {
		return nil, false, err
	}
	defer s.exit()
	v, closer, err := s.db.Get(recordKey(ns, key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	out := append([]byte{}, v...)
	_ = closer.Close()
	return out, true, nil
}

// Put implements store.Records: the value is on disk when it returns.
func (r *recordStore) Put(ns, key string, value []byte) error {
	return r.commitSynced(func(b *pebble.Batch) { _ = b.Set(recordKey(ns, key), value, nil) })
}

// Delete implements store.Records: the deletion is on disk when it returns.
func (r *recordStore) Delete(ns, key string) error {
	return r.commitSynced(func(b *pebble.Batch) { _ = b.Delete(recordKey(ns, key), nil) })
}

// commitSynced writes what fill puts in a batch and waits for the fsync, in SyncInterval mode
// too: records change rarely (an administrator adds a user), and a change that was reported done
// must survive a power cut. The ticket is taken before the gate is left, so a Close in between
// still syncs it (its last cycle) rather than failing a write that was applied.
func (r *recordStore) commitSynced(fill func(*pebble.Batch)) error {
	s := (*Store)(r)
	if err := s.enter(); err != nil {
		return err
	}
	b := s.db.NewBatch()
	fill(b)
	err := s.commit(b)
	var t *store.Ticket
	if err == nil {
		t = s.ticket(false)
	}
	s.exit()
	if err != nil {
		return err
	}
	return t.Wait()
}

// Scan implements store.Records. It reads in chunks and calls fn between them, outside any
// iterator, so fn may write.
func (r *recordStore) Scan(ns string, fn func(key string, value []byte) error) error {
	s := (*Store)(r)
	prefix := recordPrefix(ns)
	lower, upper := prefix, prefixEnd(prefix)
	type kv struct {
		k string
		v []byte
	}
	for lower != nil {
		var chunk []kv
		next, err := s.readChunkKV(lower, upper, func(k, v []byte) error {
			chunk = append(chunk, kv{string(k[len(prefix):]), append([]byte{}, v...)})
			return nil
		})
		if err != nil {
			return err
		}
		for _, e := range chunk {
			if err := fn(e.k, e.v); err != nil {
				return err
			}
		}
		lower = next
	}
	return nil
}
