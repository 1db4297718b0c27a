package server_test

// What the Eclipse Paho MQTT interoperability suite (client_test.py for 3.1.1, client_test5.py
// for MQTT 5) checks that the other integration tests did not, driven by the Paho Go clients
// where they can express it and by the raw client where a test must send what Paho would not.

import (
	"context"
	"maps"
	"net"
	"net/url"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	paholog "github.com/eclipse/paho.golang/paho/log"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/ternmq/tern/internal/mqtt/packet"
)

// TestRetainedKeepsQoSAndProperties (suite: test_retained_message): retained messages published
// at QoS 0, 1 and 2 with user properties are delivered on subscribe at their own QoS (the
// subscription allows 2), flagged retained, with the publisher's properties.
func TestRetainedKeepsQoSAndProperties(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	users := paho.UserProperties{{Key: "a", Value: "2"}, {Key: "c", Value: "3"}}
	pub := v5(t, srv, uniqueID("rppub"))
	topics := []string{"rp/q0", "rp/q1", "rp/q2"}
	for qos, tp := range topics {
		pub.publish(&paho.Publish{
			Topic: tp, QoS: byte(qos), Retain: true, Payload: []byte(tp),
			Properties: &paho.PublishProperties{User: users, ContentType: "text/plain"},
		})
	}
	// The QoS 0 publish has no acknowledgement: a QoS 1 one after it on the same connection is
	// acknowledged only once the server has handled it.
	pub.pub("rp/done", 1, "barrier")

	sub := v5(t, srv, uniqueID("rpsub"))
	sub.sub("$m/rp", 1)
	got := retainedOnSubscribe(sub, "$m/rp", paho.SubscribeOptions{Topic: "rp/+", QoS: 2})
	byTopic := map[string]*paho.Publish{}
	for _, m := range got {
		byTopic[m.Topic] = m
	}
	if len(got) != 3 {
		t.Fatalf("subscribe got %s, want the three retained messages", describe(got))
	}
	for qos, tp := range topics {
		m := byTopic[tp]
		if m == nil {
			t.Fatalf("no retained message on %s; got %s", tp, describe(got))
		}
		if !m.Retain || int(m.QoS) != qos {
			t.Errorf("%s: retain %v QoS %d, want retained at QoS %d", tp, m.Retain, m.QoS, qos)
		}
		if m.Properties == nil || !slices.Equal(m.Properties.User, users) || m.Properties.ContentType != "text/plain" {
			t.Errorf("%s: properties %+v, want user properties %v and content type text/plain", tp, m.Properties, users)
		}
	}
}

// silentPinger is a paho.golang Pinger that never pings: the client goes quiet like one whose
// network path died, so the server's keep alive must notice.
type silentPinger struct{}

func (silentPinger) Run(ctx context.Context, _ net.Conn, _ uint16) error {
	<-ctx.Done()
	return nil
}
func (silentPinger) PacketSent()             {}
func (silentPinger) PacketReceived()         {}
func (silentPinger) PingResp()               {}
func (silentPinger) SetDebug(paholog.Logger) {}

// blackhole is a connection that, once silenced, swallows what the client writes (its PINGREQs),
// while reads go on.
type blackhole struct {
	net.Conn
	silent atomic.Bool
}

func (b *blackhole) Write(p []byte) (int, error) {
	if b.silent.Load() {
		return len(p), nil
	}
	return b.Conn.Write(p)
}

