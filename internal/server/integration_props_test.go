package server_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/eclipse/paho.golang/paho/extensions/rpc"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/ternmq/tern/internal/clock"
	"github.com/ternmq/tern/internal/config"
	"github.com/ternmq/tern/internal/mqtt/packet"
	"github.com/ternmq/tern/internal/server"
	"github.com/ternmq/tern/internal/server/servertest"
)

// TestPublishPropertiesEndToEnd: the MQTT 5 properties of a PUBLISH reach the subscriber intact:
// user properties in order with duplicates, response topic, correlation data, content type and
// payload format indicator.
func TestPublishPropertiesEndToEnd(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	sub := v5(t, srv, uniqueID("propsub"))
	sub.sub("props/t", 1)
	pub := v5(t, srv, uniqueID("proppub"))
	users := paho.UserProperties{
		{Key: "b", Value: "1"}, {Key: "a", Value: "2"}, {Key: "b", Value: "3"}, {Key: "b", Value: "1"}, {Key: "ü", Value: ""},
	}
	for qos := byte(0); qos <= 2; qos++ {
		pub.publish(&paho.Publish{
			Topic: "props/t", QoS: qos, Payload: []byte("héllo"),
			Properties: &paho.PublishProperties{
				User:            users,
				ResponseTopic:   "props/reply",
				CorrelationData: []byte{0, 1, 2, 0xff},
				ContentType:     "text/plain; charset=utf-8",
				PayloadFormat:   byteP(1),
			},
		})
		m := sub.expect("props/t", "héllo")
		p := m.Properties
		if p == nil {
			t.Fatalf("QoS %d: no properties", qos)
		}
		if !slices.Equal(p.User, users) {
			t.Errorf("QoS %d: user properties %v, want %v (order and duplicates kept)", qos, p.User, users)
		}
		if p.ResponseTopic != "props/reply" {
			t.Errorf("QoS %d: response topic %q", qos, p.ResponseTopic)
		}
		if string(p.CorrelationData) != "\x00\x01\x02\xff" {
			t.Errorf("QoS %d: correlation data %x", qos, p.CorrelationData)
		}
		if p.ContentType != "text/plain; charset=utf-8" {
			t.Errorf("QoS %d: content type %q", qos, p.ContentType)
		}
		if p.PayloadFormat == nil || *p.PayloadFormat != 1 {
			t.Errorf("QoS %d: payload format indicator %v, want 1", qos, p.PayloadFormat)
		}
		if p.MessageExpiry != nil {
			t.Errorf("QoS %d: message expiry %d appeared on a message without one", qos, *p.MessageExpiry)
		}
	}
	// A message without properties arrives without them.
	pub.pub("props/t", 1, "bare")
	if p := sub.expect("props/t", "bare").Properties; p != nil && (len(p.User) > 0 || p.ContentType != "" || p.CorrelationData != nil || p.ResponseTopic != "" || p.PayloadFormat != nil) {
		t.Errorf("bare message arrived with properties %+v", p)
	}
}

