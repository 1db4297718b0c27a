package broker

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/clock"
	"github.com/ternmq/tern/internal/message"
)

// fakeAuth admits the user names it knows, with their grants; anything else is bad credentials.
type fakeAuth struct {
	grants  map[string][]string
	expires time.Time
}

func (f *fakeAuth) Authenticate(_ context.Context, c auth.Credentials) (*auth.Principal, error) {
	gs, ok := f.grants[c.Username]
	if !ok {
		return nil, auth.ErrBadCredentials
	}
	var grants []auth.Grant
	for _, s := range gs {
		g, err := auth.ParseGrant(s)
		if err != nil {
			return nil, err
		}
		grants = append(grants, g)
	}
	p, err := auth.NewPrincipal(c.Username, c.ClientID, grants)
	if p != nil {
		p.Expires = f.expires
	}
	return p, err
}

func authBroker(t *testing.T, f *fakeAuth, mod func(*Config)) (*Broker, *clock.Fake) {
	return newTestBroker(t, func(c *Config) {
		c.Auth = f
		if mod != nil {
			mod(c)
		}
	})
}

func login(user, clientID string) ConnectRequest {
	return ConnectRequest{ClientID: clientID, CleanStart: true, Credentials: auth.Credentials{Username: user}}
}

func TestGrantsOnPublishRetainAndSubscribe(t *testing.T) {
	f := &fakeAuth{grants: map[string][]string{
		"alice": {"publish:sensors/%u/#", "subscribe:sensors/#"},
		"bob":   {"publish:sensors/bob/#", "retain:sensors/bob/#", "subscribe:sensors/+/temp"},
	}}
	b, _ := authBroker(t, f, nil)
	if _, _, err := b.Connect(context.Background(), ConnectRequest{ClientID: "x", Sink: &sink{},
		Credentials: auth.Credentials{Username: "mallory"}}); !errors.Is(err, auth.ErrBadCredentials) {
		t.Fatalf("unknown user: %v", err)
	}
	alice, ak, _ := connect(t, b, login("alice", "a"))
	bob, _, _ := connect(t, b, login("bob", "b"))

	res := bob.Subscribe([]SubscribeRequest{{Filter: "sensors/+/temp"}, {Filter: "sensors/#"}, {Filter: "$share/g/sensors/x/temp"}})
	if res[0].Err != nil || !errors.Is(res[1].Err, ErrNotAuthorized) || res[2].Err != nil {
		t.Fatalf("bob's subscribe results: %v, %v, %v", res[0].Err, res[1].Err, res[2].Err)
	}
	subscribe(t, alice, SubscribeRequest{Filter: "sensors/#"})

	if _, err := alice.Publish(&message.Message{Topic: "sensors/bob/temp", Payload: []byte("x")}); !errors.Is(err, ErrNotAuthorized) {
		t.Fatalf("alice publishing under bob: %v", err)
	}
	if _, err := alice.Publish(&message.Message{Topic: "sensors/alice/temp", Payload: []byte("r"), Retain: true}); !errors.Is(err, ErrNotAuthorized) {
		t.Fatalf("alice retaining without a retain grant: %v", err)
	}
	publish(t, alice, "sensors/alice/temp", "a1", 0, false)
	publish(t, bob, "sensors/bob/temp", "b1", 0, true)
	wantPayloads(t, ak, "a1", "b1")
	if got := b.Stats().NotAuthorized.Load(); got != 3 {
		t.Fatalf("NotAuthorized = %d, want 3", got)
	}
	if b.retained.len() != 1 {
		t.Fatalf("retained %d messages, want bob's only", b.retained.len())
	}
}

func TestWillNeedsPublishAndRetainGrants(t *testing.T) {
	f := &fakeAuth{grants: map[string][]string{"alice": {"publish:status/alice"}}}
	b, _ := authBroker(t, f, nil)
	will := func(topic string, retain bool) *Will {
		return &Will{Msg: &message.Message{Topic: topic, Payload: []byte("gone"), Retain: retain}}
	}
	for _, w := range []*Will{will("status/bob", false), will("status/alice", true)} {
		req := login("alice", "a")
		req.Will, req.Sink = w, &sink{}
		if _, _, err := b.Connect(context.Background(), req); !errors.Is(err, ErrWillNotAuthorized) || !errors.Is(err, ErrNotAuthorized) {
			t.Fatalf("will %s retain=%v: %v", w.Msg.Topic, w.Msg.Retain, err)
		}
	}
	req := login("alice", "a")
	req.Will = will("status/alice", false)
	connect(t, b, req)
}

