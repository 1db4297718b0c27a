package pebblestore

import (
	"encoding/binary"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/ternmq/tern/internal/store"
)

// inflight is a session's packet-id state: deliveries under 'f' id order, where order counts
// first puts so that All returns them in that order, and received exactly-once publishes under
// 'i' id pid. In memory it keeps only where each packet id's delivery is (slots), which the MQTT
// receive window bounds. Not safe for concurrent use (store.Inflight).
type inflight struct {
	s        *Store
	id       string
	prefix   []byte // idPrefix(kindInflight, id)
	slots    map[uint16]slot
	next     uint64 // order of the next first put
	incoming []byte // idPrefix(kindIncoming, id)
	buf      []byte // encoding scratch
}

type slot struct {
	order  uint64
	msgID  uint64
	shared bool
}

// openInflight reads the session's delivery headers to rebuild its slots. The caller holds the
// gate.
func openInflight(s *Store, id string) (*inflight, error) {
	f := &inflight{
		s: s, id: id, prefix: idPrefix(kindInflight, id), slots: map[uint16]slot{},
		incoming: idPrefix(kindIncoming, id),
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: f.prefix, UpperBound: prefixEnd(f.prefix)})
	if err != nil {
		return nil, err
	}
	for ok := it.First(); ok; ok = it.Next() {
		order := seqOf(it.Key())
		v, err := it.ValueAndErr()
		var h entryHeader
		if err == nil {
			h, err = decodeEntryHeader(v)
		}
		if err != nil {
			_ = it.Close()
			return nil, fmt.Errorf("pebblestore: in-flight entry of %q: %w", id, err)
		}
		f.slots[h.pid] = slot{order: order, msgID: h.msgID, shared: h.shared()}
		f.next = order + 1
	}
	return f, it.Close()
}

// Put implements store.Inflight.
func (f *inflight) Put(e store.InflightEntry) error {
	s := f.s
	if err := s.enter(); err != nil {
		return err
	}
	defer s.exit()
	old, exists := f.slots[e.PacketID]
	order := f.next
	if exists {
		order = old.order
	}
	m := e.Item.Msg
	shared := e.Item.Shared && m.ID != 0
	f.buf = appendEntry(f.buf[:0], e.Item, shared, true, e.PacketID, e.Released)
	b := s.db.NewBatch()
	_ = b.Set(seqKey(f.prefix, order), f.buf, nil)
	var err error
	if shared || (exists && old.shared) {
		err = s.commitShared(b, func(bs *bodies) {
			// Add before dropping: re-putting the same shared message must not delete its body.
			if shared {
				bs.add(b, m)
			}
			if exists && old.shared {
				bs.drop(b, old.msgID)
			}
		})
	} else {
		err = s.commit(b)
	}
	f.buf = trimScratch(f.buf)
	if err != nil {
		return err
	}
	s.noteID(m.ID)
	f.slots[e.PacketID] = slot{order: order, msgID: m.ID, shared: shared}
	if !exists {
		f.next++
	}
	return nil
}

// Delete implements store.Inflight.
func (f *inflight) Delete(pid uint16) error {
	s := f.s
	if err := s.enter(); err != nil {
		return err
	}
	defer s.exit()
	old, exists := f.slots[pid]
	if !exists {
		return nil
	}
	b := s.db.NewBatch()
	_ = b.Delete(seqKey(f.prefix, old.order), nil)
	var err error
	if old.shared {
		err = s.commitShared(b, func(bs *bodies) { bs.drop(b, old.msgID) })
	} else {
		err = s.commit(b)
	}
	if err != nil {
		return err
	}
	delete(f.slots, pid)
	return nil
}

// All implements store.Inflight. The messages are fresh copies.
func (f *inflight) All() ([]store.InflightEntry, error) {
	s := f.s
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.exit()
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: f.prefix, UpperBound: prefixEnd(f.prefix)})
	if err != nil {
		return nil, err
	}
	out := make([]store.InflightEntry, 0, len(f.slots))
	for ok := it.First(); ok; ok = it.Next() {
		e, err := f.decode(it)
		if err != nil {
			_ = it.Close()
			return nil, err
		}
		out = append(out, e)
	}
	return out, it.Close()
}

func (f *inflight) decode(it *pebble.Iterator) (store.InflightEntry, error) {
	v, err := it.ValueAndErr()
	if err != nil {
		return store.InflightEntry{}, err
	}
	h, subIDs, msg, err := decodeEntry(v)
	if err == nil && h.shared() {
		msg, err = f.s.readBody(h.msgID)
	}
	if err != nil {
		return store.InflightEntry{}, fmt.Errorf("pebblestore: in-flight entry of %q: %w", f.id, err)
	}
	return store.InflightEntry{
		PacketID: h.pid,
		Released: h.flags&entryReleased != 0,
		Item:     store.Item{Msg: msg, QoS: h.qos, Retain: h.flags&entryRetain != 0, SubIDs: subIDs, Shared: h.shared(), Seq: h.seq},
	}, nil
}

// AddIncoming implements store.Inflight.
func (f *inflight) AddIncoming(pid uint16) error {
	return f.writeIncoming(pid, true)
}

// DeleteIncoming implements store.Inflight.
func (f *inflight) DeleteIncoming(pid uint16) error {
	return f.writeIncoming(pid, false)
}

func (f *inflight) writeIncoming(pid uint16, add bool) error {
	s := f.s
	if err := s.enter(); err != nil {
		return err
	}
	defer s.exit()
	b := s.db.NewBatch()
	key := incomingKey(f.id, pid)
	if add {
		_ = b.Set(key, nil, nil)
	} else {
		_ = b.Delete(key, nil)
	}
	return s.commit(b)
}

// Incoming implements store.Inflight, in packet-id order.
func (f *inflight) Incoming() ([]uint16, error) {
	s := f.s
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.exit()
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: f.incoming, UpperBound: prefixEnd(f.incoming)})
	if err != nil {
		return nil, err
	}
	var out []uint16
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		if len(k) != len(f.incoming)+2 {
			_ = it.Close()
			return nil, fmt.Errorf("pebblestore: incoming packet id of %q: %w", f.id, errBadKey)
		}
		out = append(out, binary.BigEndian.Uint16(k[len(f.incoming):]))
	}
	return out, it.Close()
}

// reset empties the in-memory state after Sessions.Delete removed the entries.
func (f *inflight) reset() {
	clear(f.slots)
}
