package broker

import (
	"errors"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/config"
	"github.com/ternmq/tern/internal/message"
	"github.com/ternmq/tern/internal/store/memstore"
)

func peerLogin(user, clientID string) ConnectRequest {
	return ConnectRequest{ClientID: clientID, Expiry: hour, Peer: true, Sequenced: true,
		Credentials: auth.Credentials{Username: user}}
}

// A peer router subscribes to what its route grant covers (and its own response prefix), not to
// what a subscribe grant would; at resume its subscriptions are checked the same way.
func TestPeerSubscriptionsFollowTheRouteGrant(t *testing.T) {
	f := &fakeAuth{grants: map[string][]string{
		"site-a": {"route:bldg1/#"},
		"user":   {"route:bldg1/#"},
		"sub":    {"subscribe:#"},
	}}
	b, _ := authBroker(t, f, nil)
	p, _, _ := connect(t, b, peerLogin("site-a", "$route/site-a/r1"))
	res := p.Subscribe([]SubscribeRequest{{Filter: "bldg1/#", QoS: 2}, {Filter: "other/#"},
		{Filter: ResponsePrefix("$route/site-a/r1") + "/#"}, {Filter: "$rpc/tern/query"}})
	if res[0].Err != nil || res[2].Err != nil {
		t.Fatalf("within the route grant / own responses: %v / %v", res[0].Err, res[2].Err)
	}
	if !errors.Is(res[1].Err, ErrNotAuthorized) || !errors.Is(res[3].Err, ErrNotAuthorized) {
		t.Fatalf("outside the route grant: %v, serving a procedure: %v", res[1].Err, res[3].Err)
	}
	// The same grant does not let a client that is not a peer subscribe; a subscribe grant does
	// not let a peer.
	u, _, _ := connect(t, b, login("user", "u"))
	if r := u.Subscribe([]SubscribeRequest{{Filter: "bldg1/#"}}); !errors.Is(r[0].Err, ErrNotAuthorized) {
		t.Fatalf("a client with a route grant subscribed: %v", r[0].Err)
	}
	sp, _, _ := connect(t, b, peerLogin("sub", "$route/sub/r1"))
	if r := sp.Subscribe([]SubscribeRequest{{Filter: "bldg1/#"}}); !errors.Is(r[0].Err, ErrNotAuthorized) {
		t.Fatalf("a peer with only a subscribe grant subscribed: %v", r[0].Err)
	}

	// Resumed with the grant unchanged, the subscription stays; withdrawn, it goes.
	p.Disconnect(DisconnectRequest{Graceful: true})
	_, _, _ = connect(t, b, peerLogin("site-a", "$route/site-a/r1"))
	if info, _ := b.Session("$route/site-a/r1"); info.Subscriptions != 2 {
		t.Fatalf("%d subscriptions after a resume, want 2 (bldg1/# and the responses)", info.Subscriptions)
	}
	f.grants["site-a"] = []string{"route:bldg2/#"}
	_, _, _ = connect(t, b, peerLogin("site-a", "$route/site-a/r1"))
	if info, _ := b.Session("$route/site-a/r1"); info.Subscriptions != 1 {
		t.Fatalf("%d subscriptions after the grant went, want 1 (the responses)", info.Subscriptions)
	}
}

