package server_test

import (
	"os"
	"testing"

	"github.com/ternmq/tern/internal/mqtt/packet"
)

// TestSubscribeBeforePublishAcrossConnections: client B sends SUBSCRIBE and, without waiting for
// its SUBACK, client A publishes on the topic over another connection. B's bytes reach the server
// first, so B must get A's message, as it does from a broker that reads its sockets in the order
// they became readable. MQTT does not promise this order across connections, but request/response
// clients (and the Paho interoperability suite's test_subscribe_options and
// test_request_response) rely on it.
//
// The check needs no timing: A's PUBACK must not say "no matching subscribers", and after B's
// SUBACK, A publishes a marker, and the first PUBLISH B receives must be A's first message, not
// the marker. (The server may send a matching PUBLISH before the SUBACK, so B collects packets in
// any order.) Run it with -count=200 to see how often the order breaks.
func TestSubscribeBeforePublishAcrossConnections(t *testing.T) {
	if os.Getenv("TERNTEST_ORDER") == "" {
		// The order is best effort (docs/decisions.md, "Subscribe, then publish on another
		// connection"): about 1 run in 25 still loses it on a loaded 2-core machine, which would
		// make CI flaky. TERNTEST_ORDER=1 go test -run TestSubscribeBeforePublish -count=200
		// measures the rate.
		t.Skip("best effort; set TERNTEST_ORDER=1 to measure")
	}
	t.Parallel()
	srv := startServer(t)
	const topic = "order/request"
	a, _ := rawV5(t, srv, &packet.Connect{ClientID: []byte(uniqueID("order-a")), CleanStart: true})
	b, _ := rawV5(t, srv, &packet.Connect{ClientID: []byte(uniqueID("order-b")), CleanStart: true})
	// As in the suite: A is subscribed itself (no local), so both connections have handled a
	// packet and wait for the next.
	a.subscribe(1, 0, packet.Subscription{Filter: []byte(topic), QoS: 2, NoLocal: true})

	// Two writes, B's first, back to back.
	b.send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: []byte(topic), QoS: 1, NoLocal: true}}})
	a.send(&packet.Publish{Topic: []byte(topic), QoS: 1, PacketID: 2, Payload: []byte("request")})

	// A is the only other subscriber and excludes itself, so "no matching subscribers" is the
	// server saying it routed A's message before B's subscription.
	if ack := expectPacket[*packet.Puback](a); ack.PacketID != 2 || ack.Reason != packet.Success {
		t.Fatalf("PUBACK %d reason %v, want 2 success: A's PUBLISH, sent after B's SUBSCRIBE, was routed before the subscription", ack.PacketID, ack.Reason)
	}
	var first *packet.Publish
	for subacked := false; !subacked; {
		switch p := b.next().(type) {
		case *packet.Suback:
			if p.PacketID != 1 || len(p.Reasons) != 1 || p.Reasons[0] != packet.GrantedQoS1 {
				t.Fatalf("SUBACK %d %v, want 1 [granted QoS 1]", p.PacketID, p.Reasons)
			}
			subacked = true
		case *packet.Publish:
			if first == nil {
				first = p
			}
		default:
			t.Fatalf("B got %s before its SUBACK", packet.TypeName(p.Type()))
		}
	}
	if first == nil {
		// A's request was routed before the subscription, or is on its way: the marker, sent
		// now that B is certainly subscribed, arrives after it either way.
		a.send(&packet.Publish{Topic: []byte(topic), QoS: 1, PacketID: 3, Payload: []byte("marker")})
		first = expectPacket[*packet.Publish](b)
	}
	if string(first.Payload) != "request" {
		t.Fatalf("B's first message is %q: A's PUBLISH, sent after B's SUBSCRIBE, was routed before the subscription", first.Payload)
	}
}