func TestSenderPropertyCannotBeForged(t *testing.T) {
	f := &fakeAuth{grants: map[string][]string{"alice": {"publish:#", "subscribe:#"}}}
	b, _ := authBroker(t, f, nil)
	alice, k, _ := connect(t, b, login("alice", "a"))
	subscribe(t, alice, SubscribeRequest{Filter: "t"})
	m := &message.Message{Topic: "t", Payload: []byte("p"), Sender: "root", Props: message.Properties{User: []message.UserProperty{
		{Key: message.SenderProperty, Value: "root"}, {Key: "k", Value: "v"}, {Key: message.SenderProperty, Value: "admin"},
	}}}
	if _, err := alice.Publish(m); err != nil {
		t.Fatal(err)
	}
	d := k.deliveries()
	if len(d) != 1 || d[0].Msg.Sender != "alice" {
		t.Fatalf("deliveries %+v", d)
	}
	if u := d[0].Msg.Props.User; len(u) != 1 || u[0].Key != "k" {
		t.Fatalf("user properties %+v: the claimed sender should be gone, the others kept", u)
	}

	// A will is stamped too.
	req := login("alice", "w")
	req.Will = &Will{Msg: &message.Message{Topic: "t", Payload: []byte("will"),
		Props: message.Properties{User: []message.UserProperty{{Key: message.SenderProperty, Value: "root"}}}}}
	w, _, _ := connect(t, b, req)
	w.Disconnect(DisconnectRequest{})
	d = k.deliveries()
	if len(d) != 2 || d[1].Msg.Sender != "alice" || len(d[1].Msg.Props.User) != 0 {
		t.Fatalf("will delivery %+v", d[len(d)-1].Msg)
	}
}

func TestSessionBelongsToItsIdentity(t *testing.T) {
	f := &fakeAuth{grants: map[string][]string{"alice": {"subscribe:#"}, "bob": {"subscribe:#"}, "": {"subscribe:#"}}}
	b, _ := authBroker(t, f, nil)
	req := login("alice", "shared-id")
	req.CleanStart, req.Expiry = false, 3600
	alice, ak, _ := connect(t, b, req)
	subscribe(t, alice, SubscribeRequest{Filter: "a"})

	// Online or offline, bob cannot take alice's session.
	for _, online := range []bool{true, false} {
		if !online {
			alice.Disconnect(DisconnectRequest{Graceful: true})
		}
		breq := login("bob", "shared-id")
		breq.CleanStart, breq.Sink = online, &sink{}
		if _, _, err := b.Connect(context.Background(), breq); !errors.Is(err, ErrClientIDInUse) {
			t.Fatalf("bob taking alice's session (online=%v): %v", online, err)
		}
	}
	if ak.closed != nil {
		t.Fatalf("alice was disconnected by bob's attempt: %v", ak.closed)
	}
	if got := b.Stats().RefusedClientID.Load(); got != 2 {
		t.Fatalf("RefusedClientID = %d", got)
	}
	// Alice resumes it.
	req.Sink = nil
	_, _, res := connect(t, b, req)
	if !res.SessionPresent {
		t.Fatal("alice's session is gone")
	}

	// A session made without an identity can be claimed.
	connect(t, b, login("", "anon-id"))
	if _, _, res := connect(t, b, login("bob", "anon-id")); res.Principal.Identity != "bob" {
		t.Fatalf("claimed by %q", res.Principal.Identity)
	}
}

