package broker

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"unsafe"

	"github.com/ternmq/tern/internal/message"
	"github.com/ternmq/tern/internal/store/memstore"
)

// TestSizes logs the size of the structures every connected session holds, for the figures in
// docs/decisions.md ("An idle connection's bytes", second to fourth pass), and fails when a
// Session, a Client or a subscription outgrows its allocator size class (144, 48 and 32 bytes): a
// field added without thought costs every session the next class's bytes.
func TestSizes(t *testing.T) {
	t.Logf("Session %d B, sessionRare %d B, Client %d B, subscription %d B", unsafe.Sizeof(Session{}),
		unsafe.Sizeof(sessionRare{}), unsafe.Sizeof(Client{}), unsafe.Sizeof(subscription{}))
	if n := unsafe.Sizeof(Session{}); n > 144 {
		t.Errorf("Session is %d bytes, past the 144-byte size class", n)
	}
	if n := unsafe.Sizeof(Client{}); n > 48 {
		t.Errorf("Client is %d bytes, past the 48-byte size class", n)
	}
	if n := unsafe.Sizeof(subscription{}); n > 32 {
		t.Errorf("subscription is %d bytes, past the 32-byte size class", n)
	}
}

// Faces' names are interned: one id per name, the same for every session of the face, and the
// name comes back from it.
func TestFaceNames(t *testing.T) {
	if id := internFace(""); id != 0 || id.String() != "" {
		t.Errorf("the empty name: id %d, name %q", id, id.String())
	}
	a, b := internFace("test-face-a"), internFace("test-face-b")
	if a == 0 || b == 0 || a == b {
		t.Fatalf("ids %d and %d, want two distinct non-zero ids", a, b)
	}
	if again := internFace("test-face-a"); again != a {
		t.Errorf("test-face-a interned again as %d, was %d", again, a)
	}
	if a.String() != "test-face-a" || b.String() != "test-face-b" {
		t.Errorf("names %q and %q", a.String(), b.String())
	}
	if name := faceID(maxFaces).String(); name != "" {
		t.Errorf("an id past the table named %q", name)
	}
}

// Without an authenticator every client without a certificate shares one principal.
func TestOpenClientsSharePrincipal(t *testing.T) {
	b, _ := newTestBroker(t, nil)
	a, _, _ := connect(t, b, ConnectRequest{ClientID: "a"})
	c, _, _ := connect(t, b, ConnectRequest{ClientID: "c"})
	if a.Principal() != c.Principal() || !a.Principal().Unrestricted() {
		t.Fatalf("principals %p and %p, want one shared unrestricted", a.Principal(), c.Principal())
	}
	// What the client does still names it by its own client id.
	if a.ClientID() != "a" || c.ClientID() != "c" {
		t.Fatalf("client ids %q, %q", a.ClientID(), c.ClientID())
	}
}

// An idle subscribed session that receives QoS 0 messages carries no rare part; one that meets
// an exactly-once publish gets it.
func TestSessionRarePartOnFirstUse(t *testing.T) {
	b, _ := newTestBroker(t, nil)
	c, k, _ := connect(t, b, ConnectRequest{ClientID: "idle"})
	subscribe(t, c, SubscribeRequest{Filter: "i"})
	p, _, _ := connect(t, b, ConnectRequest{ClientID: "p"})
	publish(t, p, "i", "x", 0, false)
	wantPayloads(t, k, "x")
	if c.s.rare != nil {
		t.Fatal("an idle QoS 0 subscriber's session allocated its rare part")
	}
	if _, err := p.PublishExactlyOnce(9, &message.Message{Topic: "i", Payload: []byte("y"), QoS: 2}); err != nil {
		t.Fatal(err)
	}
	if p.PendingReleases() != 1 || p.s.rare == nil {
		t.Fatalf("exactly-once publish: %d pending releases", p.PendingReleases())
	}
	if !p.Release(9) || p.Release(9) || p.PendingReleases() != 0 {
		t.Fatal("release of an exactly-once publish")
	}
}

// A session becomes durable after state in its rare part exists: the durable session keeps it.
// The exactly-once receipt of the memory-only session survives a restart as a duplicate.
func TestSessionTurnedDurableKeepsRareState(t *testing.T) {
	st := memstore.New()
	b1, _ := newBrokerOn(t, st, nil)
	c, _, _ := connect(t, b1, ConnectRequest{ClientID: "grow"})
	if _, err := c.PublishExactlyOnce(5, &message.Message{Topic: "t", Payload: []byte("once"), QoS: 2}); err != nil {
		t.Fatal(err)
	}
	c2, _, res := connect(t, b1, ConnectRequest{ClientID: "grow", Expiry: hour})
	if !res.SessionPresent || c2.PendingReleases() != 1 {
		t.Fatalf("resumed: present %v, %d pending releases", res.SessionPresent, c2.PendingReleases())
	}
	c2.Disconnect(DisconnectRequest{Graceful: true})

	b2, _ := newBrokerOn(t, st, nil)
	c3, _, res := connect(t, b2, ConnectRequest{ClientID: "grow", Expiry: hour})
	if !res.SessionPresent {
		t.Fatal("session not stored")
	}
	r, err := c3.PublishExactlyOnce(5, &message.Message{Topic: "t", Payload: []byte("once"), QoS: 2})
	if err != nil || !r.Duplicate {
		t.Fatalf("the resent exactly-once publish after restart: %+v, %v; want a duplicate", r, err)
	}
	if c3.PendingReleases() != 1 {
		t.Fatalf("%d pending releases after restart", c3.PendingReleases())
	}
}

