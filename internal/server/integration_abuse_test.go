package server_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

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