// TestMessageExpiry: a queued message whose expiry passes while its subscriber is offline is not
// delivered; one with a longer expiry arrives with the time it spent queued taken off. The core
// runs on a fake clock, so the test moves time instead of waiting for it.
func TestMessageExpiry(t *testing.T) {
	t.Parallel()
	clk := clock.NewFake(time.Now())
	srv := servertest.StartWith(t, []server.Option{server.WithClock(clk)})
	id := uniqueID("expsub")
	sub := persistentV5(t, srv, id, true, 300)
	sub.sub("exp/t", 1)
	sub.offline(srv, nil)

	pub := v5(t, srv, uniqueID("exppub"))
	pub.publish(&paho.Publish{Topic: "exp/t", QoS: 1, Payload: []byte("short"), Properties: &paho.PublishProperties{MessageExpiry: u32(1)}})
	pub.publish(&paho.Publish{Topic: "exp/t", QoS: 0, Payload: []byte("short q0"), Properties: &paho.PublishProperties{MessageExpiry: u32(1)}})
	pub.publish(&paho.Publish{Topic: "exp/t", QoS: 1, Payload: []byte("long"), Properties: &paho.PublishProperties{MessageExpiry: u32(60)}})
	// Retained messages expire too.
	pub.publish(&paho.Publish{Topic: "exp/r/short", QoS: 1, Retain: true, Payload: []byte("short"), Properties: &paho.PublishProperties{MessageExpiry: u32(1)}})
	pub.publish(&paho.Publish{Topic: "exp/r/long", QoS: 1, Retain: true, Payload: []byte("long"), Properties: &paho.PublishProperties{MessageExpiry: u32(60)}})

	clk.Advance(10 * time.Second)

	sub = persistentV5(t, srv, id, false, 300)
	m := sub.next()
	if string(m.Payload) != "long" {
		t.Fatalf("first message after reconnect is %q, want \"long\" (the others expired)", m.Payload)
	}
	if m.Properties == nil || m.Properties.MessageExpiry == nil {
		t.Fatal("queued message arrived without its message expiry interval")
	}
	if left := *m.Properties.MessageExpiry; left != 50 {
		t.Errorf("message expiry after 10 s queued = %d, want 50 (60 minus the time waited)", left)
	}
	sub.sub("$m", 1)
	pub.pub("$m", 1, "marker")
	if got := sub.until("$m"); len(got) != 0 {
		t.Errorf("unexpected after the queue: %s", describe(got))
	}
	if n := metric(t, srv, "tern_messages_expired_total"); n < 2 {
		t.Errorf("tern_messages_expired_total = %v, want at least the 2 queued messages", n)
	}

	late := v5(t, srv, uniqueID("explate"))
	late.sub("$m/late", 1)
	got := retainedOnSubscribe(late, "$m/late", paho.SubscribeOptions{Topic: "exp/r/#", QoS: 1})
	if len(got) != 1 || got[0].Topic != "exp/r/long" {
		t.Fatalf("retained after 10 s: %s, want only exp/r/long (exp/r/short expired)", describe(got))
	}
	if p := got[0].Properties; p == nil || p.MessageExpiry == nil || *p.MessageExpiry != 50 {
		t.Errorf("retained message expiry %+v, want 50", got[0].Properties)
	}

	// Live delivery passes the interval on (at most what was sent).
	pub.publish(&paho.Publish{Topic: "exp/t", QoS: 1, Payload: []byte("live"), Properties: &paho.PublishProperties{MessageExpiry: u32(30)}})
	m = sub.expect("exp/t", "live")
	if m.Properties == nil || m.Properties.MessageExpiry == nil || *m.Properties.MessageExpiry != 30 {
		t.Errorf("live message expiry %+v, want 30", m.Properties)
	}
}

