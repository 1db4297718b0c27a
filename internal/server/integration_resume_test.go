package server_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/ternmq/tern/internal/clock"
	"github.com/ternmq/tern/internal/mqtt/packet"
	"github.com/ternmq/tern/internal/server"
	"github.com/ternmq/tern/internal/server/servertest"
)

func persistentConnect(id string, clean bool, expiry uint32) *packet.Connect {
	c := connectPacket(id)
	c.CleanStart = clean
	c.Props.SessionExpiry = expiry
	c.Props.Set(packet.PropSessionExpiry)
	return c
}

// TestTakeoverRedeliversInflight: when a new connection takes over a session whose old
// connection has unacknowledged QoS 1 messages, the new connection gets them with DUP set.
func TestTakeoverRedeliversInflight(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	id := uniqueID("inflight-takeover")
	old, _ := rawV5(t, srv, persistentConnect(id, true, 300))
	old.subscribe(1, 0, packet.Subscription{Filter: []byte("ti/t"), QoS: 1})
	pub := v5(t, srv, uniqueID("tipub"))
	pub.pub("ti/t", 1, "unacked")
	first := old.expectPublish("ti/t", "unacked")

	// The new connection arrives over WebSocket while the old TCP one is still open.
	nc, ack := connectRaw(t, dial(t, srv, wsTransport), persistentConnect(id, false, 300))
	if !ack.SessionPresent {
		t.Fatal("takeover without clean start: Session Present = false")
	}
	again := nc.expectPublish("ti/t", "unacked")
	if !again.Dup || again.PacketID != first.PacketID {
		t.Errorf("redelivery after takeover: DUP %v id %d, want DUP with id %d", again.Dup, again.PacketID, first.PacketID)
	}
	nc.send(&packet.Puback{PacketID: again.PacketID})
	pub.pub("ti/t", 1, "next")
	if p := nc.expectPublish("ti/t", "next"); p.Dup {
		t.Error("new message after takeover has DUP set")
	}
	if seen := old.expectClosed(); len(seen) != 1 || seen[0].Type() != packet.DISCONNECT {
		t.Errorf("old connection got %v, want only DISCONNECT", seen)
	}
}

// TestResumeKeepsSubscriptionOptions: a resumed session keeps its subscriptions' options:
// subscription identifier, no local, QoS.
func TestResumeKeepsSubscriptionOptions(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	id := uniqueID("opts")
	c := persistentV5(t, srv, id, true, 300)
	sid := 9
	c.subscribeProps(&paho.SubscribeProperties{SubscriptionIdentifier: &sid},
		paho.SubscribeOptions{Topic: "ko/t", QoS: 1, NoLocal: true})
	c.offline(srv, nil)
	c = persistentV5(t, srv, id, false, 300)
	if !c.ack.SessionPresent {
		t.Fatal("Session Present = false")
	}
	c.pub("ko/t", 1, "own")
	other := v5(t, srv, uniqueID("kopub"))
	other.pub("ko/t", 2, "other")
	m := c.next()
	if string(m.Payload) != "other" {
		t.Fatalf("got %q first, want \"other\" (no local lost on resume?)", m.Payload)
	}
	if m.QoS != 1 {
		t.Errorf("QoS %d, want the subscription's 1", m.QoS)
	}
	if m.Properties == nil || m.Properties.SubscriptionIdentifier == nil || *m.Properties.SubscriptionIdentifier != sid {
		t.Errorf("subscription identifier lost on resume: %+v", m.Properties)
	}
}

