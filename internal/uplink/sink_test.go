package uplink

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/linkprop"
	"github.com/ternmq/tern/internal/message"
	"github.com/ternmq/tern/internal/mqtt/packet"
)

// fakeWire records what the sink writes.
type fakeWire struct {
	mu     sync.Mutex
	wrote  []uint16
	result broker.SendResult
}

func (w *fakeWire) writePublish(d broker.Delivery, _ string, _ int) broker.SendResult {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.result != broker.Sent {
		return w.result
	}
	w.wrote = append(w.wrote, d.PacketID)
	return broker.Sent
}

func (w *fakeWire) ids() []uint16 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.wrote)
}

// fakeTrunk records what the sink tells the core.
type fakeTrunk struct {
	mu      sync.Mutex
	acked   []uint16
	drained chan struct{}
}

func newFakeTrunk() *fakeTrunk { return &fakeTrunk{drained: make(chan struct{}, 16)} }

func (f *fakeTrunk) Acked(pid uint16) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.acked = append(f.acked, pid)
	return true
}

func (f *fakeTrunk) Drained() { f.drained <- struct{}{} }

func (f *fakeTrunk) wasDrained() bool {
	select {
	case <-f.drained:
		return true
	default:
		return false
	}
}

func qos1(pid uint16, dup bool) broker.Delivery {
	return broker.Delivery{Msg: &message.Message{Topic: "ns/t"}, QoS: 1, PacketID: pid, Dup: dup, Seq: uint64(pid)}
}

// The sink keeps to the window: beyond it a new delivery is Busy, and the core hears it may send
// again once an acknowledgement makes room.
func TestSinkWindow(t *testing.T) {
	w, tr := &fakeWire{}, newFakeTrunk()
	k := newSink(w, "r1", 2, 0, 0, &Stats{})
	k.trunk = tr
	for pid, want := range map[uint16]broker.SendResult{1: broker.Sent, 2: broker.Sent} {
		if r := k.Send(qos1(pid, false)); r != want {
			t.Fatalf("send %d: %v", pid, r)
		}
	}
	if r := k.Send(qos1(3, false)); r != broker.Busy {
		t.Fatalf("beyond the window: %v, want Busy", r)
	}
	// QoS 0 is not counted in the window.
	if r := k.Send(broker.Delivery{Msg: &message.Message{Topic: "ns/t"}}); r != broker.Sent {
		t.Fatalf("QoS 0: %v", r)
	}
	if tr.wasDrained() {
		t.Fatal("drained before any room")
	}
	k.acked(1)
	if !tr.wasDrained() || !slices.Equal(tr.acked, []uint16{1}) {
		t.Fatalf("after an acknowledgement: drained %v, acked %v", tr.wasDrained(), tr.acked)
	}
	if r := k.Send(qos1(3, false)); r != broker.Sent {
		t.Fatalf("after room: %v", r)
	}
}

// After a reconnect the core sends what was in flight again at once; what the window (now
// smaller, say) cannot take waits in the sink, in order, and nothing new overtakes it.
func TestSinkHoldsResendsBeyondTheWindow(t *testing.T) {
	w, tr := &fakeWire{}, newFakeTrunk()
	k := newSink(w, "r1", 2, 0, 0, &Stats{})
	k.trunk = tr
	for _, pid := range []uint16{5, 6, 7, 8} {
		if r := k.Send(qos1(pid, true)); r != broker.Sent {
			t.Fatalf("re-send %d: %v (the core does not look)", pid, r)
		}
	}
	if got := w.ids(); !slices.Equal(got, []uint16{5, 6}) {
		t.Fatalf("wrote %v, want the window's worth [5 6]", got)
	}
	if r := k.Send(qos1(9, false)); r != broker.Busy {
		t.Fatalf("a new delivery while re-sends wait: %v", r)
	}
	k.acked(5)
	if got := w.ids(); !slices.Equal(got, []uint16{5, 6, 7}) {
		t.Fatalf("after an acknowledgement: %v", got)
	}
	if tr.wasDrained() {
		t.Fatal("drained while re-sends still wait")
	}
	k.acked(6)
	k.acked(7)
	if got := w.ids(); !slices.Equal(got, []uint16{5, 6, 7, 8}) || !tr.wasDrained() {
		t.Fatalf("wrote %v, drained: the re-sends are out and there is room", got)
	}
}