func TestResumeDropsSubscriptionsNoLongerGranted(t *testing.T) {
	f := &fakeAuth{grants: map[string][]string{"alice": {"subscribe:a/#", "subscribe:b/#"}}}
	b, _ := authBroker(t, f, nil)
	req := login("alice", "c")
	req.CleanStart, req.Expiry = false, 3600
	c, _, _ := connect(t, b, req)
	subscribe(t, c, SubscribeRequest{Filter: "a/x"}, SubscribeRequest{Filter: "b/x"})
	c.Disconnect(DisconnectRequest{Graceful: true})

	f.grants["alice"] = []string{"subscribe:a/#"}
	_, _, res := connect(t, b, req)
	if !res.SessionPresent {
		t.Fatal("session not resumed")
	}
	infos := b.Sessions(10)
	if len(infos) != 1 || b.Stats().Subscriptions.Load() != 1 {
		t.Fatalf("subscriptions after resume: %d (sessions %+v)", b.Stats().Subscriptions.Load(), infos)
	}
}

// TestResumeKeepsWhatSubscribeAllowed: at resume a subscription is judged by the rule that
// admitted it, not by the subscribe grant alone: a procedure served under the serve grant, the
// client's own response prefix and its mailbox topic stay.
func TestResumeKeepsWhatSubscribeAllowed(t *testing.T) {
	f := &fakeAuth{grants: map[string][]string{"alice": {"serve:svc/#", "subscribe:a/#"}}}
	b, _ := authBroker(t, f, nil)
	req := login("alice", "c")
	req.CleanStart, req.Expiry = false, 3600
	c, _, _ := connect(t, b, req)
	subscribe(t, c, SubscribeRequest{Filter: "$rpc/svc/echo"}, SubscribeRequest{Filter: ResponsePrefix("c") + "/#"},
		SubscribeRequest{Filter: "$mailbox/alice"}, SubscribeRequest{Filter: "a/x"})
	c.Disconnect(DisconnectRequest{Graceful: true})
	if _, _, res := connect(t, b, req); !res.SessionPresent {
		t.Fatal("session not resumed")
	}
	if got := b.Stats().Subscriptions.Load(); got != 4 {
		t.Fatalf("subscriptions after resume: %d, want 4", got)
	}
}

func TestConnectionLimits(t *testing.T) {
	f := &fakeAuth{grants: map[string][]string{"alice": nil, "bob": nil, "": nil}}
	b, _ := authBroker(t, f, func(c *Config) {
		c.Limits.MaxConnections = 3
		c.Limits.MaxConnectionsPerIdentity = 2
	})
	a1, _, _ := connect(t, b, login("alice", "a1"))
	connect(t, b, login("alice", "a2"))
	try := func(user, id string) error {
		req := login(user, id)
		req.CleanStart, req.Sink = false, &sink{}
		_, _, err := b.Connect(context.Background(), req)
		return err
	}
	if err := try("alice", "a3"); !errors.Is(err, ErrConnectionLimit) || !errors.Is(err, ErrQuotaExceeded) {
		t.Fatalf("alice's third connection: %v", err)
	}
	// A takeover of one's own session is not one more connection.
	if err := try("alice", "a2"); err != nil {
		t.Fatalf("takeover: %v", err)
	}
	if err := try("bob", "b1"); err != nil {
		t.Fatal(err)
	}
	if err := try("", "anon"); !errors.Is(err, ErrConnectionLimit) {
		t.Fatalf("fourth connection in total: %v", err)
	}
	a1.Disconnect(DisconnectRequest{Graceful: true})
	if err := try("alice", "a3"); err != nil {
		t.Fatalf("after a disconnect: %v", err)
	}
	if got := b.Stats().RefusedConnections.Load(); got != 2 {
		t.Fatalf("RefusedConnections = %d", got)
	}
}

func TestPayloadLimit(t *testing.T) {
	b, _ := newTestBroker(t, func(c *Config) { c.Limits.MaxPayload = 4 })
	c, _, _ := connect(t, b, login("", "c"))
	publish(t, c, "t", "1234", 1, false)
	if _, err := c.Publish(&message.Message{Topic: "t", Payload: []byte("12345")}); !errors.Is(err, ErrPayloadTooLarge) || !errors.Is(err, ErrQuotaExceeded) {
		t.Fatalf("oversized payload: %v", err)
	}
	if b.Stats().RefusedPayload.Load() != 1 {
		t.Fatal("refusal not counted")
	}
}