// TestKeepAliveExpiryPublishesWill (suite: test_keepalive, test_will_message): a client that stops
// sending with its connection still open is cut off after 1.5 keep alive intervals, and its will
// is published, with its properties, for MQTT 5 and 3.1.1 alike.
func TestKeepAliveExpiryPublishesWill(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	watcher := willWatcher(t, srv)

	quiet := connectV5(t, dialTCP(t, srv.Addr("mqtt")), &paho.Connect{
		ClientID: uniqueID("ka-will"), CleanStart: true, KeepAlive: 1,
		WillMessage:    &paho.WillMessage{Topic: "will/ka5", Payload: []byte("keep alive expired"), QoS: 1},
		WillProperties: &paho.WillProperties{User: paho.UserProperties{{Key: "a", Value: "2"}, {Key: "c", Value: "3"}}},
	}, func(cc *paho.ClientConfig) { cc.PingHandler = silentPinger{} })

	var hole atomic.Pointer[blackhole]
	connectV3(t, "tcp://"+srv.Addr("mqtt"), uniqueID("ka-will3"), func(o *mqtt3.ClientOptions) {
		o.SetKeepAlive(time.Second)
		// paho.mqtt.golang gives up on its own after the ping timeout: keep that out of the way.
		o.SetPingTimeout(time.Minute)
		o.SetWill("will/ka3", "keep alive expired", 1, false)
		o.SetCustomOpenConnectionFn(func(_ *url.URL, _ mqtt3.ClientOptions) (net.Conn, error) {
			c, err := net.DialTimeout("tcp", srv.Addr("mqtt"), waitTimeout)
			if err != nil {
				return nil, err
			}
			b := &blackhole{Conn: c}
			hole.Store(b)
			return b, nil
		})
	})
	hole.Load().silent.Store(true)

	start := time.Now()
	wills := map[string]*paho.Publish{}
	for len(wills) < 2 {
		m := watcher.next()
		wills[m.Topic] = m
	}
	if waited := time.Since(start); waited < time.Second {
		t.Errorf("wills published %v after the clients went quiet, want about 1.5 s (keep alive 1 s)", waited)
	}
	m5, m3 := wills["will/ka5"], wills["will/ka3"]
	if m5 == nil || m3 == nil {
		t.Fatalf("got wills on %v, want will/ka5 and will/ka3", slices.Collect(maps.Keys(wills)))
	}
	if string(m5.Payload) != "keep alive expired" || m5.Properties == nil ||
		!slices.Equal(m5.Properties.User, paho.UserProperties{{Key: "a", Value: "2"}, {Key: "c", Value: "3"}}) {
		t.Errorf("MQTT 5 will %q with properties %+v, want its payload and user properties a=2, c=3", m5.Payload, m5.Properties)
	}
	select {
	case d := <-quiet.disc:
		if d.ReasonCode != byte(packet.KeepAliveTimeout) {
			t.Errorf("quiet MQTT 5 client disconnected with %#x, want 0x8D (keep alive timeout)", d.ReasonCode)
		}
	case <-time.After(waitTimeout):
		t.Error("quiet MQTT 5 client got no DISCONNECT")
	}
}

// TestSessionExpiryRaisedOnDisconnect (suite: test_session_expiry): a client that connected with
// a session expiry of 1 s and raises it in its DISCONNECT keeps its session past the first
// interval. A twin that does not raise it is the barrier: once its session has expired, the
// raised one must still be there.
func TestSessionExpiryRaisedOnDisconnect(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	raisedID, twinID := uniqueID("raised"), uniqueID("twin")
	raised := persistentV5(t, srv, raisedID, true, 1)
	raised.sub("ser/t", 1)
	twin := persistentV5(t, srv, twinID, true, 1)
	twin.sub("ser/t", 1)
	raised.offline(srv, u32(300))
	twin.offline(srv, nil)

	eventually(t, waitTimeout, "the twin session (expiry 1 s) to expire", func() bool {
		return srv.Broker.Stats().Sessions.Load() <= 1
	})
	back := persistentV5(t, srv, raisedID, false, 1)
	if !back.ack.SessionPresent {
		t.Fatal("session whose expiry the DISCONNECT raised to 300 s ended with the 1 s one")
	}
	pub := v5(t, srv, uniqueID("serpub"))
	pub.pub("ser/t", 1, "still subscribed")
	back.expect("ser/t", "still subscribed")
}