// A peer asks the query procedure with its route grant; a client needs the call grant.
func TestPeerMayQuery(t *testing.T) {
	f := &fakeAuth{grants: map[string][]string{"site-a": {"route:bldg1/#"}, "user": {"subscribe:#"}, "pub": {"publish:#", "retain:#"}}}
	b, _ := authBroker(t, f, nil)
	pub, _, _ := connect(t, b, login("pub", "pub"))
	publish(t, pub, "bldg1/x", "kept", 1, true)
	p, k, _ := connect(t, b, peerLogin("site-a", "$route/site-a/r1"))
	reply := ResponsePrefix("$route/site-a/r1") + "/q"
	subscribe(t, p, SubscribeRequest{Filter: reply})
	call := &message.Message{Topic: QueryProcedure, Payload: []byte("bldg1/#")}
	call.Props.ResponseTopic = reply
	if _, err := p.Publish(call); err != nil {
		t.Fatalf("a peer's query: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(k.deliveries()) == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if ds := k.deliveries(); len(ds) != 1 {
		t.Fatal("no answer")
	} else if ans, err := DecodeQueryAnswer(ds[0].Msg.Payload); err != nil || len(ans.Messages) != 1 {
		t.Fatalf("answer %s: %v", ds[0].Msg.Payload, err)
	}
	u, _, _ := connect(t, b, login("user", "u"))
	call.Props.ResponseTopic = ResponsePrefix("u") + "/q"
	if _, err := u.Publish(call); !errors.Is(err, ErrNotAuthorized) {
		t.Fatalf("a client without the call grant: %v", err)
	}
}

// When the router upstream lost the link's session, its numbering starts again: ResetRouted makes
// the numbers it sends from 1 count as new, not as duplicates.
func TestResetRouted(t *testing.T) {
	b, _ := newBrokerOn(t, memstore.New(), nil)
	trunk, _, _ := connect(t, b, ConnectRequest{ClientID: "$uplink/u", Expiry: hour, Sequenced: true, Principal: auth.Unrestricted("$uplink/u")})
	w, k, _ := connect(t, b, ConnectRequest{ClientID: "w"})
	subscribe(t, w, SubscribeRequest{Filter: "ns/#", QoS: 1})
	route := func(seq uint64) PublishResult {
		res, err := trunk.PublishRouted(&message.Message{Topic: "ns/t", Payload: []byte{byte('0' + seq)}, QoS: 1}, Route{Seq: seq, Sender: "alice"})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	route(1)
	route(2)
	if !route(1).Duplicate {
		t.Fatal("a number taken was not a duplicate")
	}
	if err := trunk.ResetRouted(); err != nil {
		t.Fatal(err)
	}
	if route(1).Duplicate {
		t.Fatal("after the reset, 1 is new")
	}
	wantPayloads(t, k, "1", "2", "1")
	if s := k.deliveries()[0].Msg.Sender; s != "$uplink/u/alice" {
		t.Fatalf("sender %q", s)
	}
	info, _ := b.Session("$uplink/u")
	if info.Taken != 1 || info.RoutedDuplicates != 1 {
		t.Fatalf("session info %+v", info)
	}
}

// Session describes one session: its queue, when the oldest queued message was published, and
// what expired from it.
func TestSessionInfo(t *testing.T) {
	b, clk := newBrokerOn(t, memstore.New(), func(c *Config) { c.Queue.MaxAge = time.Minute })
	s, _, _ := connect(t, b, ConnectRequest{ClientID: "s", Expiry: hour})
	subscribe(t, s, SubscribeRequest{Filter: "t", QoS: 1})
	s.Disconnect(DisconnectRequest{Graceful: true})
	pub, _, _ := connect(t, b, ConnectRequest{ClientID: "pub"})
	publish(t, pub, "t", "old", 1, false)
	first := clk.Now().UnixNano()
	clk.Advance(2 * time.Minute)
	publish(t, pub, "t", "new", 1, false)
	b.sweep(10)
	info, ok := b.Session("s")
	if !ok || info.Queued != 1 || info.Expired != 1 || info.Oldest <= first || info.Online {
		t.Fatalf("info %+v (first published at %d)", info, first)
	}
	if _, ok := b.Session("nobody"); ok {
		t.Fatal("an unknown session was described")
	}
}

// An uplink's trunk queues by the uplink's limits, whatever the session rules say.
func TestConfigFromUplinkQueueRule(t *testing.T) {
	cfg := config.Default()
	cfg.Session.QueueRules = []config.QueueRule{{ClientID: "$uplink/*", QueueLimits: config.QueueLimits{MaxQueuedMessages: 1}}}
	u := config.DefaultUplink()
	u.Name, u.MaxQueuedMessages, u.QueueFullPolicy = "cloud", 7, "refuse"
	cfg.Route.Uplinks = []config.Uplink{u}
	b, err := New(ConfigFrom(cfg), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	s := &Session{b: b, limitRule: b.limitRule("$uplink/cloud")}
	if l := s.limits(); l.MaxMessages != 7 || l.Policy != RefuseNew {
		t.Fatalf("trunk limits %+v", l)
	}
}