// TestSubscriptionIdentifiers: one delivery per session even when two of its subscriptions
// match, carrying both subscription identifiers.
func TestSubscriptionIdentifiers(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	r, _ := rawV5(t, srv, &packet.Connect{ClientID: []byte(uniqueID("sids")), CleanStart: true, KeepAlive: 30})
	r.subscribe(1, 2, packet.Subscription{Filter: []byte("sid/+"), QoS: 1})
	r.subscribe(2, 3, packet.Subscription{Filter: []byte("sid/#"), QoS: 0})
	r.subscribe(3, 0, packet.Subscription{Filter: []byte("sid/none/#"), QoS: 0})

	pub := v5(t, srv, uniqueID("sidpub"))
	pub.pub("sid/x", 1, "both")
	pub.pub("sid/x/y", 1, "only 3")
	pub.pub("sid/none/z", 1, "3 and none")

	p := r.expectPublish("sid/x", "both")
	ids := slices.Clone(p.Props.SubscriptionIDs)
	slices.Sort(ids)
	if !slices.Equal(ids, []uint32{2, 3}) {
		t.Errorf("overlapping subscriptions: identifiers %v, want [2 3]", p.Props.SubscriptionIDs)
	}
	if p.QoS != 1 {
		t.Errorf("overlapping subscriptions of QoS 1 and 0: delivered at QoS %d, want 1", p.QoS)
	}
	r.send(&packet.Puback{PacketID: p.PacketID})
	// The next packet is the next message: the overlap did not cause a second delivery.
	p = r.expectPublish("sid/x/y", "only 3")
	if !slices.Equal(p.Props.SubscriptionIDs, []uint32{3}) {
		t.Errorf("identifiers %v, want [3]", p.Props.SubscriptionIDs)
	}
	p = r.expectPublish("sid/none/z", "3 and none")
	if !slices.Equal(p.Props.SubscriptionIDs, []uint32{3}) {
		t.Errorf("identifiers %v, want [3] (the subscription without an identifier adds none)", p.Props.SubscriptionIDs)
	}

	// paho.golang sees the identifier too.
	sub := v5(t, srv, uniqueID("sidpaho"))
	id := 77
	sub.subscribeProps(&paho.SubscribeProperties{SubscriptionIdentifier: &id}, paho.SubscribeOptions{Topic: "sid/paho", QoS: 1})
	pub.pub("sid/paho", 1, "x")
	if m := sub.expect("sid/paho", "x"); m.Properties == nil || m.Properties.SubscriptionIdentifier == nil || *m.Properties.SubscriptionIdentifier != id {
		t.Errorf("paho got subscription identifier %+v, want %d", m.Properties, id)
	}
}

// TestTopicAliasClientToServer: a publisher sets a topic alias with a topic, then publishes with
// the alias alone; both reach subscribers of the topic.
func TestTopicAliasClientToServer(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	sub := v5(t, srv, uniqueID("tasub"))
	sub.sub("ta/#", 1)
	pub := v5(t, srv, uniqueID("tapub"))
	if tam := pub.ack.Properties.TopicAliasMaximum; tam == nil || *tam == 0 {
		t.Fatalf("CONNACK topic alias maximum %v, want > 0", tam)
	}
	pub.publish(&paho.Publish{Topic: "ta/long/topic/name", QoS: 1, Payload: []byte("1"), Properties: &paho.PublishProperties{TopicAlias: u16(1)}})
	pub.publish(&paho.Publish{Topic: "", QoS: 1, Payload: []byte("2"), Properties: &paho.PublishProperties{TopicAlias: u16(1)}})
	pub.publish(&paho.Publish{Topic: "ta/other", QoS: 0, Payload: []byte("3"), Properties: &paho.PublishProperties{TopicAlias: u16(1)}})
	pub.publish(&paho.Publish{Topic: "", QoS: 2, Payload: []byte("4"), Properties: &paho.PublishProperties{TopicAlias: u16(1)}})
	sub.expect("ta/long/topic/name", "1")
	sub.expect("ta/long/topic/name", "2")
	sub.expect("ta/other", "3")
	sub.expect("ta/other", "4")
}