func TestCredentialsExpiryDisconnects(t *testing.T) {
	f := &fakeAuth{grants: map[string][]string{"alice": nil}, expires: testEpoch.Add(time.Hour)}
	b, clk := authBroker(t, f, nil)
	_, k, _ := connect(t, b, login("alice", "a"))
	clk.Advance(59 * time.Minute)
	if k.closed != nil {
		t.Fatalf("closed before the credentials expired: %v", k.closed)
	}
	clk.Advance(time.Minute)
	if !errors.Is(k.closed, ErrCredentialsExpired) || !errors.Is(k.closed, ErrNotAuthorized) {
		t.Fatalf("closed with %v", k.closed)
	}

	// A client that left before its token expired is not touched.
	f.expires = clk.Now().Add(time.Hour)
	c, k2, _ := connect(t, b, login("alice", "b"))
	c.Disconnect(DisconnectRequest{Graceful: true})
	clk.Advance(2 * time.Hour)
	if k2.closed != nil {
		t.Fatalf("a gone client was closed: %v", k2.closed)
	}
}

func TestRateLimiter(t *testing.T) {
	b, _ := newTestBroker(t, func(c *Config) {
		c.Limits.PublishRate = 10 // 100 ms per message
		c.Limits.PublishBurst = 2
		c.Limits.MaxThrottle = 300 * time.Millisecond
	})
	r := b.newRateLimiter()
	now := int64(1e12)
	ms := int64(time.Millisecond)
	steps := []struct {
		at   int64
		wait time.Duration
		ok   bool
	}{
		{0, 0, true},                             // within the burst
		{0, 0, true},                             // burst used up
		{0, 100 * time.Millisecond, true},        // ahead: pause
		{0, 200 * time.Millisecond, true},        // further ahead
		{0, 300 * time.Millisecond, true},        // at the limit
		{0, 0, false},                            // beyond: refused, not charged
		{200 * ms, 200 * time.Millisecond, true}, // time passed: accepted again
	}
	for i, s := range steps {
		wait, ok := r.take(now+s.at, 0)
		if wait != s.wait || ok != s.ok {
			t.Fatalf("step %d: wait %v ok %v, want %v %v", i, wait, ok, s.wait, s.ok)
		}
	}

	// Bytes: 1000 B/s with a burst of one second. One big message passes, then a pause.
	b2, _ := newTestBroker(t, func(c *Config) { c.Limits.PublishBytesRate = 1000 })
	r = b2.newRateLimiter()
	if wait, ok := r.take(now, 1500); !ok || wait != 500*time.Millisecond {
		t.Fatalf("1500 B at 1000 B/s: wait %v ok %v", wait, ok)
	}
	if _, ok := r.take(now, 1000); ok {
		t.Fatal("a second message while 1.5 s ahead was accepted")
	}
	if wait, ok := r.take(now+int64(600*time.Millisecond), 100); !ok || wait != 0 {
		t.Fatalf("after catching up: wait %v ok %v", wait, ok)
	}
}

func TestRateSharedByIdentity(t *testing.T) {
	f := &fakeAuth{grants: map[string][]string{"alice": {"publish:#"}, "bob": {"publish:#"}}}
	b, _ := authBroker(t, f, func(c *Config) {
		c.Limits.PublishRate = 1
		c.Limits.PublishBurst = 1
		c.Limits.MaxThrottle = time.Millisecond
	})
	a1, _, _ := connect(t, b, login("alice", "a1"))
	a2, _, _ := connect(t, b, login("alice", "a2"))
	bob, _, _ := connect(t, b, login("bob", "b"))
	pub := func(c *Client) error {
		_, err := c.Publish(&message.Message{Topic: "t", Payload: []byte("x")})
		return err
	}
	if err := pub(a1); err != nil {
		t.Fatal(err)
	}
	// The burst of one is alice's, not per connection: her second connection is at least
	// one second ahead now (accepted with a pause), and a third publish is refused.
	if res, err := a2.Publish(&message.Message{Topic: "t", Payload: []byte("x")}); err != nil || res.Throttle <= 0 {
		t.Fatalf("alice's second publish: %+v %v", res, err)
	}
	if err := pub(a2); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("alice's third publish: %v", err)
	}
	if err := pub(bob); err != nil {
		t.Fatalf("bob has a budget of his own: %v", err)
	}
	if b.Stats().RefusedRate.Load() != 1 || b.Stats().Throttled.Load() != 1 {
		t.Fatalf("refused %d throttled %d", b.Stats().RefusedRate.Load(), b.Stats().Throttled.Load())
	}
}

