package server_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/config"
	"github.com/ternmq/tern/internal/mqtt/packet"
)

func TestConnectionLimits(t *testing.T) {
	srv := securedServer(t, func(c *config.Config) {
		c.Limits.MaxConnectionsPerIdentity = 2
		c.Limits.MaxConnections = 3
	})
	a1 := loginV5(t, srv, "a1", "alice", "alicepw")
	loginV5(t, srv, "a2", "alice", "alicepw")
	if got := rawConnack(t, srv, packet.V5, "a3", "alice", "alicepw", nil); got != packet.QuotaExceeded {
		t.Fatalf("alice's third connection: %v", got)
	}
	loginV5(t, srv, "b1", "bob", "bobpw")
	if got := rawConnack(t, srv, packet.V311, "b2", "bob", "bobpw", nil); got != packet.V3RefusedServerUnavailable {
		t.Fatalf("fourth connection in total, 3.1.1: %d", got)
	}
	// The connections already open are unaffected.
	a1.sub("users/alice/#", 1)
	a1.pub("users/alice/x", 1, "ok")
	a1.expect("users/alice/x", "ok")
	if got := srv.Broker.Stats().RefusedConnections.Load(); got != 2 {
		t.Fatalf("RefusedConnections = %d", got)
	}
}

func TestPayloadAndSubscriptionLimits(t *testing.T) {
	srv := securedServer(t, func(c *config.Config) {
		c.Limits.MaxPayload = 16
		c.Session.MaxSubscriptions = 2
	})
	alice := loginV5(t, srv, "a", "alice", "alicepw")
	alice.sub("users/alice/#", 1)
	if r := pubCode(t, alice, &paho.Publish{Topic: "users/alice/big", QoS: 1, Payload: []byte(strings.Repeat("x", 17))}); r != byte(packet.QuotaExceeded) {
		t.Fatalf("payload over limits.max_payload: %#x", r)
	}
	alice.pub("users/alice/small", 1, strings.Repeat("y", 16))
	alice.expect("users/alice/small", strings.Repeat("y", 16)) // the big one never came first
	codes := subCodes(t, alice, paho.SubscribeOptions{Topic: "public/a"}, paho.SubscribeOptions{Topic: "public/b"})
	if codes[0] != 0 || codes[1] != byte(packet.QuotaExceeded) {
		t.Fatalf("subscriptions beyond session.max_subscriptions: %v", codes)
	}
	if srv.Broker.Stats().RefusedPayload.Load() != 1 {
		t.Fatal("payload refusal not counted")
	}
}

// TestPublishRateThrottlesWithoutLoss: a publisher faster than its rate is paused, not refused,
// and every message arrives in order.
func TestPublishRateThrottlesWithoutLoss(t *testing.T) {
	srv := securedServer(t, func(c *config.Config) {
		c.Limits.PublishRate = 50
		c.Limits.PublishBurst = 5
		c.Limits.MaxThrottle = time.Second
	})
	alice := loginV5(t, srv, "a", "alice", "alicepw")
	alice.sub("users/alice/#", 1)
	const n = 30 // at least half a second at 50/s: every publish after the burst is paused
	for i := range n {
		if r := pubCode(t, alice, &paho.Publish{Topic: "users/alice/r", QoS: 1, Payload: []byte(fmt.Sprint(i))}); r >= 0x80 {
			t.Fatalf("publish %d refused: %#x", i, r)
		}
	}
	for i := range n {
		alice.expect("users/alice/r", fmt.Sprint(i))
	}
	st := srv.Broker.Stats()
	if st.Throttled.Load() == 0 || st.RefusedRate.Load() != 0 {
		t.Fatalf("throttled %d refused %d: want throttling and no refusal", st.Throttled.Load(), st.RefusedRate.Load())
	}
}

// TestPublishRateRefusesBeyondThrottle: an identity's budget is shared by its connections, so a
// second connection of the same identity that keeps going is refused with 0x97.
func TestPublishRateRefusesBeyondThrottle(t *testing.T) {
	srv := securedServer(t, func(c *config.Config) {
		c.Limits.PublishBytesRate = 100
		c.Limits.MaxThrottle = 10 * time.Millisecond
	})
	a := loginV5(t, srv, "a", "alice", "alicepw")
	b := loginV5(t, srv, "b", "alice", "alicepw")
	bob := loginV5(t, srv, "bob", "bob", "bobpw")
	refused := 0
	for i := range 20 {
		v := a
		if i%2 == 1 {
			v = b
		}
		if r := pubCode(t, v, &paho.Publish{Topic: "users/alice/x", QoS: 1, Payload: []byte(strings.Repeat("z", 100))}); r == byte(packet.QuotaExceeded) {
			refused++
		} else if r >= 0x80 {
			t.Fatalf("publish %d: %#x", i, r)
		}
	}
	if refused == 0 || srv.Broker.Stats().RefusedRate.Load() != uint64(refused) {
		t.Fatalf("refused %d, counted %d", refused, srv.Broker.Stats().RefusedRate.Load())
	}
	// Bob's budget is his own.
	if r := pubCode(t, bob, &paho.Publish{Topic: "users/bob/x", QoS: 1, Payload: []byte("hi")}); r >= 0x80 {
		t.Fatalf("bob refused: %#x", r)
	}
}