// TestTopicAliasServerToClient: a client announcing Topic Alias Maximum > 0 gets the second
// delivery on a topic with the alias and an empty topic; aliases stay within its maximum, and a
// client announcing none gets none.
func TestTopicAliasServerToClient(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	c := &packet.Connect{ClientID: []byte(uniqueID("alias")), CleanStart: true, KeepAlive: 30}
	c.Props.TopicAliasMax = 2
	c.Props.Set(packet.PropTopicAliasMax)
	r, _ := rawV5(t, srv, c)
	r.subscribe(1, 0, packet.Subscription{Filter: []byte("al/#"), QoS: 0})
	plain, _ := rawV5(t, srv, &packet.Connect{ClientID: []byte(uniqueID("noalias")), CleanStart: true, KeepAlive: 30})
	plain.subscribe(1, 0, packet.Subscription{Filter: []byte("al/#"), QoS: 0})

	pub := v5(t, srv, uniqueID("alpub"))
	topics := []string{"al/a", "al/a", "al/b", "al/c", "al/b", "al/a", "al/c"}
	for i, tp := range topics {
		pub.pub(tp, 1, fmt.Sprint(i))
	}
	aliases := map[uint16]string{}
	var first uint16
	for i, want := range topics {
		p := r.expectPublish("", fmt.Sprint(i))
		topic := string(p.Topic)
		if p.Props.Has(packet.PropTopicAlias) {
			a := p.Props.TopicAlias
			if a == 0 || a > 2 {
				t.Fatalf("message %d: alias %d outside the client's maximum 2", i, a)
			}
			if topic != "" {
				aliases[a] = topic
			} else {
				topic = aliases[a]
			}
			if i == 0 {
				first = a
			}
		}
		if topic != want {
			t.Fatalf("message %d resolves to %q, want %q", i, topic, want)
		}
		if i == 1 {
			if !p.Props.Has(packet.PropTopicAlias) || len(p.Topic) != 0 || p.Props.TopicAlias != first {
				t.Errorf("second delivery on al/a: topic %q alias %d, want empty topic with alias %d", p.Topic, p.Props.TopicAlias, first)
			}
		}
	}
	if first == 0 {
		t.Error("first delivery set no topic alias")
	}
	for i, want := range topics {
		p := plain.expectPublish(want, fmt.Sprint(i))
		if p.Props.Has(packet.PropTopicAlias) {
			t.Errorf("client without topic aliases got alias %d", p.Props.TopicAlias)
		}
	}

	// paho.golang's router resolves the aliases it is sent.
	routed := make(chan string, 10)
	router := paho.NewStandardRouter()
	router.RegisterHandler("al/a", func(p *paho.Publish) { routed <- string(p.Payload) })
	_ = connectV5(t, dialTCP(t, srv.Addr("mqtt")), &paho.Connect{
		ClientID: uniqueID("alpaho"), CleanStart: true,
		Properties: &paho.ConnectProperties{TopicAliasMaximum: u16(5)},
	}, func(cc *paho.ClientConfig) {
		cc.OnPublishReceived = nil
		cc.Router = router
	}).subscribe(paho.SubscribeOptions{Topic: "al/#", QoS: 0})
	pub.pub("al/a", 1, "x")
	pub.pub("al/a", 1, "y")
	for _, want := range []string{"x", "y"} {
		select {
		case got := <-routed:
			if got != want {
				t.Errorf("paho routed %q to al/a, want %q", got, want)
			}
		case <-time.After(waitTimeout):
			t.Fatalf("paho did not route %q to al/a", want)
		}
	}
}

// TestMaximumPacketSize: a message larger than the client's Maximum Packet Size is not sent to
// it (and counted), later small ones are.
func TestMaximumPacketSize(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	sub := connectV5(t, dialTCP(t, srv.Addr("mqtt")), &paho.Connect{
		ClientID: uniqueID("small"), CleanStart: true,
		Properties: &paho.ConnectProperties{MaximumPacketSize: u32(100)},
	})
	sub.sub("mps/t", 1)
	big := strings.Repeat("x", 200)
	pub := v5(t, srv, uniqueID("mpspub"))
	pub.pub("mps/t", 1, big)
	pub.pub("mps/t", 0, big)
	pub.pub("mps/t", 1, "small")
	m := sub.next()
	if string(m.Payload) != "small" {
		t.Fatalf("got a %d-byte message, want only the small one", len(m.Payload))
	}
	pub.pub("mps/t", 2, "small again")
	sub.expect("mps/t", "small again")
	if n := metric(t, srv, "tern_messages_dropped_too_large_total"); n != 2 {
		t.Errorf("tern_messages_dropped_too_large_total = %v, want 2", n)
	}
	// The CONNACK tells the client the server's own maximum.
	if mps := sub.ack.Properties.MaximumPacketSize; mps == nil || *mps != uint32(config.Default().MQTT.MaxPacketSize) {
		t.Errorf("CONNACK maximum packet size %v, want %d", mps, config.Default().MQTT.MaxPacketSize)
	}
}

