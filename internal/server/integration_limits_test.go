package server_test

import (
	"context"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/ternmq/tern/internal/config"
	"github.com/ternmq/tern/internal/mqtt/packet"
)

// TestMaximumQoS: with mqtt.max_qos 1 the CONNACK says so, a QoS 2 subscription is granted QoS 1,
// and a QoS 2 PUBLISH (which the client was told not to send) ends the connection with 0x9B.
func TestMaximumQoS(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *config.Config) { c.MQTT.MaxQoS = 1 })
	c := v5(t, srv, uniqueID("maxqos"))
	if mq := c.ack.Properties.MaximumQoS; mq == nil || *mq != 1 {
		t.Fatalf("CONNACK maximum QoS %v, want 1", mq)
	}
	if sa := c.subscribe(paho.SubscribeOptions{Topic: "mq/t", QoS: 2}); sa.Reasons[0] != 1 {
		t.Errorf("QoS 2 subscription granted %#x, want 1", sa.Reasons[0])
	}
	c.pub("mq/t", 1, "one")
	if m := c.expect("mq/t", "one"); m.QoS != 1 {
		t.Errorf("delivered at QoS %d", m.QoS)
	}

	r, _ := rawV5(t, srv, connectPacket(uniqueID("qos2")))
	r.send(&packet.Publish{Topic: []byte("mq/t"), QoS: 2, PacketID: 1, Payload: []byte("two")})
	if p := r.next(); p.Type() != packet.DISCONNECT || p.(*packet.Disconnect).Reason != packet.QoSNotSupported {
		t.Errorf("QoS 2 PUBLISH above the announced maximum QoS 1: got %s %+v, want DISCONNECT 0x9B", packet.TypeName(p.Type()), p)
	} else {
		r.expectClosed()
	}
	// A will above the maximum is refused at CONNECT.
	w := newRaw(t, dialTCP(t, srv.Addr("mqtt")), packet.V5)
	wc := willConnect(uniqueID("will2"), "will/x", "x", 0, 0)
	wc.WillQoS = 2
	w.send(wc)
	if ack := expectConnack(w); ack.Reason != packet.QoSNotSupported {
		t.Errorf("will QoS 2 above the maximum: CONNACK %v, want 0x9B", ack.Reason)
	}
}

// TestRetainNotAvailable: with mqtt.retain_available false the CONNACK says so and a retained
// PUBLISH ends the connection with 0x9A.
func TestRetainNotAvailable(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *config.Config) { c.MQTT.RetainAvailable = false })
	c := v5(t, srv, uniqueID("noretain"))
	if c.ack.Properties.RetainAvailable {
		t.Error("CONNACK says retain is available")
	}
	r, _ := rawV5(t, srv, connectPacket(uniqueID("retainer")))
	r.send(&packet.Publish{Topic: []byte("nr/t"), QoS: 1, PacketID: 1, Retain: true, Payload: []byte("x")})
	seen := r.expectClosed()
	if len(seen) != 1 {
		t.Fatalf("got %v, want one DISCONNECT 0x9A", seen)
	}
	if d, ok := seen[0].(*packet.Disconnect); !ok || d.Reason != packet.RetainNotSupported {
		t.Errorf("got %+v, want DISCONNECT 0x9A", seen[0])
	}
}

// TestSessionExpiryCapped: session.max_expiry caps the interval a client asks for and the
// CONNACK tells the client the value in force.
func TestSessionExpiryCapped(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *config.Config) { c.Session.MaxExpiry = 10 * time.Second })
	c := persistentV5(t, srv, uniqueID("capped"), true, 3600)
	if se := c.ack.Properties.SessionExpiryInterval; se == nil || *se != 10 {
		t.Errorf("CONNACK session expiry %v, want 10", se)
	}
	ok := persistentV5(t, srv, uniqueID("under"), true, 5)
	if se := ok.ack.Properties.SessionExpiryInterval; se != nil && *se != 5 {
		t.Errorf("CONNACK session expiry %d for a request within the cap", *se)
	}
}

