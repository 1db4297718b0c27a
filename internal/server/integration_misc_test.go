package server_test

import (
	"os"
	"strings"
	"testing"

	"github.com/eclipse/paho.golang/paho"

	"github.com/ternmq/tern/internal/config"
	"github.com/ternmq/tern/internal/mqtt/packet"
)

// TestClientIDTooLong: an id over mqtt.max_client_id_length is refused with 0x85 (MQTT 5) or
// 0x02 (3.1.1).
func TestClientIDTooLong(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *config.Config) { c.MQTT.MaxClientIDLength = 16 })
	long := strings.Repeat("x", 17)
	r := newRaw(t, dialTCP(t, srv.Addr("mqtt")), packet.V5)
	r.send(connectPacket(long))
	if ack := expectConnack(r); ack.Reason != packet.ClientIDNotValid {
		t.Errorf("MQTT 5 CONNACK %v, want 0x85", ack.Reason)
	}
	r.expectClosed()
	r3 := newRaw(t, dialTCP(t, srv.Addr("mqtt")), packet.V311)
	r3.send(&packet.Connect{Version: packet.V311, ClientID: []byte(long), CleanStart: true, KeepAlive: 30})
	if ack := expectConnack(r3); ack.Reason != packet.V3RefusedIdentifierRejected {
		t.Errorf("3.1.1 CONNACK %v, want 2", ack.Reason)
	}
	r3.expectClosed()
	// Exactly the limit is fine.
	_ = v5(t, srv, strings.Repeat("y", 16))
}

// TestSubackPerFilter: one SUBSCRIBE with valid and invalid filters gets one reason per filter, in
// order, and the valid ones work.
func TestSubackPerFilter(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	r, _ := rawV5(t, srv, connectPacket(uniqueID("multi")))
	ack := r.subscribe(1, 0,
		packet.Subscription{Filter: []byte("m/a"), QoS: 0},
		packet.Subscription{Filter: []byte("m/#/x"), QoS: 1},
		packet.Subscription{Filter: []byte("m/+"), QoS: 2},
		packet.Subscription{Filter: []byte("$share/g"), QoS: 1},
		packet.Subscription{Filter: []byte("m+"), QoS: 1},
		packet.Subscription{Filter: []byte("$share/g/m/s"), QoS: 1},
	)
	want := []packet.ReasonCode{0, packet.TopicFilterInvalid, 2, packet.TopicFilterInvalid, packet.TopicFilterInvalid, 1}
	if len(ack.Reasons) != len(want) {
		t.Fatalf("SUBACK reasons %v, want %v", ack.Reasons, want)
	}
	for i := range want {
		if ack.Reasons[i] != want[i] {
			t.Errorf("filter %d: reason %v, want %v", i, ack.Reasons[i], want[i])
		}
	}
	pub := v5(t, srv, uniqueID("multipub"))
	pub.pub("m/a", 2, "a")
	if p := r.expectPublish("m/a", "a"); p.QoS != 2 {
		t.Errorf("overlap of QoS 0 and QoS 2 subscriptions delivered at QoS %d, want 2", p.QoS)
	}
}

// TestResubscribeReplaces: subscribing again to the same filter replaces the subscription (new
// QoS), it does not add a second one.
func TestResubscribeReplaces(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	c := v5(t, srv, uniqueID("resub"))
	c.sub("rs/t", 0)
	c.sub("rs/t", 2)
	pub := v5(t, srv, uniqueID("rspub"))
	pub.pub("rs/t", 2, "once")
	if m := c.expect("rs/t", "once"); m.QoS != 2 {
		t.Errorf("delivered at QoS %d after resubscribing at 2", m.QoS)
	}
	pub.pub("rs/t", 0, "end")
	if got := c.until("rs/t"); len(got) != 0 {
		t.Errorf("duplicate deliveries: %s", describe(got))
	}
	if n := srv.Broker.Stats().Subscriptions.Load(); n != 1 {
		t.Errorf("tern_subscriptions = %d after resubscribing one filter, want 1", n)
	}
}

// TestTopicAndPayloadEdgeCases: multi-byte UTF-8 topics, empty levels, an empty payload and a
// user name and password (no authentication configured) all pass.
func TestTopicAndPayloadEdgeCases(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	c := connectV5(t, dialTCP(t, srv.Addr("mqtt")), &paho.Connect{
		ClientID: uniqueID("edge"), CleanStart: true,
		UsernameFlag: true, Username: "someone", PasswordFlag: true, Password: []byte("secret"),
	})
	topics := []string{"naïve/日本/🙂", "/leading", "trailing/", "a//b", strings.Repeat("l/", 200) + "end"}
	for _, tp := range topics {
		c.sub(tp, 1)
		c.pub(tp, 1, "")
		m := c.next()
		if m.Topic != tp || len(m.Payload) != 0 {
			t.Errorf("topic %q: got %q with %d bytes", tp, m.Topic, len(m.Payload))
		}
	}
	c.sub("+/日本/+", 1)
	c.pub("naïve/日本/x", 1, "wild")
	c.expect("naïve/日本/x", "wild")
}

