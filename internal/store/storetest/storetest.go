// Package storetest is the conformance suite every store.Store implementation passes: what is
// written comes back, in order, after a reopen.
package storetest

import (
	"bytes"
	"fmt"
	"reflect"
	"slices"
	"testing"

	"github.com/ternmq/tern/internal/message"
	"github.com/ternmq/tern/internal/store"
)

// Opener returns a fresh store and a function that closes it and opens it again on the same
// state (for a memory store, the same store).
type Opener func(t *testing.T) (st store.Store, reopen func() store.Store)

// Run runs the suite against the stores open makes.
func Run(t *testing.T, open Opener) {
	t.Run("Sessions", func(t *testing.T) { testSessions(t, open) })
	t.Run("QueueOrderAndSize", func(t *testing.T) { testQueue(t, open) })
	t.Run("SharedMessages", func(t *testing.T) { testShared(t, open) })
	t.Run("Inflight", func(t *testing.T) { testInflight(t, open) })
	t.Run("Retained", func(t *testing.T) { testRetained(t, open) })
	t.Run("DeleteSession", func(t *testing.T) { testDelete(t, open) })
	t.Run("MessageFields", func(t *testing.T) { testMessageFields(t, open) })
	t.Run("Records", func(t *testing.T) { testRecords(t, open) })
	t.Run("SequenceNumbersAndMarks", func(t *testing.T) { testSequence(t, open) })
	t.Run("Subscriptions", func(t *testing.T) { testSubscriptions(t, open) })
}

// Msg returns a message with every field set, for round trips.
func Msg(id uint64, topic, payload string) *message.Message {
	return &message.Message{
		ID: id, Topic: topic, Payload: []byte(payload), QoS: 1, Retain: true,
		Time: 1_700_000_000_000_000_000 + int64(id), Expires: 1_800_000_000_000_000_000,
		Sender: "alice",
		Props: message.Properties{
			PayloadFormat: 1, ContentType: "text/plain", ResponseTopic: "re/" + topic,
			CorrelationData: []byte{0, 1, 2},
			User:            []message.UserProperty{{Key: "k", Value: "v"}, {Key: "k", Value: "w"}},
		},
	}
}