// TestServerReceiveMaximum: the server announces mqtt.receive_maximum and a client exceeding it
// with unreleased QoS 2 publishes is disconnected with 0x93.
func TestServerReceiveMaximum(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *config.Config) { c.MQTT.ReceiveMaximum = 2 })
	r, ack := rawV5(t, srv, connectPacket(uniqueID("greedy")))
	if !ack.Props.Has(packet.PropReceiveMax) || ack.Props.ReceiveMax != 2 {
		t.Fatalf("CONNACK receive maximum %d (present %v), want 2", ack.Props.ReceiveMax, ack.Props.Has(packet.PropReceiveMax))
	}
	for pid := uint16(1); pid <= 2; pid++ {
		r.send(&packet.Publish{Topic: []byte("rm/t"), QoS: 2, PacketID: pid, Payload: []byte("x")})
		if rec := expectPacket[*packet.Pubrec](r); rec.PacketID != pid {
			t.Fatalf("PUBREC %d, want %d", rec.PacketID, pid)
		}
	}
	// Releasing one makes room for one more.
	r.send(&packet.Pubrel{PacketID: 1})
	expectPacket[*packet.Pubcomp](r)
	r.send(&packet.Publish{Topic: []byte("rm/t"), QoS: 2, PacketID: 3, Payload: []byte("x")})
	expectPacket[*packet.Pubrec](r)
	r.send(&packet.Publish{Topic: []byte("rm/t"), QoS: 2, PacketID: 4, Payload: []byte("x")})
	seen := r.expectClosed()
	if len(seen) != 1 {
		t.Fatalf("third unreleased QoS 2 publish: got %v, want DISCONNECT 0x93", seen)
	}
	if d, ok := seen[0].(*packet.Disconnect); !ok || d.Reason != packet.ReceiveMaximumExceeded {
		t.Errorf("got %+v, want DISCONNECT 0x93", seen[0])
	}
}

// TestExactlyOnceInbound: a QoS 2 PUBLISH re-sent (DUP) before PUBREL is acknowledged again but
// delivered once; after PUBCOMP the packet id can carry a new message.
func TestExactlyOnceInbound(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	sub := v5(t, srv, uniqueID("once"))
	sub.sub("eo/t", 2)
	sub.sub("$m", 1)
	r, _ := rawV5(t, srv, connectPacket(uniqueID("twice")))
	first := &packet.Publish{Topic: []byte("eo/t"), QoS: 2, PacketID: 5, Payload: []byte("one")}
	r.send(first)
	expectPacket[*packet.Pubrec](r)
	again := *first
	again.Dup = true
	r.send(&again)
	if rec := expectPacket[*packet.Pubrec](r); rec.PacketID != 5 || rec.Reason.IsError() {
		t.Errorf("PUBREC for the duplicate %+v", rec)
	}
	r.send(&packet.Pubrel{PacketID: 5})
	expectPacket[*packet.Pubcomp](r)
	r.send(&packet.Publish{Topic: []byte("eo/t"), QoS: 2, PacketID: 5, Payload: []byte("two")})
	expectPacket[*packet.Pubrec](r)
	r.send(&packet.Pubrel{PacketID: 5})
	expectPacket[*packet.Pubcomp](r)
	// PUBREL for an id not pending: PUBCOMP with 0x92.
	r.send(&packet.Pubrel{PacketID: 99})
	if comp := expectPacket[*packet.Pubcomp](r); comp.Reason != packet.PacketIDNotFound {
		t.Errorf("PUBCOMP for an unknown id: reason %v, want 0x92", comp.Reason)
	}
	sub.pub("$m", 1, "marker")
	if got := payloads(sub.until("$m")); len(got) != 2 || got[0] != "one" || got[1] != "two" {
		t.Errorf("subscriber got %q, want [one two]", got)
	}
}