// drain_rate paces deliveries: past the burst a new one is Busy, and the core hears when the
// next may go.
func TestSinkPaces(t *testing.T) {
	w, tr := &fakeWire{}, newFakeTrunk()
	k := newSink(w, "r1", 100, 0, 10, &Stats{}) // 10/s: a burst of 1
	k.trunk = tr
	defer k.close()
	if r := k.Send(qos1(1, false)); r != broker.Sent {
		t.Fatal(r)
	}
	if r := k.Send(qos1(2, false)); r != broker.Busy {
		t.Fatalf("past the burst: %v", r)
	}
	select {
	case <-tr.drained:
	case <-time.After(5 * time.Second):
		t.Fatal("the pacing never gave room")
	}
	if r := k.Send(qos1(2, false)); r != broker.Sent {
		t.Fatalf("after the pause: %v", r)
	}
}

// A delivery too large for the designated router is discarded (the core counts it) and counted.
func TestSinkTooLarge(t *testing.T) {
	w, tr := &fakeWire{result: broker.TooLarge}, newFakeTrunk()
	st := &Stats{}
	k := newSink(w, "r1", 2, 10, 0, st)
	k.trunk = tr
	if r := k.Send(qos1(1, false)); r != broker.TooLarge || st.TooLarge.Load() != 1 {
		t.Fatalf("%v, counted %d", r, st.TooLarge.Load())
	}
	if r := k.Send(qos1(2, false)); r != broker.TooLarge {
		t.Fatalf("the window was taken by a discarded delivery: %v", r)
	}
}

// What goes up: QoS 2 as QoS 1 with tern-qos, the number, the origin and the sender, the message's
// own properties and remaining expiry, and no link property a publisher put on it.
func TestAppendPublish(t *testing.T) {
	m := &message.Message{Topic: "ns/t", Payload: []byte("x"), Sender: "alice"}
	m.Props.ContentType = "text/plain"
	m.Props.User = []message.UserProperty{{Key: "k", Value: "v"}, {Key: "tern-seq", Value: "999"}, {Key: "tern-origin", Value: "forged"}}
	d := broker.Delivery{Msg: m, QoS: 2, PacketID: 7, Retain: true, Expiry: 30, Seq: 42}
	buf, _, err := appendPublish(nil, &packet.Publish{}, nil, d, "site-a")
	if err != nil {
		t.Fatal(err)
	}
	pk, err := packet.Decode(buf, packet.V5)
	if err != nil {
		t.Fatal(err)
	}
	p := pk.(*packet.Publish)
	if p.QoS != 1 || p.PacketID != 7 || !p.Retain || string(p.Topic) != "ns/t" || p.Props.MessageExpiry != 30 ||
		string(p.Props.ContentType) != "text/plain" {
		t.Fatalf("publish %+v", p)
	}
	var users []message.UserProperty
	for _, u := range p.Props.User {
		users = append(users, message.UserProperty{Key: string(u.Key), Value: string(u.Value)})
	}
	tags, rest, err := linkprop.Split(users)
	if err != nil {
		t.Fatalf("%v in %+v", err, users)
	}
	if tags != (linkprop.Tags{Origin: "site-a", Seq: 42, QoS2: true, Sender: "alice"}) {
		t.Errorf("tags %+v", tags)
	}
	if len(rest) != 1 || rest[0] != (message.UserProperty{Key: "k", Value: "v"}) {
		t.Errorf("the message's own properties %+v", rest)
	}
	// QoS 0: no packet id, no number, no duplicate flag.
	buf, _, _ = appendPublish(nil, &packet.Publish{}, nil, broker.Delivery{Msg: m}, "site-a")
	if pk, err := packet.Decode(buf, packet.V5); err != nil || pk.(*packet.Publish).QoS != 0 {
		t.Fatalf("QoS 0: %+v %v", pk, err)
	}
}