func sameMsg(t *testing.T, got, want *message.Message) {
	t.Helper()
	if got == nil {
		t.Fatalf("message %d missing", want.ID)
	}
	type flat struct {
		ID                         uint64
		Topic, Payload, Sender     string
		QoS                        byte
		Retain                     bool
		Time, Expires              int64
		PayloadFormat              byte
		ContentType, ResponseTopic string
		CorrelationData            []byte
		User                       []message.UserProperty
	}
	f := func(m *message.Message) flat {
		return flat{m.ID, m.Topic, string(m.Payload), m.Sender, m.QoS, m.Retain, m.Time, m.Expires,
			m.Props.PayloadFormat, m.Props.ContentType, m.Props.ResponseTopic, m.Props.CorrelationData,
			slices.Clip(m.Props.User)}
	}
	g, w := f(got), f(want)
	if len(g.User) == 0 {
		g.User = nil
	}
	if len(w.User) == 0 {
		w.User = nil
	}
	if !bytes.Equal(g.CorrelationData, w.CorrelationData) || (g.CorrelationData == nil) != (w.CorrelationData == nil) {
		t.Fatalf("message %d correlation data: got %v want %v", want.ID, g.CorrelationData, w.CorrelationData)
	}
	g.CorrelationData, w.CorrelationData = nil, nil
	if !reflect.DeepEqual(g, w) {
		if len(g.Payload) > 64 || len(w.Payload) > 64 {
			g.Payload, w.Payload = fmt.Sprint(len(g.Payload)), fmt.Sprint(len(w.Payload))
		}
		t.Fatalf("message differs:\n got %+v\nwant %+v", g, w)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func records(t *testing.T, st store.Store) map[string]store.SessionRecord {
	t.Helper()
	out := map[string]store.SessionRecord{}
	must(t, st.Sessions().All(func(r store.SessionRecord) error { out[r.ClientID] = r; return nil }))
	return out
}

func testSessions(t *testing.T, open Opener) {
	st, reopen := open(t)
	rec := store.SessionRecord{
		ClientID: "c1", Identity: "alice", Expiry: 3600, Disconnected: 42, Dropped: 7,
		Subscriptions: []store.Subscription{
			{Filter: "a/+", QoS: 1, NoLocal: true, RetainAsPublished: true, RetainHandling: 2, ID: 9},
			{Filter: "$share/g/b/#", QoS: 2},
		},
		Will: &store.Will{Msg: Msg(5, "will/c1", "gone"), Delay: 30},
	}
	must(t, st.Sessions().Put(rec))
	must(t, st.Sessions().Put(store.SessionRecord{ClientID: "c2", Expiry: 0xFFFFFFFF}))
	rec.Dropped = 8 // a later Put replaces the record, and keeps the subscriptions it does not name
	must(t, st.Sessions().Put(store.SessionRecord{ClientID: rec.ClientID, Identity: rec.Identity, Expiry: rec.Expiry,
		Disconnected: rec.Disconnected, Dropped: rec.Dropped, Will: rec.Will}))
	rec.Subscriptions = []store.Subscription{rec.Subscriptions[1], rec.Subscriptions[0]} // by filter
	st = reopen()
	got := records(t, st)
	if len(got) != 2 {
		t.Fatalf("got %d sessions, want 2", len(got))
	}
	g := got["c1"]
	sameMsg(t, g.Will.Msg, rec.Will.Msg)
	g.Will.Msg, rec.Will.Msg = nil, nil
	if !reflect.DeepEqual(g, rec) {
		t.Fatalf("record differs:\n got %+v\nwant %+v", g, rec)
	}
	if got["c2"].Expiry != 0xFFFFFFFF || got["c2"].Will != nil {
		t.Fatalf("c2 = %+v", got["c2"])
	}
	must(t, st.Close())
}

func testQueue(t *testing.T, open Opener) {
	st, reopen := open(t)
	q, err := st.Sessions().Queue("q1")
	must(t, err)
	var want []store.Item
	var bytesWant int64
	for i := 1; i <= 300; i++ {
		it := store.Item{Msg: Msg(uint64(i), "t", string(rune('a'+i%26))), QoS: byte(i % 3), Retain: i%2 == 0}
		if i%5 == 0 {
			it.SubIDs = []uint32{uint32(i), 1}
		}
		must(t, q.Push(it))
		want = append(want, it)
		bytesWant += int64(it.Size())
	}
	for range 100 {
		must(t, q.Pop())
		bytesWant -= int64(want[0].Size())
		want = want[1:]
	}
	if q.Len() != len(want) || q.Bytes() != bytesWant {
		t.Fatalf("len %d bytes %d, want %d %d", q.Len(), q.Bytes(), len(want), bytesWant)
	}
	st = reopen()
	q, err = st.Sessions().Queue("q1")
	must(t, err)
	if q.Len() != len(want) || q.Bytes() != bytesWant {
		t.Fatalf("after reopen: len %d bytes %d, want %d %d", q.Len(), q.Bytes(), len(want), bytesWant)
	}
	for i := 0; i < len(want); i++ {
		w := want[i]
		it, ok, err := q.Front()
		must(t, err)
		if !ok {
			t.Fatalf("queue ended at %d of %d", i, len(want))
		}
		sameMsg(t, it.Msg, w.Msg)
		if it.QoS != w.QoS || it.Retain != w.Retain || !slices.Equal(it.SubIDs, w.SubIDs) {
			t.Fatalf("item %d: got %+v want %+v", i, it, w)
		}
		must(t, q.Pop())
		if i == 50 {
			// Pushing while reading keeps the order.
			extra := store.Item{Msg: Msg(1000, "t", "late"), QoS: 1}
			must(t, q.Push(extra))
			want = append(want, extra)
		}
	}
	if _, ok, _ := q.Front(); ok || q.Len() != 0 || q.Bytes() != 0 {
		t.Fatalf("queue not empty: len %d bytes %d", q.Len(), q.Bytes())
	}
	must(t, q.Push(store.Item{Msg: Msg(2000, "t", "x"), QoS: 1}))
	must(t, q.Clear())
	st = reopen()
	q, err = st.Sessions().Queue("q1")
	must(t, err)
	if q.Len() != 0 {
		t.Fatalf("cleared queue has %d items after reopen", q.Len())
	}
	must(t, st.Close())
}

func testShared(t *testing.T, open Opener) {
	st, reopen := open(t)
	m := Msg(77, "fan/out", "one body")
	var qs []store.Queue
	for _, id := range []string{"s1", "s2", "s3"} {
		q, err := st.Sessions().Queue(id)
		must(t, err)
		must(t, q.Push(store.Item{Msg: m, QoS: 1, Shared: true}))
		qs = append(qs, q)
	}
	f, err := st.Sessions().Inflight("s4")
	must(t, err)
	must(t, f.Put(store.InflightEntry{PacketID: 1, Item: store.Item{Msg: m, QoS: 2, Shared: true}}))
	must(t, qs[0].Pop())
	must(t, st.Sessions().Delete("s2"))
	st = reopen()
	if st.LastMessageID() != 0 && st.LastMessageID() < 77 {
		t.Fatalf("LastMessageID %d below a stored id", st.LastMessageID())
	}
	q3, err := st.Sessions().Queue("s3")
	must(t, err)
	it, ok, err := q3.Front()
	must(t, err)
	if !ok {
		t.Fatal("s3 lost its shared message")
	}
	sameMsg(t, it.Msg, m)
	must(t, q3.Pop())
	f, err = st.Sessions().Inflight("s4")
	must(t, err)
	all, err := f.All()
	must(t, err)
	if len(all) != 1 {
		t.Fatalf("s4 in flight: %d entries", len(all))
	}
	sameMsg(t, all[0].Item.Msg, m)
	must(t, st.Close())
}

func testInflight(t *testing.T, open Opener) {
	st, reopen := open(t)
	f, err := st.Sessions().Inflight("i1")
	must(t, err)
	for _, pid := range []uint16{9, 3, 65535, 1} {
		must(t, f.Put(store.InflightEntry{PacketID: pid, Item: store.Item{Msg: Msg(uint64(pid), "t", "p"), QoS: 2, SubIDs: []uint32{4}}}))
	}
	e := store.InflightEntry{PacketID: 3, Item: store.Item{Msg: Msg(3, "t", "p"), QoS: 2, SubIDs: []uint32{4}}, Released: true}
	must(t, f.Put(e))
	must(t, f.Delete(65535))
	must(t, f.AddIncoming(7))
	must(t, f.AddIncoming(8))
	must(t, f.AddIncoming(7))
	must(t, f.DeleteIncoming(8))
	st = reopen()
	f, err = st.Sessions().Inflight("i1")
	must(t, err)
	all, err := f.All()
	must(t, err)
	var pids []uint16
	for _, e := range all {
		pids = append(pids, e.PacketID)
		if e.Released != (e.PacketID == 3) {
			t.Fatalf("pid %d released=%v", e.PacketID, e.Released)
		}
		if e.Item.QoS != 2 || !slices.Equal(e.Item.SubIDs, []uint32{4}) {
			t.Fatalf("pid %d item %+v", e.PacketID, e.Item)
		}
	}
	if !slices.Equal(pids, []uint16{9, 3, 1}) {
		t.Fatalf("in-flight order %v, want [9 3 1] (first-put order)", pids)
	}
	in, err := f.Incoming()
	must(t, err)
	if !slices.Equal(in, []uint16{7}) {
		t.Fatalf("incoming %v, want [7]", in)
	}
	must(t, st.Close())
}

func testRetained(t *testing.T, open Opener) {
	st, reopen := open(t)
	must(t, st.Retained().Set(Msg(1, "r/a", "1")))
	must(t, st.Retained().Set(Msg(2, "r/b", "2")))
	must(t, st.Retained().Set(Msg(3, "r/a", "3")))
	must(t, st.Retained().Delete("r/b"))
	st = reopen()
	got := map[string]*message.Message{}
	must(t, st.Retained().All(func(m *message.Message) error { got[m.Topic] = m; return nil }))
	if len(got) != 1 {
		t.Fatalf("retained %d topics, want 1", len(got))
	}
	sameMsg(t, got["r/a"], Msg(3, "r/a", "3"))
	must(t, st.Close())
}

func testDelete(t *testing.T, open Opener) {
	st, reopen := open(t)
	must(t, st.Sessions().Put(store.SessionRecord{ClientID: "d", Expiry: 10}))
	q, err := st.Sessions().Queue("d")
	must(t, err)
	must(t, q.Push(store.Item{Msg: Msg(1, "t", "x"), QoS: 1}))
	f, err := st.Sessions().Inflight("d")
	must(t, err)
	must(t, f.Put(store.InflightEntry{PacketID: 1, Item: store.Item{Msg: Msg(2, "t", "y"), QoS: 1}}))
	must(t, f.AddIncoming(5))
	// A session whose id extends the deleted one's must survive the delete.
	must(t, st.Sessions().Put(store.SessionRecord{ClientID: "dd", Expiry: 10}))
	qq, err := st.Sessions().Queue("dd")
	must(t, err)
	must(t, qq.Push(store.Item{Msg: Msg(3, "t", "z"), QoS: 1}))
	must(t, st.Sessions().Delete("d"))
	st = reopen()
	recs := records(t, st)
	if _, ok := recs["d"]; ok || len(recs) != 1 {
		t.Fatalf("sessions after delete: %v", recs)
	}
	q, err = st.Sessions().Queue("d")
	must(t, err)
	f, err = st.Sessions().Inflight("d")
	must(t, err)
	all, _ := f.All()
	in, _ := f.Incoming()
	if q.Len() != 0 || len(all) != 0 || len(in) != 0 {
		t.Fatalf("deleted session kept state: queue %d inflight %d incoming %d", q.Len(), len(all), len(in))
	}
	qq, err = st.Sessions().Queue("dd")
	must(t, err)
	if qq.Len() != 1 {
		t.Fatalf("neighbouring session lost its queue")
	}
	must(t, st.Close())
}

func testMessageFields(t *testing.T, open Opener) {
	st, reopen := open(t)
	q, err := st.Sessions().Queue("m")
	must(t, err)
	bare := &message.Message{ID: 10, Topic: "bare", QoS: 0}
	full := Msg(11, "full/topic", "payload")
	big := Msg(12, "big", string(bytes.Repeat([]byte{0xAB}, 256<<10)))
	for _, m := range []*message.Message{bare, full, big} {
		must(t, q.Push(store.Item{Msg: m, QoS: m.QoS}))
	}
	if err := st.Sync().Wait(); err != nil {
		t.Fatalf("sync: %v", err)
	}
	st = reopen()
	q, err = st.Sessions().Queue("m")
	must(t, err)
	for _, m := range []*message.Message{bare, full, big} {
		it, ok, err := q.Front()
		must(t, err)
		if !ok {
			t.Fatalf("message %d missing", m.ID)
		}
		sameMsg(t, it.Msg, m)
		must(t, q.Pop())
	}
	must(t, st.Close())
}

// testSequence: items keep their sequence numbers in queues and in flight, shared or not, and a
// session's marks survive a reopen and go with the session.
func testSequence(t *testing.T, open Opener) {
	st, reopen := open(t)
	ss := st.Sessions()
	must(t, ss.Put(store.SessionRecord{ClientID: "seq"}))
	q, err := ss.Queue("seq")
	must(t, err)
	must(t, q.Push(store.Item{Msg: Msg(1, "t", "a"), QoS: 1, Seq: 41}))
	must(t, q.Push(store.Item{Msg: Msg(2, "t", "b"), QoS: 1, Seq: 1 << 40, Shared: true}))
	must(t, q.Push(store.Item{Msg: Msg(3, "t", "c"), QoS: 0}))
	f, err := ss.Inflight("seq")
	must(t, err)
	must(t, f.Put(store.InflightEntry{PacketID: 5, Item: store.Item{Msg: Msg(4, "t", "d"), QoS: 1, Seq: 40}}))
	must(t, ss.PutMarks("seq", store.Marks{Sent: 1 << 40, Taken: 7}))
	must(t, ss.PutMarks("other", store.Marks{Taken: 3}))

	st = reopen()
	ss = st.Sessions()
	q, err = ss.Queue("seq")
	must(t, err)
	for _, want := range []uint64{41, 1 << 40, 0} {
		it, ok, err := q.Front()
		must(t, err)
		if !ok || it.Seq != want {
			t.Fatalf("queued item seq %d (present %v), want %d", it.Seq, ok, want)
		}
		must(t, q.Pop())
	}
	f, err = ss.Inflight("seq")
	must(t, err)
	all, err := f.All()
	must(t, err)
	if len(all) != 1 || all[0].Item.Seq != 40 {
		t.Fatalf("in flight %+v, want one item with seq 40", all)
	}
	m, err := ss.Marks("seq")
	must(t, err)
	if m != (store.Marks{Sent: 1 << 40, Taken: 7}) {
		t.Fatalf("marks %+v", m)
	}
	must(t, ss.Delete("seq"))
	if m, err := ss.Marks("seq"); err != nil || m != (store.Marks{}) {
		t.Fatalf("marks after Delete: %+v %v", m, err)
	}
	if m, err := ss.Marks("other"); err != nil || m.Taken != 3 {
		t.Fatalf("another session's marks: %+v %v", m, err)
	}
	if m, err := ss.Marks("never"); err != nil || m != (store.Marks{}) {
		t.Fatalf("marks of an unknown session: %+v %v", m, err)
	}
	must(t, st.Close())
}