// TestResumeWithAliasesAndSmallerWindow: queued messages delivered on reconnect respect the new
// connection's receive maximum, and redelivered messages name their topic again (topic aliases
// do not survive a connection).
func TestResumeWithAliasesAndSmallerWindow(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	id := uniqueID("resume-alias")
	withAliases := func(clean bool, recvMax uint16) *packet.Connect {
		c := persistentConnect(id, clean, 300)
		c.Props.TopicAliasMax = 4
		c.Props.Set(packet.PropTopicAliasMax)
		if recvMax > 0 {
			c.Props.ReceiveMax = recvMax
			c.Props.Set(packet.PropReceiveMax)
		}
		return c
	}
	r, _ := rawV5(t, srv, withAliases(true, 0))
	r.subscribe(1, 0, packet.Subscription{Filter: []byte("ra/t"), QoS: 1})
	pub := v5(t, srv, uniqueID("rapub"))
	pub.pub("ra/t", 1, "a")
	pub.pub("ra/t", 1, "b")
	a := r.expectPublish("ra/t", "a")
	b := r.expectPublish("", "b")
	if len(b.Topic) != 0 || b.Props.TopicAlias != a.Props.TopicAlias {
		t.Fatalf("second delivery not aliased: topic %q alias %d", b.Topic, b.Props.TopicAlias)
	}
	before := srv.Broker.Stats().Connected.Load()
	_ = r.conn.Close()
	waitConnected(t, srv, before-1)
	for i := 0; i < 3; i++ {
		pub.pub("ra/t", 1, fmt.Sprint(i))
	}

	r, _ = rawV5(t, srv, withAliases(false, 2))
	// a and b come again, the first naming its topic on the new connection.
	a2 := r.expectPublish("", "a")
	if string(a2.Topic) != "ra/t" {
		t.Errorf("first redelivery on a new connection has topic %q (alias %d); the alias is unknown to it", a2.Topic, a2.Props.TopicAlias)
	}
	b2 := r.expectPublish("", "b")
	if !a2.Dup || !b2.Dup {
		t.Errorf("redeliveries without DUP: %v %v", a2.Dup, b2.Dup)
	}
	// Window 2: both slots are taken by a and b, so nothing else comes until an ack.
	r.send(&packet.Subscribe{PacketID: 7, Subscriptions: []packet.Subscription{{Filter: []byte("ra/q0"), QoS: 0}}})
	expectPacket[*packet.Suback](r)
	pub.pub("ra/q0", 0, "barrier")
	if p := r.expectPublish("", "barrier"); string(p.Topic) != "ra/q0" {
		t.Errorf("barrier on topic %q", p.Topic)
	}
	var got []string
	for _, ack := range []uint16{a2.PacketID, b2.PacketID} {
		r.send(&packet.Puback{PacketID: ack})
	}
	for i := 0; i < 3; i++ {
		p := expectPacket[*packet.Publish](r)
		got = append(got, string(p.Payload))
		r.send(&packet.Puback{PacketID: p.PacketID})
	}
	if !slices.Equal(got, []string{"0", "1", "2"}) {
		t.Errorf("queued messages after the window opened: %q, want [0 1 2]", got)
	}
}

// TestSharedSubscriptionSkipsOfflineMember: while one member of a share group is offline (its
// session kept), the online member gets every message, and the offline one none on return.
func TestSharedSubscriptionSkipsOfflineMember(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	online := v5(t, srv, uniqueID("online"))
	online.sub("$share/g/sh/t", 1)
	online.sub("$m/online", 1)
	awayID := uniqueID("away")
	away := persistentV5(t, srv, awayID, true, 300)
	away.sub("$share/g/sh/t", 1)
	away.offline(srv, nil)

	pub := v5(t, srv, uniqueID("shpub"))
	for i := 0; i < 10; i++ {
		pub.pub("sh/t", 1, fmt.Sprint(i))
	}
	pub.pub("$m/online", 1, "marker")
	if got := payloads(online.until("$m/online")); !slices.Equal(got, wantInOrder(10)) {
		t.Errorf("online member got %q, want all 10 in order", got)
	}
	away = persistentV5(t, srv, awayID, false, 300)
	away.sub("$m/away", 1)
	pub.pub("$m/away", 1, "marker")
	if got := away.until("$m/away"); len(got) != 0 {
		t.Errorf("offline member got %s on return: those went to the online member", describe(got))
	}
}

// TestWillDelayEndsWithSession: a will delay longer than the session expiry is cut short: the
// will is published when the session ends. The core runs on a fake clock moved by the test.
func TestWillDelayEndsWithSession(t *testing.T) {
	t.Parallel()
	clk := clock.NewFake(time.Now())
	srv := servertest.StartWith(t, []server.Option{server.WithClock(clk)})
	watcher := willWatcher(t, srv)
	r, _ := rawV5(t, srv, willConnect(uniqueID("short-session"), "will/session-end", "ended", 30, 1))
	connected := srv.Broker.Stats().Connected.Load()
	timers := clk.Pending()
	_ = r.conn.Close()
	// The connection count drops before the will and expiry timers are armed (both under the
	// broker's lock): wait for the timers too, or the first Advance could run before they exist.
	eventually(t, waitTimeout, "the dropped client's session goes offline", func() bool {
		return srv.Broker.Stats().Connected.Load() == connected-1 && clk.Pending() >= timers+2
	})
	clk.Advance(999 * time.Millisecond)
	// Timers due by then have run inside Advance: a marker published now comes first.
	v5(t, srv, uniqueID("marker")).pub("$m", 1, "marker")
	if got := watcher.until("$m"); len(got) != 0 {
		t.Fatalf("before the session expired: %s", describe(got))
	}
	clk.Advance(time.Millisecond)
	watcher.expect("will/session-end", "ended")
}

// TestRetainedWill: a will with the retain flag becomes the topic's retained message.
func TestRetainedWill(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	c := willConnect(uniqueID("retained-will"), "will/status", "offline", 0, 0)
	c.WillRetain = true
	r, _ := rawV5(t, srv, c)
	_ = r.conn.Close()
	eventually(t, waitTimeout, "the retained will", func() bool { return srv.Broker.Stats().Retained.Load() == 1 })
	late := v5(t, srv, uniqueID("late"))
	late.sub("$m", 1)
	got := retainedOnSubscribe(late, "$m", paho.SubscribeOptions{Topic: "will/status", QoS: 1})
	if len(got) != 1 || string(got[0].Payload) != "offline" || !got[0].Retain {
		t.Errorf("retained will: got %s", describe(got))
	}
}
