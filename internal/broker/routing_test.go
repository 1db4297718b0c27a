package broker

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/message"
)

func TestWildcardRoutingAndStamping(t *testing.T) {
	b, _ := newTestBroker(t, nil)
	pub, _, _ := connect(t, b, ConnectRequest{ClientID: "pub", Credentials: auth.Credentials{CertIdentity: "alice"}, CleanStart: true})
	sub, k, _ := connect(t, b, ConnectRequest{ClientID: "sub", CleanStart: true})
	subscribe(t, sub, SubscribeRequest{Filter: "a/+/c", QoS: 1}, SubscribeRequest{Filter: "x/#"})
	publish(t, pub, "a/b/c", "1", 0, false)
	publish(t, pub, "a/b/d", "no", 0, false)
	publish(t, pub, "x", "2", 0, false)
	publish(t, pub, "x/y/z", "3", 1, false)
	wantPayloads(t, k, "1", "2", "3")
	d := k.deliveries()
	if d[0].Msg.Sender != "alice" || d[0].Msg.ID == 0 || d[0].Msg.Time == 0 {
		t.Fatalf("message not stamped: %+v", d[0].Msg)
	}
	if d[1].Msg.ID <= d[0].Msg.ID {
		t.Fatalf("ids not increasing: %d then %d", d[0].Msg.ID, d[1].Msg.ID)
	}
	// x/# was granted QoS 0, so the QoS 1 message arrives at QoS 0.
	if d[2].QoS != 0 {
		t.Fatalf("QoS not downgraded to the subscription's: %d", d[2].QoS)
	}
}

func TestSenderCannotBeForged(t *testing.T) {
	b, _ := newTestBroker(t, nil)
	pub, _, _ := connect(t, b, ConnectRequest{ClientID: "pub", Credentials: auth.Credentials{CertIdentity: "alice"}, CleanStart: true})
	sub, k, _ := connect(t, b, ConnectRequest{ClientID: "sub", CleanStart: true})
	subscribe(t, sub, SubscribeRequest{Filter: "t"})
	if _, err := pub.Publish(&message.Message{Topic: "t", Sender: "mallory", ID: 7}); err != nil {
		t.Fatal(err)
	}
	d := k.deliveries()[0]
	if d.Msg.Sender != "alice" || d.Msg.ID == 7 {
		t.Fatalf("client-supplied sender or id survived: %+v", d.Msg)
	}
}

func TestNoLocalSkipsOnlyThePublisher(t *testing.T) {
	b, _ := newTestBroker(t, nil)
	a, ka, _ := connect(t, b, ConnectRequest{ClientID: "a", CleanStart: true})
	c, kc, _ := connect(t, b, ConnectRequest{ClientID: "c", CleanStart: true})
	subscribe(t, a, SubscribeRequest{Filter: "TopicA", QoS: 2, NoLocal: true})
	subscribe(t, c, SubscribeRequest{Filter: "TopicA", QoS: 2, NoLocal: true})
	res := publish(t, a, "TopicA", "from a", 1, false)
	wantPayloads(t, ka)
	wantPayloads(t, kc, "from a")
	if res.Matched != 1 {
		t.Fatalf("matched %d, want 1", res.Matched)
	}
}

func TestOverlappingSubscriptionsMergeIntoOneDelivery(t *testing.T) {
	b, _ := newTestBroker(t, nil)
	c, k, _ := connect(t, b, ConnectRequest{ClientID: "c", CleanStart: true})
	subscribe(t, c, SubscribeRequest{Filter: "a/#", QoS: 0, ID: 2})
	subscribe(t, c, SubscribeRequest{Filter: "a/+", QoS: 2, ID: 3})
	subscribe(t, c, SubscribeRequest{Filter: "a/b", QoS: 1})
	publish(t, c, "a/b", "m", 2, false)
	d := k.deliveries()
	if len(d) != 1 {
		t.Fatalf("%d deliveries, want 1", len(d))
	}
	ids := slices.Sorted(slices.Values(d[0].SubIDs))
	if d[0].QoS != 2 || fmt.Sprint(ids) != "[2 3]" {
		t.Fatalf("merged delivery qos %d ids %v, want qos 2 ids [2 3]", d[0].QoS, ids)
	}
}

func TestNoMatchingSubscribers(t *testing.T) {
	b, _ := newTestBroker(t, nil)
	c, _, _ := connect(t, b, ConnectRequest{ClientID: "c", CleanStart: true})
	if res := publish(t, c, "nobody/here", "x", 1, false); res.Matched != 0 {
		t.Fatalf("matched %d", res.Matched)
	}
}

