package pebblestore

import (
	"reflect"
	"testing"

	"github.com/ternmq/tern/internal/message"
	"github.com/ternmq/tern/internal/store"
	"github.com/ternmq/tern/internal/store/storetest"
)

// Each fuzz target is seeded with real encodings; wherever a decoder accepts its input, encoding
// the result and decoding that again must give the same value.

func FuzzDecodeMessage(f *testing.F) {
	for _, m := range sampleMessages() {
		f.Add(appendMessage(nil, m))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMessage(b)
		if err != nil {
			return
		}
		again, err := decodeMessage(appendMessage(nil, m))
		if err != nil {
			t.Fatalf("re-encoding does not decode: %v", err)
		}
		sameMessage(t, again, m)
	})
}

func FuzzDecodeSession(f *testing.F) {
	f.Add(appendSession(nil, store.SessionRecord{ClientID: "c"}))
	f.Add(appendSession(nil, store.SessionRecord{
		ClientID: "c1", Identity: "alice", Expiry: 60, Disconnected: 1, Dropped: 2,
		Subscriptions: []store.Subscription{{Filter: "a/#", QoS: 1, NoLocal: true, RetainHandling: 1, ID: 3}},
		Will:          &store.Will{Msg: storetest.Msg(1, "w", "x"), Delay: 5},
	}))
	f.Fuzz(func(t *testing.T, b []byte) {
		rec, err := decodeSession(b)
		if err != nil {
			return
		}
		again, err := decodeSession(appendSession(nil, rec))
		if err != nil {
			t.Fatalf("re-encoding does not decode: %v", err)
		}
		if (rec.Will == nil) != (again.Will == nil) {
			t.Fatal("will lost")
		}
		if rec.Will != nil {
			sameMessage(t, again.Will.Msg, rec.Will.Msg)
			rec.Will, again.Will = nil, nil
		}
		if !reflect.DeepEqual(rec, again) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", again, rec)
		}
	})
}

// FuzzDecodeSubscription: a subscription key's value, and the key itself, decode to what encodes
// back to the same bytes.
func FuzzDecodeSubscription(f *testing.F) {
	f.Add(subKey("c", "a/#"), appendSubOptions(nil, store.Subscription{Filter: "a/#", QoS: 1, NoLocal: true, RetainHandling: 2, ID: 7}))
	f.Add(subKey("", "$share/g/x"), appendSubOptions(nil, store.Subscription{Filter: "$share/g/x", QoS: 2, RetainAsPublished: true}))
	f.Fuzz(func(t *testing.T, key, v []byte) {
		if id, filter, err := splitSubKey(key); err == nil {
			if again := subKey(string(id), string(filter)); string(again) != string(key) {
				t.Fatalf("key %x parsed as %q %q, re-encoded %x", key, id, filter, again)
			}
		}
		sub, err := decodeSubscription("f", v)
		if err != nil {
			return
		}
		if again := appendSubOptions(nil, sub); string(again) != string(v) {
			again, err := decodeSubscription("f", again)
			if err != nil || again != sub {
				t.Fatalf("round trip: %+v -> %+v %v", sub, again, err)
			}
		}
	})
}

func FuzzDecodeEntry(f *testing.F) {
	m := storetest.Msg(9, "t", "p")
	f.Add(appendEntry(nil, store.Item{Msg: m, QoS: 1, SubIDs: []uint32{1, 2}}, false, false, 0, false))
	f.Add(appendEntry(nil, store.Item{Msg: m, QoS: 2, Retain: true}, true, true, 7, true))
	f.Add(appendEntry(nil, store.Item{Msg: &message.Message{ID: 1}}, false, true, 65535, false))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, subIDs, msg, err := decodeEntry(b)
		if err != nil {
			return
		}
		hh, herr := decodeEntryHeader(b)
		if herr != nil || hh != h {
			t.Fatalf("header alone %+v %v, with entry %+v", hh, herr, h)
		}
		it := store.Item{Msg: msg, QoS: h.qos, Retain: h.flags&entryRetain != 0, SubIDs: subIDs}
		if msg == nil {
			it.Msg = &message.Message{ID: h.msgID}
		}
		enc := appendEntry(nil, it, h.shared(), h.flags&entryInflight != 0, h.pid, h.flags&entryReleased != 0)
		h2, subIDs2, msg2, err := decodeEntry(enc)
		if err != nil {
			t.Fatalf("re-encoding does not decode: %v", err)
		}
		h.size, h2.size = 0, 0 // the size is recomputed from the item
		if h != h2 || !reflect.DeepEqual(subIDs, subIDs2) || (msg == nil) != (msg2 == nil) {
			t.Fatalf("round trip: %+v %v / %+v %v", h, subIDs, h2, subIDs2)
		}
		if msg != nil {
			sameMessage(t, msg2, msg)
		}
	})
}

func FuzzSplitIDKey(f *testing.F) {
	f.Add(seqKey(idPrefix(kindQueue, "client"), 5), 8)
	f.Add(incomingKey("c", 7), 2)
	f.Fuzz(func(t *testing.T, key []byte, n int) {
		if n < 0 || n > 16 {
			return
		}
		id, suffix, err := splitIDKey(key, n)
		if err != nil {
			return
		}
		again := append(idPrefix(key[0], string(id)), suffix...)
		if string(again) != string(key) {
			t.Fatalf("key %x parsed as %q %x, re-encoded %x", key, id, suffix, again)
		}
	})
}

// FuzzWALScan: the log scanner's own chunk parser and mark decoder take any bytes without
// panicking, and a damage proof never points before where reading stopped.
func FuzzWALScan(f *testing.F) {
	f.Add([]byte("\x00tern-sync-mark-A"), int64(0))
	f.Add(make([]byte, 64), int64(3))
	f.Fuzz(func(t *testing.T, data []byte, from int64) {
		_ = markOf(data)
		if s, ok := confirmDamage(data, 4, from); ok && s <= from {
			t.Fatalf("synced offset %d does not pass %d", s, from)
		}
	})
}
