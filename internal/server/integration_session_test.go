package server_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	mqtt3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/ternmq/tern/internal/config"
)

// TestCleanStartDiscardsSession: a session kept by its expiry is thrown away by a connect with
// Clean Start, subscriptions and all.
func TestCleanStartDiscardsSession(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	id := uniqueID("clean")
	c := persistentV5(t, srv, id, true, 300)
	c.sub("cs/t", 1)
	c.offline(srv, nil)

	c = persistentV5(t, srv, id, true, 300)
	if c.ack.SessionPresent {
		t.Error("clean start answered with Session Present")
	}
	pub := v5(t, srv, uniqueID("cspub"))
	if resp := pub.pub("cs/t", 1, "x"); resp.ReasonCode != 0x10 {
		t.Errorf("publish to the discarded subscription: PUBACK reason %#x, want 0x10 (no matching subscribers)", resp.ReasonCode)
	}
	c.sub("$m", 1)
	pub.pub("$m", 1, "marker")
	if got := c.until("$m"); len(got) != 0 {
		t.Errorf("discarded subscription still delivered %s", describe(got))
	}
}

// TestPersistentSessionQueuesOffline: with a session expiry the subscriptions survive a
// disconnect and QoS 0, 1 and 2 messages published meanwhile arrive on reconnect, in order, with
// Session Present.
func TestPersistentSessionQueuesOffline(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	id := uniqueID("persist")
	c := persistentV5(t, srv, id, true, 300)
	c.sub("ps/#", 2)
	c.offline(srv, nil)

	pub := v5(t, srv, uniqueID("pspub"))
	for qos := byte(0); qos <= 2; qos++ {
		resp := pub.pub(fmt.Sprintf("ps/%d", qos), qos, fmt.Sprintf("offline %d", qos))
		if qos > 0 && resp.ReasonCode != 0 {
			t.Errorf("QoS %d publish to an offline session: reason %#x, want 0 (it is queued)", qos, resp.ReasonCode)
		}
	}

	c = persistentV5(t, srv, id, false, 300)
	if !c.ack.SessionPresent {
		t.Fatal("reconnect without clean start: Session Present = false")
	}
	for qos := byte(0); qos <= 2; qos++ {
		m := c.expect(fmt.Sprintf("ps/%d", qos), fmt.Sprintf("offline %d", qos))
		if m.QoS != qos {
			t.Errorf("queued QoS %d message delivered at QoS %d", qos, m.QoS)
		}
	}
	// The subscription is live again.
	pub.pub("ps/live", 1, "live")
	c.expect("ps/live", "live")
}

// TestSessionExpiry: a session whose expiry interval passes while its client is away is gone:
// Session Present is false and nothing queued for it arrives.
func TestSessionExpiry(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	id := uniqueID("expire")
	c := persistentV5(t, srv, id, true, 1)
	c.sub("se/t", 1)
	c.offline(srv, nil)
	gone := time.Now()
	pub := v5(t, srv, uniqueID("sepub"))
	if resp := pub.pub("se/t", 1, "queued"); resp.ReasonCode != 0 {
		t.Fatalf("publish to the offline session: reason %#x, want 0", resp.ReasonCode)
	}

	// Wait for the core to end the session: reconnecting to look would resume it, so watch the
	// session count (the publisher's clean session is the only other one).
	eventually(t, 5*time.Second, "the session to expire", func() bool {
		return srv.Broker.Stats().Sessions.Load() == 1
	})
	if held := time.Since(gone); held < 900*time.Millisecond {
		t.Errorf("session with expiry 1s ended after %v", held)
	}
	c = persistentV5(t, srv, id, false, 1)
	if c.ack.SessionPresent {
		t.Fatal("Session Present after the session expired")
	}
	c.sub("$m", 1)
	pub.pub("$m", 1, "marker")
	if got := c.until("$m"); len(got) != 0 {
		t.Errorf("expired session delivered %s", describe(got))
	}
	if resp := pub.pub("se/t", 1, "after"); resp.ReasonCode != 0x10 {
		t.Errorf("expired session's subscription still matches: reason %#x", resp.ReasonCode)
	}
}

// TestSessionExpiryKeepsSessionWithinInterval: reconnecting before the expiry finds the session.
func TestSessionExpiryKeepsSessionWithinInterval(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	id := uniqueID("within")
	c := persistentV5(t, srv, id, true, 30)
	c.sub("sw/t", 1)
	c.drop()
	c = persistentV5(t, srv, id, false, 30)
	if !c.ack.SessionPresent {
		t.Fatal("reconnect within the expiry: Session Present = false")
	}
}