func TestInvalidTopicsRefused(t *testing.T) {
	b, _ := newTestBroker(t, nil)
	c, _, _ := connect(t, b, ConnectRequest{ClientID: "c", CleanStart: true})
	for _, topic := range []string{"", "a/+", "a/#", "a\x00b"} {
		if _, err := c.Publish(&message.Message{Topic: topic}); err != ErrTopicInvalid {
			t.Errorf("publish to %q: %v, want ErrTopicInvalid", topic, err)
		}
	}
	res := c.Subscribe([]SubscribeRequest{{Filter: "a/#/b"}, {Filter: "$share/g"}, {Filter: "ok/+"}})
	if res[0].Err != ErrFilterInvalid || res[1].Err != ErrFilterInvalid || res[2].Err != nil {
		t.Fatalf("filter validation: %v %v %v", res[0].Err, res[1].Err, res[2].Err)
	}
}

func TestDollarTopicsNotMatchedByLeadingWildcard(t *testing.T) {
	b, _ := newTestBroker(t, nil)
	c, k, _ := connect(t, b, ConnectRequest{ClientID: "c", CleanStart: true})
	subscribe(t, c, SubscribeRequest{Filter: "#"}, SubscribeRequest{Filter: "+/x"})
	publish(t, c, "$SYS/x", "hidden", 0, false)
	publish(t, c, "a/x", "seen", 0, false)
	wantPayloads(t, k, "seen")
	subscribe(t, c, SubscribeRequest{Filter: "$SYS/#"})
	publish(t, c, "$SYS/x", "explicit", 0, false)
	wantPayloads(t, k, "seen", "explicit")
}

func TestSharedSubscriptionRoundRobinSkipsOffline(t *testing.T) {
	b, _ := newTestBroker(t, nil)
	pub, _, _ := connect(t, b, ConnectRequest{ClientID: "pub", CleanStart: true})
	m1, k1, _ := connect(t, b, ConnectRequest{ClientID: "m1", Expiry: 100})
	m2, k2, _ := connect(t, b, ConnectRequest{ClientID: "m2", CleanStart: true})
	plain, kp, _ := connect(t, b, ConnectRequest{ClientID: "plain", CleanStart: true})
	subscribe(t, m1, SubscribeRequest{Filter: "$share/g/jobs/+", QoS: 1})
	subscribe(t, m2, SubscribeRequest{Filter: "$share/g/jobs/+", QoS: 1})
	subscribe(t, plain, SubscribeRequest{Filter: "jobs/#"})
	for i := 0; i < 10; i++ {
		publish(t, pub, "jobs/x", fmt.Sprint(i), 1, false)
	}
	n1, n2 := len(k1.payloads()), len(k2.payloads())
	if n1+n2 != 10 || n1 != 5 {
		t.Fatalf("shared split %d/%d, want 5/5", n1, n2)
	}
	if len(kp.payloads()) != 10 {
		t.Fatalf("plain subscriber got %d, want all 10", len(kp.payloads()))
	}
	// With m1 offline (its session persists) every message goes to m2.
	m1.Disconnect(DisconnectRequest{Graceful: true})
	k2.reset()
	for i := 0; i < 6; i++ {
		publish(t, pub, "jobs/x", fmt.Sprint(i), 1, false)
	}
	if len(k2.payloads()) != 6 {
		t.Fatalf("online member got %d of 6", len(k2.payloads()))
	}
}

func TestTwoGroupsEachGetACopy(t *testing.T) {
	b, _ := newTestBroker(t, nil)
	a, ka, _ := connect(t, b, ConnectRequest{ClientID: "a", CleanStart: true})
	c, kc, _ := connect(t, b, ConnectRequest{ClientID: "c", CleanStart: true})
	subscribe(t, a, SubscribeRequest{Filter: "$share/g1/t"})
	subscribe(t, c, SubscribeRequest{Filter: "$share/g2/t"})
	if res := publish(t, a, "t", "x", 0, false); res.Matched != 2 {
		t.Fatalf("matched %d, want 2", res.Matched)
	}
	wantPayloads(t, ka, "x")
	wantPayloads(t, kc, "x")
}

func TestUnsubscribe(t *testing.T) {
	b, _ := newTestBroker(t, nil)
	c, k, _ := connect(t, b, ConnectRequest{ClientID: "c", CleanStart: true})
	subscribe(t, c, SubscribeRequest{Filter: "t"})
	got := c.Unsubscribe([]string{"t", "never"})
	if !got[0] || got[1] {
		t.Fatalf("unsubscribe existed = %v", got)
	}
	publish(t, c, "t", "x", 0, false)
	wantPayloads(t, k)
	if b.Stats().Subscriptions.Load() != 0 {
		t.Fatalf("subscription gauge %d", b.Stats().Subscriptions.Load())
	}
}

func TestSubscriptionQuota(t *testing.T) {
	b, _ := newTestBroker(t, func(c *Config) { c.MaxSubscriptions = 2 })
	c, _, _ := connect(t, b, ConnectRequest{ClientID: "c", CleanStart: true})
	res := c.Subscribe([]SubscribeRequest{{Filter: "a"}, {Filter: "b"}, {Filter: "c"}, {Filter: "a", QoS: 1}})
	if res[0].Err != nil || res[1].Err != nil || res[2].Err != ErrQuotaExceeded || res[3].Err != nil {
		t.Fatalf("quota results: %+v", res)
	}
	if !res[3].Existed || res[3].QoS != 1 {
		t.Fatalf("resubscribe should replace: %+v", res[3])
	}
}