// Memory-only sessions share the empty noQueue until they queue something; then each has its
// own, and what one queues reaches only it.
func TestSessionsQueueApart(t *testing.T) {
	b, _ := newTestBroker(t, nil)
	idle, _, _ := connect(t, b, ConnectRequest{ClientID: "idle"})
	subscribe(t, idle, SubscribeRequest{Filter: "i"})
	if idle.s.queue != noQueue {
		t.Fatal("an idle session holds a queue of its own")
	}
	// Connected but not started: deliveries queue until Start.
	var ks []*sink
	var cs []*Client
	for _, id := range []string{"a", "b"} {
		k := &sink{}
		c, _, err := b.Connect(context.Background(), ConnectRequest{ClientID: id, Sink: k})
		if err != nil {
			t.Fatal(err)
		}
		subscribe(t, c, SubscribeRequest{Filter: id, QoS: 1})
		ks, cs = append(ks, k), append(cs, c)
	}
	p, _, _ := connect(t, b, ConnectRequest{ClientID: "p"})
	publish(t, p, "a", "for a", 1, false)
	publish(t, p, "b", "for b", 1, false)
	publish(t, p, "a", "for a again", 1, false)
	if cs[0].s.queue == noQueue || cs[0].s.queue == cs[1].s.queue || cs[0].s.queue.Len() != 2 || cs[1].s.queue.Len() != 1 {
		t.Fatalf("queues: a %d, b %d messages", cs[0].s.queue.Len(), cs[1].s.queue.Len())
	}
	if noQueue.Len() != 0 {
		t.Fatal("the shared empty queue holds something")
	}
	for _, c := range cs {
		c.Start()
	}
	wantPayloads(t, ks[0], "for a", "for a again")
	wantPayloads(t, ks[1], "for b")
}

// Interest counts a plain filter in one map; a path both plain and shared subscribers have is
// listed once, and stays while either has it.
func TestInterestPlainAndSharedOnOnePath(t *testing.T) {
	b, _ := newTestBroker(t, nil)
	changes := 0
	b.WatchInterest(func() { changes++ })
	x, _, _ := connect(t, b, ConnectRequest{ClientID: "x"})
	y, _, _ := connect(t, b, ConnectRequest{ClientID: "y"})
	step := func(name, interest, filters string, wantChanges int) {
		t.Helper()
		if got := fmt.Sprint(b.Interest()); got != interest {
			t.Fatalf("%s: Interest %s, want %s", name, got, interest)
		}
		if got := fmt.Sprint(b.InterestFilters()); got != filters {
			t.Fatalf("%s: InterestFilters %s, want %s", name, got, filters)
		}
		if changes != wantChanges {
			t.Fatalf("%s: %d changes, want %d", name, changes, wantChanges)
		}
	}
	subscribe(t, x, SubscribeRequest{Filter: "p"})
	step("plain", "[p]", "[p]", 1)
	subscribe(t, y, SubscribeRequest{Filter: "$share/g/p"})
	step("plain and shared", "[p]", "[$share/g/p p]", 2)
	x.Unsubscribe([]string{"p"})
	step("shared only", "[p]", "[$share/g/p]", 3)
	y.Unsubscribe([]string{"$share/g/p"})
	step("none", "[]", "[]", 4)
	subscribe(t, y, SubscribeRequest{Filter: "$share/g/q"}, SubscribeRequest{Filter: "$share/h/q"})
	subscribe(t, x, SubscribeRequest{Filter: "q"})
	step("two groups and plain", "[q]", "[$share/g/q $share/h/q q]", 7)
	y.Unsubscribe([]string{"$share/g/q", "$share/h/q"})
	step("plain again", "[q]", "[q]", 9)
	x.Unsubscribe([]string{"q"})
	step("none again", "[]", "[]", 10)
}

// The client no longer keeps its face: the disconnect log takes the session's, which is the
// same while the client owns the session.
func TestDisconnectLogNamesTheFace(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg := DefaultConfig()
	b, err := New(cfg, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	c, _, _ := connect(t, b, ConnectRequest{ClientID: "f", Face: "mqtt", RemoteAddr: "192.0.2.1:1883"})
	c.Disconnect(DisconnectRequest{Graceful: true})
	for _, line := range strings.Split(buf.String(), "\n") {
		if strings.Contains(line, "client disconnected") {
			if !strings.Contains(line, "face=mqtt") || !strings.Contains(line, "remote=192.0.2.1:1883") {
				t.Fatalf("disconnect log %q lacks the face or the remote address", line)
			}
			return
		}
	}
	t.Fatalf("no disconnect log in %q", buf.String())
}

// The in-flight window is kept in 16 bits: a configured window past MQTT's packet identifiers is
// cut to 65,535 rather than wrapping, and a client's smaller receive maximum still wins.
func TestInflightWindowFitsPacketIdentifiers(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxInflight = 1 << 20
	b, err := New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	c, _, _ := connect(t, b, ConnectRequest{ClientID: "wide"})
	if got := c.s.inflightMax; got != 65535 {
		t.Errorf("window %d with max_inflight 2^20, want 65535", got)
	}
	n, _, _ := connect(t, b, ConnectRequest{ClientID: "narrow", ReceiveMax: 10})
	if got := n.s.inflightMax; got != 10 {
		t.Errorf("window %d with receive maximum 10, want 10", got)
	}
	cfg.QueueRules = make([]QueueRule, maxQueueRules+1)
	if _, err := New(cfg, nil, nil); err == nil {
		t.Error("a broker took more queue rules than a session can name")
	}
}