// TestConnectionSlotsFreedAndTakeover: a refused connection leaves the others alone; a closed
// connection frees its identity's slot and the total's; a takeover of one's own session is no
// extra connection.
func TestConnectionSlotsFreedAndTakeover(t *testing.T) {
	srv := securedServer(t, func(c *config.Config) {
		c.Limits.MaxConnectionsPerIdentity = 1
		c.Limits.MaxConnections = 2
	})
	must(t, srv.Auth.PutUser(auth.User{Name: "carol"}, []byte("carolpw")))
	a1 := loginV5(t, srv, "a1", "alice", "alicepw")
	if got := rawConnack(t, srv, packet.V5, "a2", "alice", "alicepw", nil); got != packet.QuotaExceeded {
		t.Fatalf("alice's second connection: %v", got)
	}
	b := loginV5(t, srv, "b1", "bob", "bobpw")
	if got := rawConnack(t, srv, packet.V5, "c1", "carol", "carolpw", nil); got != packet.QuotaExceeded {
		t.Fatalf("third connection in total: %v", got)
	}
	if got := rawConnack(t, srv, packet.V311, "c1", "carol", "carolpw", nil); got != packet.V3RefusedServerUnavailable {
		t.Fatalf("3.1.1, third connection in total: %d", got)
	}
	b.sub("users/#", 1)
	a1.pub("users/alice/x", 1, "still fine")
	b.expect("users/alice/x", "still fine")

	a1.offline(srv, nil)
	if got := rawConnack(t, srv, packet.V5, "a3", "alice", "alicepw", nil); got != packet.Success {
		t.Fatalf("alice after her connection closed: %v", got)
	}
	// Both limits are reached again; taking over a3 replaces a connection, it adds none.
	if got := rawConnack(t, srv, packet.V5, "a3", "alice", "alicepw", nil); got != packet.Success {
		t.Fatalf("alice taking over her own session at the limits: %v", got)
	}
	if got := srv.Broker.Stats().RefusedConnections.Load(); got != 3 {
		t.Fatalf("RefusedConnections = %d, want 3", got)
	}
}

// TestPayloadLimitNotDelivered: a payload above limits.max_payload is refused at every QoS and in
// both protocol versions (3.1.1 cannot be told, so it is only not delivered).
func TestPayloadLimitNotDelivered(t *testing.T) {
	srv := securedServer(t, func(c *config.Config) { c.Limits.MaxPayload = 16 })
	bob := loginV5(t, srv, "bob-1", "bob", "bobpw")
	bob.sub("users/#", 1)
	big := strings.Repeat("x", 17)
	alice := loginV5(t, srv, "a5", "alice", "alicepw")
	alice.pub("users/alice/big0", 0, big)
	if r := pubCode(t, alice, &paho.Publish{Topic: "users/alice/big2", QoS: 2, Payload: []byte(big)}); r != byte(packet.QuotaExceeded) {
		t.Fatalf("QoS 2 payload over the limit: PUBREC %#x", r)
	}
	v3 := connectV3(t, "tcp://"+srv.Addr("mqtt"), "a3", func(o *mqtt3.ClientOptions) { o.SetUsername("alice").SetPassword("alicepw") })
	v3.pub("users/alice/big3", 1, false, big)
	v3.pub("users/alice/big3q0", 0, false, big)
	v3.pub("users/alice/ok", 1, false, strings.Repeat("y", 16))
	if got := payloads(bob.until("users/alice/ok")); len(got) != 0 {
		t.Fatalf("payloads over the limit delivered: %q", got)
	}
	if n := srv.Broker.Stats().RefusedPayload.Load(); n != 4 {
		t.Fatalf("RefusedPayload = %d, want 4", n)
	}
}