// TestKeepAliveZeroGetsServerMaximum: a client asking for no keep alive is told the server's
// maximum when one is configured.
func TestKeepAliveZeroGetsServerMaximum(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *config.Config) { c.MQTT.MaxKeepAlive = 5 })
	c := connectPacket(uniqueID("ka0"))
	c.KeepAlive = 0
	_, ack := rawV5(t, srv, c)
	if !ack.Props.Has(packet.PropServerKeepAlive) || ack.Props.ServerKeepAlive != 5 {
		t.Errorf("keep alive 0 with a server maximum of 5: CONNACK server keep alive %d (present %v), want 5",
			ack.Props.ServerKeepAlive, ack.Props.Has(packet.PropServerKeepAlive))
	}
}

// TestMetricsDetachedConnections: an idle MQTT connection over TCP holds only its socket's
// descriptor (mqtt.detach_idle) and /metrics counts it so; a client that only connected and
// subscribed was never busy enough to attach, and the attach counter says so.
func TestMetricsDetachedConnections(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	c := v5(t, srv, uniqueID("detached"))
	c.sub("md/x", 0)
	eventually(t, waitTimeout, "the idle connection to be counted detached", func() bool {
		return metric(t, srv, "tern_mqtt_connections_detached") == 1
	})
	if v := metric(t, srv, "tern_mqtt_attaches_total"); v != 0 {
		t.Errorf("tern_mqtt_attaches_total = %v after a connect and a subscribe, want 0", v)
	}
}

// TestMetricsGauges follows the session, connection, subscription, queue and retained gauges
// through a session's life, as GET /metrics reports them.
func TestMetricsGauges(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	gauges := func(want map[string]float64) {
		t.Helper()
		for name, v := range want {
			if got := metric(t, srv, name); got != v {
				t.Errorf("%s = %v, want %v", name, got, v)
			}
		}
	}
	id := uniqueID("gauged")
	c := persistentV5(t, srv, id, true, 300)
	c.sub("g/a", 1)
	c.sub("g/b/#", 1)
	gauges(map[string]float64{"tern_sessions": 1, "tern_sessions_connected": 1, "tern_subscriptions": 2, "tern_mqtt_connections_open": 1})
	c.offline(srv, nil)
	// The socket closes just after the session is detached.
	eventually(t, waitTimeout, "the connection to close", func() bool { return srv.MQTT.Stats().Open.Load() == 0 })
	gauges(map[string]float64{"tern_sessions": 1, "tern_sessions_connected": 0, "tern_subscriptions": 2, "tern_mqtt_connections_open": 0})

	pub := v5(t, srv, uniqueID("gpub"))
	pub.pub("g/a", 1, "1")
	pub.pub("g/b/c", 1, "2")
	pub.publish(&paho.Publish{Topic: "g/r", QoS: 0, Retain: true, Payload: []byte("r")})
	// A QoS 0 publish has no acknowledgement to wait for: the server may count it a moment later.
	eventually(t, waitTimeout, "the retained message to be counted", func() bool {
		return metric(t, srv, "tern_retained_messages") == 1
	})
	gauges(map[string]float64{"tern_queued_messages": 2, "tern_sessions": 2, "tern_retained_messages": 1})

	c = persistentV5(t, srv, id, false, 300)
	c.expect("g/a", "1")
	c.expect("g/b/c", "2")
	gauges(map[string]float64{"tern_queued_messages": 0, "tern_sessions_connected": 2})
	if v := metric(t, srv, "tern_messages_delivered_total"); v < 2 {
		t.Errorf("tern_messages_delivered_total = %v, want >= 2", v)
	}

	// A clean start ends the old session: its subscriptions go.
	c.offline(srv, nil)
	c = persistentV5(t, srv, id, true, 0)
	gauges(map[string]float64{"tern_sessions": 2, "tern_subscriptions": 0})
	c.offline(srv, nil)
	gauges(map[string]float64{"tern_sessions": 1, "tern_sessions_connected": 1})
}

// TestUnixSocketMode: Unix socket files get listen.unix_mode (0660 unless set).
func TestUnixSocketMode(t *testing.T) {
	for mode, want := range map[string]os.FileMode{"": 0o660, "0600": 0o600} {
		srv := startServer(t, func(c *config.Config) {
			if mode != "" {
				c.Listen.UnixMode = mode
			}
		})
		fi, err := os.Stat(srv.Addr("unix"))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("unix_mode %q: socket mode %o, want %o", mode, got, want)
		}
	}
}