// TestClientTopicAliasesEndWithConnection (suite: test_client_topic_alias): topic aliases a client
// set belong to the network connection: after it reconnects (resuming its session) a PUBLISH
// naming only the old alias is a protocol error, while the subscriptions survive.
func TestClientTopicAliasesEndWithConnection(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	id := uniqueID("aliases")
	c := persistentV5(t, srv, id, true, 300)
	c.sub("tae/t", 1)
	c.publish(&paho.Publish{Topic: "tae/t", QoS: 1, Payload: []byte("set"), Properties: &paho.PublishProperties{TopicAlias: u16(1)}})
	c.publish(&paho.Publish{Topic: "", QoS: 1, Payload: []byte("use"), Properties: &paho.PublishProperties{TopicAlias: u16(1)}})
	c.expect("tae/t", "set")
	c.expect("tae/t", "use")
	c.offline(srv, nil)

	c = persistentV5(t, srv, id, false, 300)
	if !c.ack.SessionPresent {
		t.Fatal("session not resumed")
	}
	c.pub("tae/t", 1, "named")
	if m := c.next(); !(m.Topic == "tae/t" && string(m.Payload) == "use" && m.Duplicate()) {
		// "use" comes again, marked as a duplicate, when the client's PUBACK for it did not
		// reach the server before the DISCONNECT: MQTT redelivers unacknowledged messages.
		if m.Topic != "tae/t" || string(m.Payload) != "named" {
			t.Fatalf("got %q %q, want %q %q", m.Topic, m.Payload, "tae/t", "named")
		}
	} else {
		c.expect("tae/t", "named")
	}
	// QoS 0: no acknowledgement to wait for, the answer is the server's DISCONNECT.
	if _, err := c.c.Publish(context.Background(), &paho.Publish{Topic: "", QoS: 0, Payload: []byte("stale"), Properties: &paho.PublishProperties{TopicAlias: u16(1)}}); err != nil {
		t.Fatalf("publish with the old alias: %v", err)
	}
	select {
	case d := <-c.disc:
		if d.ReasonCode != byte(packet.ProtocolError) {
			t.Errorf("alias from the previous connection: DISCONNECT %#x, want 0x82 (protocol error)", d.ReasonCode)
		}
	case <-time.After(waitTimeout):
		t.Fatal("alias from the previous connection accepted: no DISCONNECT")
	}
}

// TestEmptyClientIDWithoutCleanStartV5 (suite: test_zero_length_clientid): MQTT 5 drops 3.1.1's
// rule that an empty client id needs a clean session; the server assigns an id and starts fresh.
func TestEmptyClientIDWithoutCleanStartV5(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	c := connectV5(t, dialTCP(t, srv.Addr("mqtt")), &paho.Connect{ClientID: "", CleanStart: false})
	if c.ack.Properties == nil || c.ack.Properties.AssignedClientID == "" {
		t.Fatalf("no assigned client id: %+v", c.ack.Properties)
	}
	if c.ack.SessionPresent {
		t.Error("Session Present for a client id the server just assigned")
	}
}