// TestOfflineQueueLimit: the offline queue holds at most session.max_queued_messages; the
// oldest are dropped, so with a limit of 3 and 5 queued the last 3 arrive.
func TestOfflineQueueLimit(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *config.Config) { c.Session.MaxQueuedMessages = 3 })
	id := uniqueID("bounded")
	c := persistentV5(t, srv, id, true, 300)
	c.sub("ql/t", 1)
	c.offline(srv, nil)
	pub := v5(t, srv, uniqueID("qlpub"))
	for i := 1; i <= 5; i++ {
		pub.pub("ql/t", 1, fmt.Sprint(i))
	}
	c = persistentV5(t, srv, id, false, 300)
	c.sub("$m", 1)
	pub.pub("$m", 1, "marker")
	if got := payloads(c.until("$m")); !slices.Equal(got, []string{"3", "4", "5"}) {
		t.Errorf("after 5 messages into a queue of 3 got %q, want [3 4 5]", got)
	}
	if n := metric(t, srv, "tern_messages_dropped_queue_full_total"); n != 2 {
		t.Errorf("tern_messages_dropped_queue_full_total = %v, want 2", n)
	}
}

// TestSessionTakeover: a second connection with the same client id takes the session over; the
// first gets DISCONNECT 0x8E (MQTT 5) or is closed (3.1.1), and the session goes on.
func TestSessionTakeover(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	id := uniqueID("twin")
	first := persistentV5(t, srv, id, true, 300)
	first.sub("to/t", 1)
	second := persistentV5(t, srv, id, false, 300)
	select {
	case d := <-first.disc:
		if d.ReasonCode != 0x8E {
			t.Errorf("first connection got DISCONNECT %#x, want 0x8E (session taken over)", d.ReasonCode)
		}
	case <-time.After(waitTimeout):
		t.Fatal("first connection got no DISCONNECT")
	}
	if !second.ack.SessionPresent {
		t.Error("takeover without clean start: Session Present = false")
	}
	pub := v5(t, srv, uniqueID("topub"))
	pub.pub("to/t", 1, "for the new one")
	second.expect("to/t", "for the new one")

	t.Run("3.1.1", func(t *testing.T) {
		id := uniqueID("twin3")
		a := connectV3(t, "tcp://"+srv.Addr("mqtt"), id)
		_ = connectV3(t, "tcp://"+srv.Addr("mqtt"), id)
		select {
		case <-a.lost:
		case <-time.After(waitTimeout):
			t.Fatal("first 3.1.1 connection not closed on takeover")
		}
	})
}

// TestSessionExpiryOnDisconnect: an MQTT 5 client may change its session expiry on DISCONNECT
// (from a non-zero value), e.g. to 0 to end the session.
func TestSessionExpiryOnDisconnect(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	id := uniqueID("dexp")
	c := persistentV5(t, srv, id, true, 300)
	c.sub("de/t", 1)
	c.offline(srv, u32(0))
	c = persistentV5(t, srv, id, false, 300)
	if c.ack.SessionPresent {
		t.Error("DISCONNECT with session expiry 0 did not end the session")
	}
}

// TestPersistentSessionV311: a 3.1.1 client (paho.mqtt.golang) with Clean Session 0 keeps its
// subscriptions and gets what was published while it was away, with Session Present.
func TestPersistentSessionV311(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	id := uniqueID("keep3")
	persistent := func(o *mqtt3.ClientOptions) { o.SetCleanSession(false) }
	c := connectV3(t, "tcp://"+srv.Addr("mqtt"), id, persistent)
	c.sub("ps3/t", 2)
	before := srv.Broker.Stats().Connected.Load()
	c.c.Disconnect(100)
	waitConnected(t, srv, before-1)

	pub := v5(t, srv, uniqueID("ps3pub"))
	for qos := byte(0); qos <= 2; qos++ {
		pub.pub("ps3/t", qos, fmt.Sprint(qos))
	}
	c = newV3(t, "tcp://"+srv.Addr("mqtt"), id, persistent)
	tok := c.c.Connect()
	if !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
		t.Fatalf("reconnect: %v", tok.Error())
	}
	t.Cleanup(func() { c.c.Disconnect(100) })
	if ct, ok := tok.(*mqtt3.ConnectToken); ok && !ct.SessionPresent() {
		t.Error("3.1.1 reconnect with Clean Session 0: Session Present = 0")
	}
	for qos := byte(0); qos <= 2; qos++ {
		c.expect("ps3/t", fmt.Sprint(qos), qos)
	}
	// Clean Session 1 ends it.
	c.c.Disconnect(100)
	waitConnected(t, srv, before)
	c = connectV3(t, "tcp://"+srv.Addr("mqtt"), id)
	if resp := pub.pub("ps3/t", 1, "nobody"); resp.ReasonCode != 0x10 {
		t.Errorf("after a clean-session connect the old subscription still matches (PUBACK %#x)", resp.ReasonCode)
	}
}
