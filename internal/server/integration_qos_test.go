package server_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/eclipse/paho.golang/paho"

	"github.com/ternmq/tern/internal/mqtt/packet"
)

// TestQoSEndToEnd publishes at QoS 0, 1 and 2 to subscriptions of QoS 0, 1 and 2: each message
// arrives once, at the lower of the two QoS levels.
func TestQoSEndToEnd(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	sub := v5(t, srv, uniqueID("qsub"))
	for s := byte(0); s <= 2; s++ {
		sub.sub(fmt.Sprintf("qos/%d", s), s)
	}
	sub.sub("$m", 2)
	pub := v5(t, srv, uniqueID("qpub"))
	type want struct {
		topic, payload string
		qos            byte
	}
	var wants []want
	for p := byte(0); p <= 2; p++ {
		for s := byte(0); s <= 2; s++ {
			topic := fmt.Sprintf("qos/%d", s)
			payload := fmt.Sprintf("pub %d sub %d", p, s)
			resp := pub.pub(topic, p, payload)
			if p > 0 && resp.ReasonCode != 0 {
				t.Errorf("QoS %d publish: reason %#x", p, resp.ReasonCode)
			}
			wants = append(wants, want{topic, payload, min(p, s)})
		}
	}
	pub.pub("$m", 2, "marker")
	got := sub.until("$m")
	if len(got) != len(wants) {
		t.Fatalf("got %d messages, want %d: %s", len(got), len(wants), describe(got))
	}
	for i, w := range wants {
		if got[i].Topic != w.topic || string(got[i].Payload) != w.payload || got[i].QoS != w.qos {
			t.Errorf("message %d: got %s %q QoS %d, want %s %q QoS %d", i, got[i].Topic, got[i].Payload, got[i].QoS, w.topic, w.payload, w.qos)
		}
	}
}

// TestReceiveMaximumWindow: a subscriber announcing Receive Maximum 2 gets at most two
// unacknowledged QoS 1 messages; the third waits for an acknowledgement. QoS 0 messages are not
// held back, which gives the test its barrier.
func TestReceiveMaximumWindow(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	sub := connectV5(t, dialTCP(t, srv.Addr("mqtt")), &paho.Connect{
		ClientID: uniqueID("window"), CleanStart: true,
		Properties: &paho.ConnectProperties{ReceiveMaximum: u16(2)},
	}, func(cc *paho.ClientConfig) { cc.EnableManualAcknowledgment = true })
	sub.sub("win/q1", 1)
	sub.sub("win/q0", 0)
	pub := v5(t, srv, uniqueID("winpub"))
	for i := 1; i <= 3; i++ {
		pub.pub("win/q1", 1, fmt.Sprint(i))
	}
	pub.pub("win/q0", 0, "barrier")
	held := sub.until("win/q0")
	if got := payloads(held); !slices.Equal(got, []string{"1", "2"}) {
		t.Fatalf("with receive maximum 2 and no acks, got %q before the QoS 0 barrier, want [1 2]", got)
	}
	if err := sub.c.Ack(held[0]); err != nil {
		t.Fatal(err)
	}
	m := sub.expect("win/q1", "3")
	pub.pub("win/q0", 0, "barrier2")
	if got := sub.until("win/q0"); len(got) != 0 {
		t.Errorf("after one ack got more than the third message: %s", describe(got))
	}
	for _, p := range []*paho.Publish{held[1], m} {
		if err := sub.c.Ack(p); err != nil {
			t.Fatal(err)
		}
	}
	// With the window free again, a burst flows.
	for i := 4; i <= 6; i++ {
		pub.pub("win/q1", 1, fmt.Sprint(i))
	}
	for i := 4; i <= 6; i++ {
		m := sub.expect("win/q1", fmt.Sprint(i))
		if err := sub.c.Ack(m); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRedeliveryOnReconnect: QoS 1 messages a persistent subscriber never acknowledged are sent
// again on reconnect, in order, with DUP set and their packet ids; a QoS 2 message that got as
// far as PUBREC has its PUBREL re-sent. Once acknowledged they are not sent a third time.
func TestRedeliveryOnReconnect(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	id := uniqueID("redeliver")
	connect := func(clean bool) (*rawClient, *packet.Connack) {
		c := &packet.Connect{ClientID: []byte(id), CleanStart: clean, KeepAlive: 30}
		c.Props.SessionExpiry = 300
		c.Props.Set(packet.PropSessionExpiry)
		return rawV5(t, srv, c)
	}
	r, _ := connect(true)
	r.subscribe(1, 0, packet.Subscription{Filter: []byte("rd/1"), QoS: 1}, packet.Subscription{Filter: []byte("rd/2"), QoS: 2})

	pub := v5(t, srv, uniqueID("rdpub"))
	pub.pub("rd/1", 1, "a")
	pub.pub("rd/1", 1, "b")
	pub.pub("rd/2", 2, "c")

	a := r.expectPublish("rd/1", "a")
	b := r.expectPublish("rd/1", "b")
	c := r.expectPublish("rd/2", "c")
	for _, p := range []*packet.Publish{a, b, c} {
		if p.Dup {
			t.Errorf("first delivery of %q has DUP set", p.Payload)
		}
	}
	if c.QoS != 2 {
		t.Fatalf("QoS 2 message delivered at QoS %d", c.QoS)
	}
	r.send(&packet.Pubrec{PacketID: c.PacketID})
	if rel := expectPacket[*packet.Pubrel](r); rel.PacketID != c.PacketID {
		t.Fatalf("PUBREL for %d, want %d", rel.PacketID, c.PacketID)
	}
	// Go away without acknowledging a and b, nor completing c.
	before := srv.Broker.Stats().Connected.Load()
	_ = r.conn.Close()
	waitConnected(t, srv, before-1)

	r, ack := connect(false)
	if !ack.SessionPresent {
		t.Fatal("Session Present = false on reconnect")
	}
	a2 := r.expectPublish("rd/1", "a")
	b2 := r.expectPublish("rd/1", "b")
	for _, pair := range [][2]*packet.Publish{{a, a2}, {b, b2}} {
		if !pair[1].Dup {
			t.Errorf("redelivery of %q has no DUP flag", pair[1].Payload)
		}
		if pair[1].PacketID != pair[0].PacketID {
			t.Errorf("redelivery of %q has packet id %d, first delivery %d", pair[1].Payload, pair[1].PacketID, pair[0].PacketID)
		}
		if pair[1].QoS != 1 {
			t.Errorf("redelivery of %q at QoS %d", pair[1].Payload, pair[1].QoS)
		}
	}
	if rel := expectPacket[*packet.Pubrel](r); rel.PacketID != c.PacketID {
		t.Fatalf("re-sent PUBREL for %d, want %d", rel.PacketID, c.PacketID)
	}
	r.send(&packet.Puback{PacketID: a2.PacketID}, &packet.Puback{PacketID: b2.PacketID}, &packet.Pubcomp{PacketID: c.PacketID})
	r.send(&packet.Disconnect{})
	r.expectClosed()
	waitConnected(t, srv, before-1)

	r, _ = connect(false)
	pub.pub("rd/1", 1, "marker")
	if p := r.expectPublish("rd/1", "marker"); p.Dup {
		t.Error("new message after acknowledged ones has DUP set")
	}
}