// TestServerKeepAlive: with mqtt.max_keepalive 5, a client asking 60 s is told 5 s in the CONNACK,
// and the server enforces keep alive (1.5 times the interval).
func TestServerKeepAlive(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *config.Config) { c.MQTT.MaxKeepAlive = 5 })
	c := connectV5(t, dialTCP(t, srv.Addr("mqtt")), &paho.Connect{ClientID: uniqueID("ka"), CleanStart: true, KeepAlive: 60})
	if ka := c.ack.Properties.ServerKeepAlive; ka == nil || *ka != 5 {
		t.Errorf("CONNACK server keep alive %v, want 5", ka)
	}
	low := connectV5(t, dialTCP(t, srv.Addr("mqtt")), &paho.Connect{ClientID: uniqueID("ka"), CleanStart: true, KeepAlive: 3})
	if ka := low.ack.Properties.ServerKeepAlive; ka != nil && *ka != 3 {
		t.Errorf("client asking 3 s (below the maximum) told %d", *ka)
	}

	// A silent client is cut off after 1.5 keep alive intervals with DISCONNECT 0x8D.
	r, _ := rawV5(t, srv, &packet.Connect{ClientID: []byte(uniqueID("silent")), CleanStart: true, KeepAlive: 1})
	start := time.Now()
	seen := r.expectClosed()
	if len(seen) != 1 {
		t.Fatalf("silent client: got %d packets before the close, want one DISCONNECT", len(seen))
	}
	if d, ok := seen[0].(*packet.Disconnect); !ok || d.Reason != packet.KeepAliveTimeout {
		t.Errorf("silent client got %+v, want DISCONNECT 0x8D", seen[0])
	}
	if waited := time.Since(start); waited < time.Second {
		t.Errorf("keep alive 1 s enforced after %v, want about 1.5 s", waited)
	}
}

// TestAssignedClientID: an MQTT 5 client with an empty id gets one assigned in the CONNACK; a
// 3.1.1 client may use an empty id only with a clean session (else CONNACK 0x02).
func TestAssignedClientID(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	a := connectV5(t, dialTCP(t, srv.Addr("mqtt")), &paho.Connect{ClientID: "", CleanStart: true})
	b := connectV5(t, dialTCP(t, srv.Addr("mqtt")), &paho.Connect{ClientID: "", CleanStart: true})
	idA, idB := a.ack.Properties.AssignedClientID, b.ack.Properties.AssignedClientID
	if idA == "" || idB == "" || idA == idB {
		t.Fatalf("assigned client ids %q and %q, want two distinct non-empty ids", idA, idB)
	}
	if a.c.ClientID() != idA {
		t.Errorf("paho did not take the assigned id: %q", a.c.ClientID())
	}
	a.sub("aid/t", 1)
	b.pub("aid/t", 1, "x")
	a.expect("aid/t", "x")
	// A client given an id does not get one assigned.
	named := v5(t, srv, uniqueID("named"))
	if named.ack.Properties.AssignedClientID != "" {
		t.Errorf("client with an id was assigned %q", named.ack.Properties.AssignedClientID)
	}

	v3 := connectV3(t, "tcp://"+srv.Addr("mqtt"), "")
	v3.sub("aid/v3", 1)
	v3.pub("aid/v3", 1, false, "anon")
	v3.expect("aid/v3", "anon", 1)

	r := newRaw(t, dialTCP(t, srv.Addr("mqtt")), packet.V311)
	r.send(&packet.Connect{Version: packet.V311, ClientID: nil, CleanStart: false, KeepAlive: 30})
	ack := expectConnack(r)
	if ack.Reason != packet.V3RefusedIdentifierRejected || ack.SessionPresent {
		t.Errorf("3.1.1 empty id without clean session: CONNACK %d (present %v), want 2", ack.Reason, ack.SessionPresent)
	}
	r.expectClosed()

	// paho.mqtt.golang reports the same refusal.
	refused := newV3(t, "tcp://"+srv.Addr("mqtt"), "", func(o *mqtt3.ClientOptions) { o.SetCleanSession(false) })
	if err := refused.connect(); err == nil {
		t.Error("paho.mqtt.golang: empty id without clean session accepted")
	}
}