// TestUnsubscribe: UNSUBACK says which filters existed (0x11 for one that did not), and the
// removed subscription delivers nothing more.
func TestUnsubscribe(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	c := v5(t, srv, uniqueID("unsub"))
	c.sub("us/a", 1)
	c.sub("us/b", 1)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	ua, err := c.c.Unsubscribe(ctx, &paho.Unsubscribe{Topics: []string{"us/a", "us/never"}})
	if err != nil && ua == nil {
		t.Fatal(err)
	}
	if len(ua.Reasons) != 2 || ua.Reasons[0] != 0 || ua.Reasons[1] != 0x11 {
		t.Errorf("UNSUBACK reasons %x, want [00 11]", ua.Reasons)
	}
	pub := v5(t, srv, uniqueID("uspub"))
	pub.pub("us/a", 1, "gone")
	pub.pub("us/b", 1, "kept")
	if got := payloads(c.until("us/b")); len(got) != 0 {
		t.Errorf("unsubscribed filter still delivered %q", got)
	}
}

// TestDisconnectCannotSetExpiryAfterZero: a DISCONNECT may not give a session expiry when the
// CONNECT had none (protocol error 0x82).
func TestDisconnectCannotSetExpiryAfterZero(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	r, _ := rawV5(t, srv, connectPacket(uniqueID("late-expiry")))
	d := &packet.Disconnect{Reason: packet.NormalDisconnection}
	d.Props.SessionExpiry = 60
	d.Props.Set(packet.PropSessionExpiry)
	r.send(d)
	seen := r.expectClosed()
	if len(seen) != 1 {
		t.Fatalf("got %v, want DISCONNECT 0x82", seen)
	}
	if dd, ok := seen[0].(*packet.Disconnect); !ok || dd.Reason != packet.ProtocolError {
		t.Errorf("got %+v, want DISCONNECT 0x82", seen[0])
	}
}

// TestServerShutdown: closing the server sends MQTT 5 clients DISCONNECT 0x8B and closes 3.1.1
// clients, and returns promptly.
func TestServerShutdown(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	c5 := v5(t, srv, uniqueID("bye5"))
	c3 := connectV3(t, "tcp://"+srv.Addr("mqtt"), uniqueID("bye3"))
	ws := connectV5(t, dial(t, srv, wsTransport), &paho.Connect{ClientID: uniqueID("byews"), CleanStart: true})
	done := make(chan struct{})
	go func() {
		_ = srv.Close()
		close(done)
	}()
	for name, c := range map[string]*v5Client{"tcp": c5, "ws": ws} {
		select {
		case d := <-c.disc:
			if d.ReasonCode != 0x8B {
				t.Errorf("%s client got DISCONNECT %#x, want 0x8B (server shutting down)", name, d.ReasonCode)
			}
		case <-time.After(waitTimeout):
			t.Errorf("%s client got no DISCONNECT on shutdown", name)
		}
	}
	select {
	case <-c3.lost:
	case <-time.After(waitTimeout):
		t.Error("3.1.1 client not disconnected on shutdown")
	}
	select {
	case <-done:
	case <-time.After(waitTimeout):
		t.Fatal("server Close did not return")
	}
}

// TestTakeoverPublishesOldWill: when a new connection takes a session over, the old connection's
// will (without delay) is published.
func TestTakeoverPublishesOldWill(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	watcher := willWatcher(t, srv)
	id := uniqueID("taken")
	old, _ := rawV5(t, srv, willConnect(id, "will/taken", "old will", 0, 0))
	_, _ = rawV5(t, srv, connectPacket(id))
	seen := old.expectClosed()
	if len(seen) != 1 {
		t.Fatalf("old connection got %v, want DISCONNECT 0x8E", seen)
	}
	if d, ok := seen[0].(*packet.Disconnect); !ok || d.Reason != packet.SessionTakenOver {
		t.Errorf("old connection got %+v, want DISCONNECT 0x8E", seen[0])
	}
	watcher.expect("will/taken", "old will")
}