func TestDollarClientIDsAreReserved(t *testing.T) {
	b, _ := newTestBroker(t, nil)
	if _, _, err := b.Connect(context.Background(), ConnectRequest{ClientID: "$webhook-1", Sink: &sink{}}); !errors.Is(err, ErrClientIDReserved) {
		t.Fatalf("a client took a $ id: %v", err)
	}
	p, _ := auth.NewPrincipal("", "", nil)
	if _, _, err := b.Connect(context.Background(), ConnectRequest{ClientID: "$webhook-1", Principal: p, Sink: &sink{}}); err != nil {
		t.Fatalf("the broker's own session: %v", err)
	}
}

// TestDenyGrants: deny grants are asked before allows wherever the core checks grants. One
// SUBSCRIBE gets a result per filter: the denied filter is refused, "#" beside it is granted. The
// check is made at subscribe time, as for allows, so "#" then receives the denied topic too (the
// documented rule). A publish to a denied topic, a retained read of a denied filter and, at
// resume, a subscription since denied are refused.
func TestDenyGrants(t *testing.T) {
	f := &fakeAuth{grants: map[string][]string{
		"alice": {"subscribe:#", "deny:subscribe:test/nosubscribe", "publish:#", "deny:publish:test/nopublish",
			"retain:#", "serve:svc/#", "deny:serve:svc/locked"},
	}}
	b, _ := authBroker(t, f, nil)
	req := login("alice", "a")
	req.CleanStart, req.Expiry = false, 3600
	alice, ak, _ := connect(t, b, req)

	cases := []struct {
		filter string
		denied bool
	}{
		{"#", false},
		{"test/nosubscribe", true},
		{"$share/g/test/nosubscribe", true},
		{"test/+", false},
		{"$rpc/svc/locked", true}, // serving a procedure asks the serve grant, denies included
		{"$rpc/svc/open", false},
		{"test/nosubscribe/below", false},
	}
	reqs := make([]SubscribeRequest, len(cases))
	for i, c := range cases {
		reqs[i] = SubscribeRequest{Filter: c.filter}
	}
	res := alice.Subscribe(reqs)
	for i, c := range cases {
		if got := errors.Is(res[i].Err, ErrNotAuthorized); got != c.denied || (!c.denied && res[i].Err != nil) {
			t.Errorf("subscribe %q: %v, denied %v", c.filter, res[i].Err, c.denied)
		}
	}
	if _, err := alice.Publish(&message.Message{Topic: "test/nopublish", Payload: []byte("x")}); !errors.Is(err, ErrNotAuthorized) {
		t.Fatalf("publish to a denied topic: %v", err)
	}
	publish(t, alice, "test/nosubscribe", "kept", 0, true)
	// "#" and "test/+" were granted and match: the denied topic reaches the session (once).
	wantPayloads(t, ak, "kept")
	if _, err := b.Query(context.Background(), alice.principal, "test/nosubscribe"); !errors.Is(err, ErrNotAuthorized) {
		t.Fatalf("retained read of a denied filter: %v", err)
	}
	if ans, err := b.Query(context.Background(), alice.principal, "test/+"); err != nil || len(ans.Messages) != 1 {
		t.Fatalf("retained read of an overlapping filter: %d, %v", len(ans.Messages), err)
	}

	// A deny added while alice is away drops the subscription it covers at resume, and only it.
	alice.Disconnect(DisconnectRequest{Graceful: true})
	before := b.Stats().Subscriptions.Load()
	f.grants["alice"] = append(f.grants["alice"], "deny:subscribe:test/+")
	if _, _, r := connect(t, b, req); !r.SessionPresent {
		t.Fatal("session not resumed")
	}
	if got := b.Stats().Subscriptions.Load(); got != before-1 {
		t.Fatalf("subscriptions after resume: %d, want %d", got, before-1)
	}
}