// TestSubscriptionLimitDetails: replacing a subscription does not count against
// session.max_subscriptions, unsubscribing frees a place, and 3.1.1 gets 0x80 for the extra one.
func TestSubscriptionLimitDetails(t *testing.T) {
	srv := securedServer(t, func(c *config.Config) { c.Session.MaxSubscriptions = 2 })
	alice := loginV5(t, srv, "a", "alice", "alicepw")
	if codes := subCodes(t, alice, paho.SubscribeOptions{Topic: "users/alice/a"}, paho.SubscribeOptions{Topic: "users/alice/b"},
		paho.SubscribeOptions{Topic: "public/c"}); codes[0] != 0 || codes[1] != 0 || codes[2] != byte(packet.QuotaExceeded) {
		t.Fatalf("three filters, room for two: %v", codes)
	}
	if codes := subCodes(t, alice, paho.SubscribeOptions{Topic: "users/alice/a", QoS: 1}); codes[0] != 1 {
		t.Fatalf("replacing a subscription at the limit: %#x", codes[0])
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, err := alice.c.Unsubscribe(ctx, &paho.Unsubscribe{Topics: []string{"users/alice/b"}}); err != nil {
		t.Fatal(err)
	}
	if codes := subCodes(t, alice, paho.SubscribeOptions{Topic: "public/c"}); codes[0] != 0 {
		t.Fatalf("after an unsubscribe: %#x", codes[0])
	}

	v3 := connectV3(t, "tcp://"+srv.Addr("mqtt"), "a3", func(o *mqtt3.ClientOptions) { o.SetUsername("alice").SetPassword("alicepw") })
	v3.sub("users/alice/a", 1)
	v3.sub("users/alice/b", 1)
	tok := v3.c.Subscribe("public/c", 1, nil)
	if !tok.WaitTimeout(waitTimeout) {
		t.Fatal("3.1.1 subscribe timed out")
	}
	if code := tok.(*mqtt3.SubscribeToken).Result()["public/c"]; code != 0x80 {
		t.Fatalf("3.1.1 subscription beyond the limit: %#x", code)
	}
}

// TestPublishRateRefusesWithTinyThrottle: with max_throttle tiny, a publisher beyond its message
// burst is refused (0x97) rather than paused; exactly the accepted messages arrive, in order.
func TestPublishRateRefusesWithTinyThrottle(t *testing.T) {
	srv := securedServer(t, func(c *config.Config) {
		c.Limits.PublishRate = 2 // one message per 500 ms after a burst of 2
		c.Limits.PublishBurst = 2
		c.Limits.MaxThrottle = time.Millisecond
	})
	bob := loginV5(t, srv, "bob", "bob", "bobpw")
	bob.sub("users/alice/#", 1)
	alice := loginV5(t, srv, "a", "alice", "alicepw")
	var accepted []string
	refused := 0
	for i := range 20 {
		switch r := pubCode(t, alice, &paho.Publish{Topic: "users/alice/r", QoS: 1, Payload: []byte(fmt.Sprint(i))}); {
		case r == byte(packet.QuotaExceeded):
			refused++
		case r < 0x80:
			accepted = append(accepted, fmt.Sprint(i))
		default:
			t.Fatalf("publish %d: %#x", i, r)
		}
	}
	if refused == 0 || len(accepted) == 0 {
		t.Fatalf("accepted %d, refused %d: want both", len(accepted), refused)
	}
	if n := srv.Broker.Stats().RefusedRate.Load(); n != uint64(refused) {
		t.Fatalf("RefusedRate = %d, refused %d", n, refused)
	}
	bob.sub("users/bob/#", 1)
	bob.pub("users/bob/marker", 1, "m") // bob's budget is his own
	if got := payloads(bob.until("users/bob/marker")); strings.Join(got, ",") != strings.Join(accepted, ",") {
		t.Fatalf("delivered %v, accepted %v", got, accepted)
	}
}

// TestPublishBytesRateThrottlesWithoutLoss: a publisher beyond its bytes per second is paused
// (reading stops, so the run takes at least the excess) but with a generous max_throttle nothing
// is refused and everything arrives in order.
func TestPublishBytesRateThrottlesWithoutLoss(t *testing.T) {
	srv := securedServer(t, func(c *config.Config) {
		c.Limits.PublishBytesRate = 4000
		c.Limits.MaxThrottle = 2 * time.Second
	})
	bob := loginV5(t, srv, "bob", "bob", "bobpw")
	bob.sub("users/alice/#", 1)
	alice := loginV5(t, srv, "a", "alice", "alicepw")
	const n = 10 // 10 kB at 4 kB/s with a 4 kB burst: 1.5 s of pauses
	start := time.Now()
	for i := range n {
		p := fmt.Sprintf("%04d", i) + strings.Repeat("z", 996)
		if r := pubCode(t, alice, &paho.Publish{Topic: "users/alice/b", QoS: 1, Payload: []byte(p)}); r >= 0x80 {
			t.Fatalf("publish %d refused: %#x", i, r)
		}
	}
	for i := range n {
		m := bob.next()
		if got := string(m.Payload[:4]); got != fmt.Sprintf("%04d", i) {
			t.Fatalf("message %d is %s", i, got)
		}
	}
	if took := time.Since(start); took < time.Second {
		t.Fatalf("10 kB at 4 kB/s went through in %v: not paused", took)
	}
	st := srv.Broker.Stats()
	if st.Throttled.Load() == 0 || st.RefusedRate.Load() != 0 {
		t.Fatalf("throttled %d refused %d: want throttling and no refusal", st.Throttled.Load(), st.RefusedRate.Load())
	}
}