// TestNoLocal: a subscription with No Local does not get its own client's messages; others do.
func TestNoLocal(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	self := v5(t, srv, uniqueID("self"))
	self.subscribe(paho.SubscribeOptions{Topic: "nl/t", QoS: 1, NoLocal: true})
	self.sub("nl/marker", 1)
	other := v5(t, srv, uniqueID("other"))
	other.sub("nl/t", 1)

	self.pub("nl/t", 1, "mine")
	other.expect("nl/t", "mine")
	self.pub("nl/marker", 1, "marker")
	if got := self.until("nl/marker"); len(got) != 0 {
		t.Errorf("no-local subscriber got its own message: %s", describe(got))
	}
	other.pub("nl/t", 1, "theirs")
	self.expect("nl/t", "theirs")
}

// TestReasonStrings: a refused subscription and a protocol error carry a Reason String when the
// client did not turn problem information off; with it off, the SUBACK carries none.
func TestReasonStrings(t *testing.T) {
	t.Parallel()
	srv := startServer(t)

	t.Run("refused subscribe", func(t *testing.T) {
		c := v5(t, srv, uniqueID("badsub"))
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		sa, err := c.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "bad/#/filter", QoS: 1}}})
		if err == nil || sa == nil {
			t.Fatalf("invalid filter accepted: %v", err)
		}
		if len(sa.Reasons) != 1 || sa.Reasons[0] != 0x8F {
			t.Errorf("SUBACK reasons %x, want [8f]", sa.Reasons)
		}
		if sa.Properties == nil || sa.Properties.ReasonString == "" {
			t.Errorf("refused SUBACK carries no reason string")
		}
	})

	t.Run("refused subscribe, problem information off", func(t *testing.T) {
		c := &packet.Connect{ClientID: []byte(uniqueID("quiet")), CleanStart: true, KeepAlive: 30}
		c.Props.RequestProblemInfo = 0
		c.Props.Set(packet.PropRequestProblemInfo)
		r, _ := rawV5(t, srv, c)
		ack := r.subscribe(1, 0, packet.Subscription{Filter: []byte("bad/#/filter"), QoS: 1})
		if len(ack.Reasons) != 1 || ack.Reasons[0] != packet.TopicFilterInvalid {
			t.Errorf("SUBACK reasons %v, want [0x8F]", ack.Reasons)
		}
		if ack.Props.Has(packet.PropReasonString) {
			t.Errorf("SUBACK carries reason string %q though problem information is off", ack.Props.ReasonString)
		}
	})

	t.Run("protocol error", func(t *testing.T) {
		r, _ := rawV5(t, srv, &packet.Connect{ClientID: []byte(uniqueID("proto")), CleanStart: true, KeepAlive: 30})
		// A client may not send subscription identifiers.
		p := &packet.Publish{Topic: []byte("pe/t"), QoS: 0, Payload: []byte("x")}
		p.Props.SubscriptionIDs = []uint32{5}
		r.send(p)
		seen := r.expectClosed()
		if len(seen) != 1 {
			t.Fatalf("got %d packets, want one DISCONNECT", len(seen))
		}
		d, ok := seen[0].(*packet.Disconnect)
		if !ok || d.Reason != packet.ProtocolError {
			t.Fatalf("got %+v, want DISCONNECT 0x82", seen[0])
		}
		if len(d.Props.ReasonString) == 0 {
			t.Error("protocol error DISCONNECT carries no reason string")
		}
	})
}

