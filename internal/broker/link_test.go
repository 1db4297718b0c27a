package broker

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/message"
	"github.com/ternmq/tern/internal/store/memstore"
)

func seqs(ds []Delivery) []uint64 {
	var out []uint64
	for _, d := range ds {
		out = append(out, d.Seq)
	}
	return out
}

// A sequenced session numbers its QoS 1/2 deliveries densely in the order it takes them, live or
// queued; a delivery sent again keeps its number, and after a restart the count goes on.
func TestSequencedSessionNumbersDeliveries(t *testing.T) {
	st := memstore.New()
	b1, _ := newBrokerOn(t, st, nil)
	trunk := ConnectRequest{ClientID: "$uplink/t", Expiry: hour, Sequenced: true, Principal: auth.Unrestricted("")}
	c, k, _ := connect(t, b1, trunk)
	subscribe(t, c, SubscribeRequest{Filter: "ns/#", QoS: 1})
	pub, _, _ := connect(t, b1, ConnectRequest{ClientID: "pub"})
	publish(t, pub, "ns/a", "1", 1, false)
	publish(t, pub, "ns/a", "q0", 0, false)
	publish(t, pub, "ns/a", "2", 1, false)
	if got := seqs(k.deliveries()); !slices.Equal(got, []uint64{1, 0, 2}) {
		t.Fatalf("live numbers %v, want [1 0 2] (QoS 0 unnumbered)", got)
	}
	c.Acked(k.deliveries()[0].PacketID)
	// Gone away: what comes meanwhile queues with its number.
	c.Disconnect(DisconnectRequest{Graceful: true})
	publish(t, pub, "ns/b", "3", 1, false)
	publish(t, pub, "ns/b", "4", 2, false)

	// A restart: the unacknowledged delivery comes again with its number, then the queue.
	b2, _ := newBrokerOn(t, st, nil)
	c2, k2, _ := connect(t, b2, trunk)
	if got := seqs(k2.deliveries()); !slices.Equal(got, []uint64{2, 3, 4}) {
		t.Fatalf("after the restart %v, want [2 3 4]", got)
	}
	if !k2.deliveries()[0].Dup {
		t.Fatal("the delivery in flight was not marked a duplicate")
	}
	for _, d := range k2.deliveries() {
		c2.Acked(d.PacketID)
	}
	// Everything acknowledged and nothing queued: the count still goes on after another restart.
	c2.Disconnect(DisconnectRequest{Graceful: true})
	b3, _ := newBrokerOn(t, st, nil)
	_, k3, _ := connect(t, b3, trunk)
	pub3, _, _ := connect(t, b3, ConnectRequest{ClientID: "pub"})
	publish(t, pub3, "ns/c", "5", 1, false)
	if got := seqs(k3.deliveries()); !slices.Equal(got, []uint64{5}) {
		t.Fatalf("after an idle restart %v, want [5]", got)
	}
}

// A message the queue limits drop leaves a hole in the numbers, which upstream sees as a gap.
func TestSequencedDropLeavesAHole(t *testing.T) {
	b, _ := newBrokerOn(t, memstore.New(), func(c *Config) { c.Queue = QueueLimits{MaxMessages: 2} })
	trunk := ConnectRequest{ClientID: "$uplink/t", Expiry: hour, Sequenced: true, Principal: auth.Unrestricted("")}
	c, _, _ := connect(t, b, trunk)
	subscribe(t, c, SubscribeRequest{Filter: "ns/#", QoS: 1})
	c.Disconnect(DisconnectRequest{Graceful: true})
	pub, _, _ := connect(t, b, ConnectRequest{ClientID: "pub"})
	for _, p := range []string{"1", "2", "3"} {
		publish(t, pub, "ns/a", p, 1, false)
	}
	_, k, _ := connect(t, b, trunk)
	if got := seqs(k.deliveries()); !slices.Equal(got, []uint64{2, 3}) {
		t.Fatalf("numbers %v, want [2 3]: the oldest was dropped", got)
	}
}

