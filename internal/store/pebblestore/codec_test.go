package pebblestore

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/ternmq/tern/internal/message"
	"github.com/ternmq/tern/internal/store"
	"github.com/ternmq/tern/internal/store/storetest"
)

// sampleMessages covers the encodings' corners: empty fields, nil against empty correlation
// data, negative times, bytes that are not UTF-8.
func sampleMessages() []*message.Message {
	return []*message.Message{
		{ID: 1, Topic: "bare"},
		storetest.Msg(42, "full/topic", "payload"),
		{ID: 1<<64 - 1, Topic: "\xff\x00", Payload: []byte{0, 0xff}, QoS: 2, Time: -5, Expires: -1 << 63,
			Props: message.Properties{CorrelationData: []byte{}, User: []message.UserProperty{{}}}},
		storetest.Msg(7, "big", string(bytes.Repeat([]byte{0xAB}, 70_000))),
	}
}

// flatten compares messages field by field without Frames and without nil-against-empty noise
// where the encoding does not keep it (Payload, User).
func flatten(m *message.Message) any {
	c := *m.Clone()
	if len(c.Payload) == 0 {
		c.Payload = nil
	}
	if len(c.Props.User) == 0 {
		c.Props.User = nil
	}
	corr := c.Props.CorrelationData
	c.Props.CorrelationData = nil
	return []any{c.ID, c.Topic, string(c.Payload), c.QoS, c.Retain, c.Time, c.Expires, c.Sender,
		c.Props.PayloadFormat, c.Props.ContentType, c.Props.ResponseTopic, c.Props.User,
		corr == nil, string(corr)}
}

func sameMessage(t *testing.T, got, want *message.Message) {
	t.Helper()
	if !reflect.DeepEqual(flatten(got), flatten(want)) {
		t.Fatalf("message differs:\n got %+v\nwant %+v", flatten(got), flatten(want))
	}
}

func TestMessageRoundTrip(t *testing.T) {
	for _, m := range sampleMessages() {
		enc := appendMessage(nil, m)
		got, err := decodeMessage(enc)
		if err != nil {
			t.Fatalf("decode %d: %v", m.ID, err)
		}
		sameMessage(t, got, m)
		// The decoded message owns its memory: the buffer it came from may be reused.
		for i := range enc {
			enc[i] = 0xEE
		}
		sameMessage(t, got, m)
	}
}

func TestSessionRoundTrip(t *testing.T) {
	recs := []store.SessionRecord{
		{ClientID: "c"},
		{ClientID: "c1", Identity: "alice", Expiry: 0xFFFFFFFF, Disconnected: -3, Dropped: 1 << 60,
			Subscriptions: []store.Subscription{
				{Filter: "a/+", QoS: 1, NoLocal: true, RetainAsPublished: true, RetainHandling: 2, ID: 0xFFFFFFFF},
				{Filter: "$share/g/#", QoS: 2},
			},
			Will: &store.Will{Msg: storetest.Msg(5, "will", "bye"), Delay: 30}},
	}
	for _, rec := range recs {
		enc := appendSession(nil, rec)
		got, err := decodeSession(enc)
		if err != nil {
			t.Fatalf("decode %s: %v", rec.ClientID, err)
		}
		if (got.Will == nil) != (rec.Will == nil) {
			t.Fatalf("will: got %v want %v", got.Will, rec.Will)
		}
		if rec.Will != nil {
			sameMessage(t, got.Will.Msg, rec.Will.Msg)
			gw, rw := *got.Will, *rec.Will
			gw.Msg, rw.Msg = nil, nil
			got.Will, rec.Will = &gw, &rw
		}
		if !reflect.DeepEqual(got, rec) {
			t.Fatalf("record differs:\n got %+v\nwant %+v", got, rec)
		}
	}
}