func TestMaxQoSCapsGrantsAndPublishes(t *testing.T) {
	b, _ := newTestBroker(t, func(c *Config) { c.MaxQoS = 1 })
	c, k, _ := connect(t, b, ConnectRequest{ClientID: "c", CleanStart: true})
	res := subscribe(t, c, SubscribeRequest{Filter: "t", QoS: 2})
	if res[0].QoS != 1 {
		t.Fatalf("granted %d, want 1", res[0].QoS)
	}
	publish(t, c, "t", "x", 2, false)
	if d := k.deliveries(); d[0].QoS != 1 {
		t.Fatalf("delivered at %d", d[0].QoS)
	}
}

func TestCongestedReceiverGivesBackpressure(t *testing.T) {
	b, _ := newTestBroker(t, nil)
	pub, _, _ := connect(t, b, ConnectRequest{ClientID: "pub", CleanStart: true})
	sub, k, _ := connect(t, b, ConnectRequest{ClientID: "sub", CleanStart: true})
	subscribe(t, sub, SubscribeRequest{Filter: "t"})
	if res := publish(t, pub, "t", "calm", 0, false); res.Backpressure != nil {
		t.Fatal("backpressure without congestion")
	}
	k.setResult(Congested)
	res := publish(t, pub, "t", "busy", 0, false)
	if res.Backpressure == nil || res.Backpressure != k.Drained() {
		t.Fatal("congested receiver's Drained channel not handed to the publisher")
	}
	wantPayloads(t, k, "calm", "busy")
	if got := b.Stats().Delivered.Load(); got != 2 {
		t.Fatalf("delivered %d, want 2 (congested still delivers)", got)
	}
}

// Received counts what clients sent, not the broker's own server events.
func TestReceivedLeavesOutServerEvents(t *testing.T) {
	b, _ := newTestBroker(t, nil)
	watch, k, _ := connect(t, b, ConnectRequest{ClientID: "watch"})
	subscribe(t, watch, SubscribeRequest{Filter: "$SYS/events/#"})
	c, _, _ := connect(t, b, ConnectRequest{ClientID: "c", Announce: true})
	publish(t, c, "t", "x", 0, false)
	if len(k.deliveries()) == 0 {
		t.Fatal("no server event was published: the test proves nothing")
	}
	if n := b.Stats().Received.Load(); n != 1 {
		t.Fatalf("received %d, want 1 (the client's message only)", n)
	}
}

// Connections are logged at debug level with client id, identity, face, address and reason.
func TestConnectionsLoggedAtDebug(t *testing.T) {
	var logs strings.Builder
	b, err := New(DefaultConfig(), nil, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	c, _, _ := connect(t, b, ConnectRequest{ClientID: "dev-1", Face: "mqtt", RemoteAddr: "192.0.2.7:5555",
		Principal: auth.Unrestricted("meter")})
	c.Disconnect(DisconnectRequest{Reason: "keep alive timeout"})
	for _, want := range []string{
		`msg="client connected" client=dev-1 identity=meter face=mqtt remote=192.0.2.7:5555`,
		`msg="client disconnected" client=dev-1 identity=meter face=mqtt remote=192.0.2.7:5555 reason="keep alive timeout"`,
	} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %s:\n%s", want, logs.String())
		}
	}
}

// A server event nobody would receive is not published at all; one whose own topic has a
// subscriber is, even when the others have none.
func TestServerEventsOnlyWhenSomeoneListens(t *testing.T) {
	b, _ := newTestBroker(t, nil)
	c, _, _ := connect(t, b, ConnectRequest{ClientID: "c", Announce: true})
	subscribe(t, c, SubscribeRequest{Filter: "a/#"})
	before := b.nextID.Load()
	c.Unsubscribe([]string{"a/#"})
	subscribe(t, c, SubscribeRequest{Filter: "b/#"})
	if n := b.nextID.Load() - before; n != 0 {
		t.Fatalf("%d messages published for events nobody listens to", n)
	}
	watch, k, _ := connect(t, b, ConnectRequest{ClientID: "watch"})
	subscribe(t, watch, SubscribeRequest{Filter: "$SYS/events/unsubscribed"})
	c.Unsubscribe([]string{"b/#"})
	subscribe(t, c, SubscribeRequest{Filter: "c/#"}) // nobody listens to subscribed
	got := k.deliveries()
	if len(got) != 1 || got[0].Msg.Topic != "$SYS/events/unsubscribed" || !strings.Contains(string(got[0].Msg.Payload), `"filter":"b/#"`) {
		t.Fatalf("deliveries %v, want the one unsubscribed event", got)
	}
}