// A peer's forwarded messages: the route grant decides, the sender shows where it came from, a
// number already taken is a duplicate, skipped numbers are gaps, and the mark survives a restart.
func TestPublishRouted(t *testing.T) {
	st := memstore.New()
	f := &fakeAuth{grants: map[string][]string{"site-a": {"route:bldg1/#"}, "watch": {"subscribe:#"}}}
	withAuth := func(c *Config) { c.Auth = f }
	b, _ := newBrokerOn(t, st, withAuth)
	w, k, _ := connect(t, b, login("watch", "watch"))
	subscribe(t, w, SubscribeRequest{Filter: "#", QoS: 1})

	peerReq := func(id string) ConnectRequest {
		return ConnectRequest{ClientID: id, Expiry: hour, Peer: true, Credentials: auth.Credentials{Username: "site-a"}}
	}
	if _, _, err := b.Connect(context.Background(), withSink(peerReq("$route/site-b/r1"))); !errors.Is(err, ErrClientIDReserved) {
		t.Fatalf("a peer took another router's id: %v", err)
	}
	if _, _, err := b.Connect(context.Background(), withSink(peerReq("plain"))); !errors.Is(err, ErrClientIDReserved) {
		t.Fatalf("a peer took a client's id: %v", err)
	}
	p, _, _ := connect(t, b, peerReq("$route/site-a/r1"))
	route := func(seq uint64, topic, payload string) (PublishResult, error) {
		return p.PublishRouted(&message.Message{Topic: topic, Payload: []byte(payload), QoS: 1}, Route{Seq: seq, Sender: "alice"})
	}
	for _, seq := range []uint64{1, 2} {
		if _, err := route(seq, "bldg1/t", "m"); err != nil {
			t.Fatal(err)
		}
	}
	if res, err := route(2, "bldg1/t", "again"); err != nil || !res.Duplicate {
		t.Fatalf("a number already taken: %+v %v, want a duplicate", res, err)
	}
	if _, err := route(5, "bldg1/t", "after a gap"); err != nil {
		t.Fatal(err)
	}
	if _, err := route(6, "other/t", "x"); !errors.Is(err, ErrNotAuthorized) {
		t.Fatalf("outside the route grant: %v", err)
	}
	wantPayloads(t, k, "m", "m", "after a gap")
	if s := k.deliveries()[0].Msg.Sender; s != "site-a/alice" {
		t.Fatalf("sender %q, want site-a/alice", s)
	}
	if d, g := b.Stats().RoutedDuplicates.Load(), b.Stats().RoutedGaps.Load(); d != 1 || g != 2 {
		t.Fatalf("duplicates %d gaps %d, want 1 and 2", d, g)
	}

	b2, _ := newBrokerOn(t, st, withAuth)
	w2, k2, _ := connect(t, b2, login("watch", "watch2"))
	subscribe(t, w2, SubscribeRequest{Filter: "#", QoS: 1})
	p2, _, _ := connect(t, b2, peerReq("$route/site-a/r1"))
	if res, err := p2.PublishRouted(&message.Message{Topic: "bldg1/t", Payload: []byte("5 again"), QoS: 1}, Route{Seq: 5}); err != nil || !res.Duplicate {
		t.Fatalf("after a restart, a number taken before: %+v %v", res, err)
	}
	wantPayloads(t, k2)
}

func withSink(req ConnectRequest) ConnectRequest {
	req.Sink = &sink{}
	return req
}

// Interest lists what sessions subscribe to, shared ones by their filter, offline ones too, and
// leaves router links out; watchers hear when a filter joins or leaves.
func TestInterest(t *testing.T) {
	b, _ := newTestBroker(t, nil)
	changes := 0
	b.WatchInterest(func() { changes++ })
	a, _, _ := connect(t, b, ConnectRequest{ClientID: "a", Expiry: hour})
	subscribe(t, a, SubscribeRequest{Filter: "x/#"}, SubscribeRequest{Filter: "$share/g/y/+"})
	c, _, _ := connect(t, b, ConnectRequest{ClientID: "c"})
	subscribe(t, c, SubscribeRequest{Filter: "x/#"})
	up, _, _ := connect(t, b, ConnectRequest{ClientID: "$uplink/u", Principal: auth.Unrestricted("")})
	subscribe(t, up, SubscribeRequest{Filter: "z/#"})
	a.Disconnect(DisconnectRequest{Graceful: true}) // offline, still subscribed
	if got := b.Interest(); !slices.Equal(got, []string{"x/#", "y/+"}) {
		t.Fatalf("interest %v", got)
	}
	if changes != 2 {
		t.Fatalf("%d changes, want 2 (x/# once, y/+)", changes)
	}
	c.Unsubscribe([]string{"x/#"})
	if changes != 2 || len(b.Interest()) != 2 {
		t.Fatalf("x/# left while a still has it: %v, %d changes", b.Interest(), changes)
	}
	a2, _, _ := connect(t, b, ConnectRequest{ClientID: "a", CleanStart: true})
	_ = a2
	if got := b.Interest(); len(got) != 0 || changes != 4 {
		t.Fatalf("after the session ended: %v, %d changes", got, changes)
	}
}

// With Config.NoInterest the broker keeps no count of filters (nothing would read it), and a
// link asking for it is a wiring mistake it reports at once.
func TestNoInterestKeepsNone(t *testing.T) {
	b, _ := newTestBroker(t, func(c *Config) { c.NoInterest = true })
	a, _, _ := connect(t, b, ConnectRequest{ClientID: "a", Expiry: hour})
	subscribe(t, a, SubscribeRequest{Filter: "x/#"}, SubscribeRequest{Filter: "$share/g/y/+"})
	a.Unsubscribe([]string{"x/#"})
	b.interest.mu.Lock()
	full, shared := b.interest.full, b.interest.shared
	b.interest.mu.Unlock()
	if full != nil || shared != nil {
		t.Fatalf("interest kept: %v %v", full, shared)
	}
	for name, ask := range map[string]func(){
		"Interest":        func() { b.Interest() },
		"InterestFilters": func() { b.InterestFilters() },
		"WatchInterest":   func() { b.WatchInterest(func() {}) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s on a broker without interest did not panic", name)
				}
			}()
			ask()
		}()
	}
}