func TestEntryRoundTrip(t *testing.T) {
	m := storetest.Msg(9, "t", "p")
	it := store.Item{Msg: m, QoS: 2, Retain: true, SubIDs: []uint32{1, 0xFFFFFFFF}}
	for _, c := range []struct {
		shared, inflight, released bool
		pid                        uint16
	}{{}, {shared: true}, {inflight: true, pid: 65535}, {shared: true, inflight: true, released: true, pid: 1}} {
		enc := appendEntry(nil, it, c.shared, c.inflight, c.pid, c.released)
		h, subIDs, msg, err := decodeEntry(enc)
		if err != nil {
			t.Fatalf("%+v: %v", c, err)
		}
		if h.shared() != c.shared || h.qos != 2 || h.flags&entryRetain == 0 || h.pid != c.pid ||
			(h.flags&entryReleased != 0) != c.released || h.msgID != 9 || h.size != int64(it.Size()) {
			t.Fatalf("%+v: header %+v", c, h)
		}
		if !reflect.DeepEqual(subIDs, it.SubIDs) {
			t.Fatalf("%+v: sub ids %v", c, subIDs)
		}
		if c.shared != (msg == nil) {
			t.Fatalf("%+v: message %v", c, msg)
		}
		if msg != nil {
			sameMessage(t, msg, m)
		}
	}
}

// TestDecodersRefuseDamage feeds every truncation and a flipped byte at every offset of real
// encodings: each decoder returns a value or errCorrupt and never panics.
func TestDecodersRefuseDamage(t *testing.T) {
	m := storetest.Msg(3, "a/b", "hello")
	encs := map[string][]byte{
		"message": appendMessage(nil, m),
		"session": appendSession(nil, store.SessionRecord{ClientID: "c", Subscriptions: []store.Subscription{{Filter: "x"}},
			Will: &store.Will{Msg: m}}),
		"entry":    appendEntry(nil, store.Item{Msg: m, SubIDs: []uint32{5}}, false, true, 3, true),
		"shared":   appendEntry(nil, store.Item{Msg: m}, true, false, 0, false),
		"trailing": append(appendMessage(nil, m), 0),
	}
	decoders := map[string]func([]byte) error{
		"message": func(b []byte) error { _, err := decodeMessage(b); return err },
		"session": func(b []byte) error { _, err := decodeSession(b); return err },
		"entry":   func(b []byte) error { _, _, _, err := decodeEntry(b); return err },
	}
	for name, enc := range encs {
		for dname, dec := range decoders {
			for i := 0; i <= len(enc); i++ {
				if err := dec(enc[:i]); err != nil && !errors.Is(err, errCorrupt) {
					t.Fatalf("%s as %s cut at %d: %v", name, dname, i, err)
				}
				if i < len(enc) {
					b := bytes.Clone(enc)
					b[i] ^= 0xff
					_ = dec(b)
				}
			}
		}
	}
	if _, err := decodeMessage(encs["trailing"]); err == nil {
		t.Fatal("trailing byte accepted")
	}
	for i := range len(encs["message"]) {
		if _, err := decodeMessage(encs["message"][:i]); err == nil {
			t.Fatalf("message cut at %d accepted", i)
		}
	}
}

func TestKeys(t *testing.T) {
	for _, id := range []string{"", "d", "dd", "\xff\xff", string(bytes.Repeat([]byte("x"), 300))} {
		k := seqKey(idPrefix(kindQueue, id), 1<<40+3)
		got, suffix, err := splitIDKey(k, 8)
		if err != nil || string(got) != id || seqOf(k) != 1<<40+3 || len(suffix) != 8 {
			t.Fatalf("%q: got %q %v %v", id, got, seqOf(k), err)
		}
		p := idPrefix(kindQueue, id)
		if end := prefixEnd(p); bytes.Compare(k, end) >= 0 || bytes.Compare(k, p) < 0 {
			t.Fatalf("%q: key %x outside [%x, %x)", id, k, p, end)
		}
	}
	// "d"'s queue range holds none of "dd"'s keys.
	p := idPrefix(kindQueue, "d")
	k := seqKey(idPrefix(kindQueue, "dd"), 0)
	if bytes.Compare(k, p) >= 0 && bytes.Compare(k, prefixEnd(p)) < 0 {
		t.Fatal(`"dd" inside "d"'s range`)
	}
	if prefixEnd([]byte{0xff}) != nil || !bytes.Equal(prefixEnd([]byte{1, 0xff}), []byte{2}) {
		t.Fatal("prefixEnd")
	}
}