// TestRedeliveryOnReconnectV311 (suite: test_redelivery_on_reconnect, 3.1.1): paho.mqtt.golang
// with acknowledgements held back receives a QoS 1 and a QoS 2 message and goes away without
// answering; on reconnect with Clean Session 0 both come again with DUP set, and once
// acknowledged not a third time.
func TestRedeliveryOnReconnectV311(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	broker := "tcp://" + srv.Addr("mqtt")
	id := uniqueID("redeliver3")
	persistent := func(o *mqtt3.ClientOptions) { o.SetCleanSession(false) }
	mute := connectV3(t, broker, id, persistent, func(o *mqtt3.ClientOptions) { o.SetAutoAckDisabled(true) })
	mute.sub("rd3/#", 2)
	mute.pub("rd3/one", 1, false, "qos 1")
	mute.pub("rd3/two", 2, false, "qos 2")
	mute.expect("rd3/one", "qos 1", 1)
	mute.expect("rd3/two", "qos 2", 2)
	before := srv.Broker.Stats().Connected.Load()
	mute.c.Disconnect(100)
	waitConnected(t, srv, before-1)

	c := connectV3(t, broker, id, persistent)
	for _, want := range []v3Message{{topic: "rd3/one", payload: "qos 1", qos: 1}, {topic: "rd3/two", payload: "qos 2", qos: 2}} {
		m := c.expect(want.topic, want.payload, want.qos)
		if !m.dup {
			t.Errorf("redelivered %s without DUP", m.topic)
		}
	}
	c.pub("rd3/marker", 1, false, "marker")
	c.expect("rd3/marker", "marker", 1)
}

// TestOverlappingSubscriptionsV311 (suite: test_overlapping_subscriptions, 3.1.1): a client whose
// two filters match one message gets it once, at the higher of the two QoS.
func TestOverlappingSubscriptionsV311(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	c := connectV3(t, "tcp://"+srv.Addr("mqtt"), uniqueID("overlap3"))
	tok := c.c.SubscribeMultiple(map[string]byte{"ov3/#": 2, "ov3/+": 1}, nil)
	if !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	c.pub("ov3/c", 2, false, "overlapping topic filters")
	c.expect("ov3/c", "overlapping topic filters", 2)
	// The marker matches only ov3/#: if the overlap had caused a second copy it would come first.
	c.pub("ov3/m/x", 1, false, "marker")
	c.expect("ov3/m/x", "marker", 1)
}

// TestConnectRefusalsFromTheSuite (suite: testBasic, test_basic): a CONNECT with a protocol name
// other than MQTT is refused and the connection closed, and so is a second CONNECT on a 3.1.1
// connection (the MQTT 5 case is in TestBadInput). Paho cannot send either, so the raw client
// does.
func TestConnectRefusalsFromTheSuite(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	for _, tc := range []struct {
		name  string
		level byte
		want  packet.ReasonCode
	}{
		{"3.1.1", 4, packet.V3RefusedProtocolVersion},
		{"5", 5, packet.UnsupportedProtocolVersion},
	} {
		t.Run("protocol name hj, level "+tc.name, func(t *testing.T) {
			r := newRaw(t, dialTCP(t, srv.Addr("mqtt")), packet.Version(tc.level))
			r.write(wire(0x10, str("hj"), []byte{tc.level, 0x02}, u16b(30), v5EmptyProps(tc.level), str(uniqueID("hj"))))
			seen := r.expectClosed()
			if len(seen) > 1 {
				t.Fatalf("got %d packets before the close, want at most a refusing CONNACK", len(seen))
			}
			if len(seen) == 1 {
				if ack, ok := seen[0].(*packet.Connack); !ok || ack.Reason != tc.want {
					t.Errorf("got %+v, want CONNACK %v", seen[0], tc.want)
				}
			}
		})
	}
	t.Run("second CONNECT on 3.1.1", func(t *testing.T) {
		id := uniqueID("twice3")
		r, _ := connectRaw(t, dialTCP(t, srv.Addr("mqtt")), &packet.Connect{Version: packet.V311, ClientID: []byte(id), CleanStart: true, KeepAlive: 30})
		r.send(&packet.Connect{Version: packet.V311, ClientID: []byte(id), CleanStart: true, KeepAlive: 30})
		if seen := r.expectClosed(); len(seen) != 0 {
			t.Errorf("got %d packets before the close, want none (3.1.1 has no server DISCONNECT)", len(seen))
		}
	})
}

// v5EmptyProps is the empty property block an MQTT 5 CONNECT carries after the keep alive.
func v5EmptyProps(level byte) []byte {
	if level == 5 {
		return []byte{0}
	}
	return nil
}