// TestNoMatchingSubscribers: a QoS 1 or 2 publish nobody receives is acknowledged with reason 0x10;
// once someone subscribes it is 0x00.
func TestNoMatchingSubscribers(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	pub := v5(t, srv, uniqueID("lonely"))
	if resp := pub.pub("nobody/home", 1, "x"); resp.ReasonCode != 0x10 {
		t.Errorf("PUBACK reason %#x, want 0x10", resp.ReasonCode)
	}
	r, _ := rawV5(t, srv, &packet.Connect{ClientID: []byte(uniqueID("lonely2")), CleanStart: true, KeepAlive: 30})
	r.send(&packet.Publish{Topic: []byte("nobody/home"), QoS: 2, PacketID: 9, Payload: []byte("x")})
	if rec := expectPacket[*packet.Pubrec](r); rec.PacketID != 9 || rec.Reason != packet.NoMatchingSubscribers {
		t.Errorf("PUBREC %+v, want id 9 reason 0x10", rec)
	}
	r.send(&packet.Pubrel{PacketID: 9})
	if comp := expectPacket[*packet.Pubcomp](r); comp.PacketID != 9 || comp.Reason != packet.Success {
		t.Errorf("PUBCOMP %+v, want id 9 reason 0", comp)
	}
	sub := v5(t, srv, uniqueID("home"))
	sub.sub("nobody/home", 0)
	if resp := pub.pub("nobody/home", 1, "y"); resp.ReasonCode != 0 {
		t.Errorf("with a subscriber: PUBACK reason %#x, want 0", resp.ReasonCode)
	}
}

// TestRequestResponse: a requester (paho's rpc extension) and a responder that answers on the
// Response Topic with the Correlation Data; concurrent requests get their own answers. A client
// asking for Response Information gets a topic prefix it can use for responses.
func TestRequestResponse(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	responder := v5(t, srv, uniqueID("responder"))
	responder.sub("svc/echo", 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case m := <-responder.msgs:
				if m.Properties == nil || m.Properties.ResponseTopic == "" {
					continue
				}
				pctx, pcancel := context.WithTimeout(ctx, waitTimeout)
				_, _ = responder.c.Publish(pctx, &paho.Publish{
					Topic: m.Properties.ResponseTopic, QoS: 1, Payload: append([]byte("echo: "), m.Payload...),
					Properties: &paho.PublishProperties{CorrelationData: m.Properties.CorrelationData},
				})
				pcancel()
			}
		}
	}()

	requester := v5(t, srv, uniqueID("requester"))
	h, err := rpc.NewHandler(ctx, requester.c)
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 5)
	for i := 0; i < 5; i++ {
		go func() {
			rctx, rcancel := context.WithTimeout(ctx, waitTimeout)
			defer rcancel()
			payload := fmt.Sprintf("request %d", i)
			resp, err := h.Request(rctx, &paho.Publish{Topic: "svc/echo", QoS: 1, Payload: []byte(payload)})
			if err == nil && string(resp.Payload) != "echo: "+payload {
				err = fmt.Errorf("request %q answered %q", payload, resp.Payload)
			}
			errs <- err
		}()
	}
	for i := 0; i < 5; i++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}

	// Response Information: the prefix is usable as a response topic.
	asker := connectV5(t, dialTCP(t, srv.Addr("mqtt")), &paho.Connect{
		ClientID: uniqueID("asker"), CleanStart: true,
		Properties: &paho.ConnectProperties{RequestResponseInfo: true},
	})
	info := asker.ack.Properties.ResponseInfo
	if info == "" {
		t.Fatal("CONNACK has no Response Information though it was requested")
	}
	asker.sub(info+"/#", 1)
	asker.publish(&paho.Publish{Topic: "svc/echo", QoS: 1, Payload: []byte("via info"), Properties: &paho.PublishProperties{
		ResponseTopic: info + "/1", CorrelationData: []byte("c-1"),
	}})
	m := asker.expect(info+"/1", "echo: via info")
	if string(m.Properties.CorrelationData) != "c-1" {
		t.Errorf("correlation data %q, want c-1", m.Properties.CorrelationData)
	}
	// Without the request there is no Response Information.
	if plain := v5(t, srv, uniqueID("noinfo")); plain.ack.Properties.ResponseInfo != "" {
		t.Errorf("Response Information %q sent without being requested", plain.ack.Properties.ResponseInfo)
	}
}
