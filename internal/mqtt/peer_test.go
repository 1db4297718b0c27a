package mqtt

import (
	"context"
	"crypto/tls"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/mqtt/packet"
)

// certAuth stands in for certificate authentication: a certificate's identity gets its grants,
// and any user name and password the grants listed under it.
type certAuth map[string][]string

func (a certAuth) Authenticate(_ context.Context, c auth.Credentials) (*auth.Principal, error) {
	id := c.CertIdentity
	if id == "" {
		id = c.Username
	}
	gs, ok := a[id]
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
	return auth.NewPrincipal(id, c.ClientID, grants)
}

// peerBed is a designated router for bldg1: a client listener, and one peer listener per
// certificate identity (the face reads the identity from the connection's TLS state; here a
// listener stands for a certificate).
type peerBed struct {
	clients string
	peers   map[string]string
}

func startPeerBed(t *testing.T, a certAuth, ids ...string) peerBed {
	t.Helper()
	bc := broker.DefaultConfig()
	bc.Auth = a
	b, err := broker.New(bc, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	srv := NewServer(b, DefaultConfig(), nil)
	t.Cleanup(func() { _ = srv.Close() })
	listen := func() net.Listener {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return ln
	}
	bed := peerBed{peers: map[string]string{}}
	ln := listen()
	bed.clients = ln.Addr().String()
	go func() { _ = srv.Serve(ln, nil) }()
	pm := &peerMode{origin: "dr", namespaces: []string{"bldg1"}}
	for _, id := range ids {
		ln := listen()
		bed.peers[id] = ln.Addr().String()
		identify := func(tls.ConnectionState) string { return id }
		go func() {
			_ = srv.conns.Serve(ln, func(nc net.Conn) { srv.serveConn(nc, &tls.ConnectionState{}, identify, pm) })
		}()
	}
	return bed
}

func (c *rawClient) connectWith(p *packet.Connect) *packet.Connack {
	c.t.Helper()
	p.Version = c.v
	c.send(p)
	ack, ok := c.must(2 * time.Second).(*packet.Connack)
	if !ok {
		c.t.Fatal("no CONNACK")
	}
	return ack
}

func userProps(kv ...string) packet.Properties {
	var pr packet.Properties
	for i := 0; i+1 < len(kv); i += 2 {
		pr.AddUser([]byte(kv[i]), []byte(kv[i+1]))
	}
	return pr
}

func userValue(pr *packet.Properties, key string) (string, int) {
	v, n := "", 0
	for _, u := range pr.User {
		if string(u.Key) == key {
			v, n = string(u.Value), n+1
		}
	}
	return v, n
}

func (c *rawClient) publishAck(pid uint16, topic string, props packet.Properties) packet.ReasonCode {
	c.t.Helper()
	c.send(&packet.Publish{QoS: 1, PacketID: pid, Topic: []byte(topic), Payload: []byte("p"), Props: props})
	ack, ok := c.must(2 * time.Second).(*packet.Puback)
	if !ok || ack.PacketID != pid {
		c.t.Fatalf("no PUBACK for %d: %+v", pid, ack)
	}
	return ack.Reason
}

// A peer's forwarded messages: PublishRouted with the link's properties (sender shown as
// <site>/<publisher>, QoS 2 restored, the properties taken off), duplicates acknowledged without
// a second delivery, nothing outside the designated namespaces or the route grant, and a
// malformed property refused with its own reason.
func TestPeerPublishes(t *testing.T) {
	bed := startPeerBed(t, certAuth{"site-a": {"route:bldg1/#", "route:bldg2/#"}, "watch": {"subscribe:#"}}, "site-a")
	watch := dial(t, bed.clients, packet.V5)
	watch.connectWith(&packet.Connect{ClientID: []byte("w"), CleanStart: true, HasUsername: true, Username: []byte("watch")})
	watch.send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: []byte("#"), QoS: 2}}})
	watch.must(2 * time.Second)

	peer := dial(t, bed.peers["site-a"], packet.V5)
	ack := peer.connectWith(&packet.Connect{ClientID: []byte("$route/site-a/r1"), CleanStart: true})
	if ack.Reason != packet.Success || !ack.Props.Has(packet.PropMaxQoS) || ack.Props.MaxQoS != 1 {
		t.Fatalf("peer CONNACK %+v", ack)
	}
	tagged := func(seq string) packet.Properties {
		return userProps("x", "y", "tern-seq", seq, "tern-qos", "2", "tern-sender", "alice", "tern-origin", "r1")
	}
	if r := peer.publishAck(1, "bldg1/t", tagged("1")); r != packet.Success {
		t.Fatalf("first: %v", r)
	}
	got, ok := watch.must(2 * time.Second).(*packet.Publish)
	if !ok || got.QoS != 2 {
		t.Fatalf("the watcher got %+v, want QoS 2", got)
	}
	if s, _ := userValue(&got.Props, "tern-sender"); s != "site-a/alice" {
		t.Errorf("sender %q, want site-a/alice", s)
	}
	if v, _ := userValue(&got.Props, "x"); v != "y" {
		t.Errorf("the message's own property lost: %+v", got.Props.User)
	}
	if _, n := userValue(&got.Props, "tern-seq"); n != 0 {
		t.Errorf("the link's properties went on: %+v", got.Props.User)
	}
	if r := peer.publishAck(2, "bldg1/t", tagged("1")); r != packet.Success {
		t.Fatalf("a duplicate: %v", r)
	}
	if r := peer.publishAck(3, "bldg2/t", tagged("2")); r != packet.NotAuthorized {
		t.Fatalf("outside the designated namespaces: %v", r)
	}
	if r := peer.publishAck(4, "bldg1/t", userProps("tern-seq", "x")); r != packet.ImplementationSpecificError {
		t.Fatalf("a malformed number: %v", r)
	}
	if r := peer.publishAck(5, "bldg1/marker", tagged("3")); r != packet.Success {
		t.Fatalf("marker: %v", r)
	}
	// Only the marker follows the first message: the duplicate and the refusals were not routed.
	if p, ok := watch.must(2 * time.Second).(*packet.Publish); !ok || string(p.Topic) != "bldg1/marker" {
		t.Fatalf("after the first message: %+v", p)
	}
}

// What a peer subscribes to reaches it numbered, QoS 2 as QoS 1 with tern-qos, with this
// router's id; a local publisher's forged link properties are left out; and what the peer
// forwarded itself does not come back to it (No Local).
func TestPeerReceives(t *testing.T) {
	bed := startPeerBed(t, certAuth{"site-a": {"route:bldg1/#"}, "pub": {"publish:#"}}, "site-a")
	peer := dial(t, bed.peers["site-a"], packet.V5)
	peer.connectWith(&packet.Connect{ClientID: []byte("$route/site-a/r1"), CleanStart: true})
	peer.send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{
		{Filter: []byte("bldg1/#"), QoS: 2, NoLocal: true}, {Filter: []byte("other/#"), QoS: 1},
		{Filter: []byte(broker.ResponsePrefix("$route/site-a/r1") + "/#")}}})
	sa, ok := peer.must(2 * time.Second).(*packet.Suback)
	if !ok || !slices.Equal(sa.Reasons, []packet.ReasonCode{2, packet.NotAuthorized, 0}) {
		t.Fatalf("SUBACK %+v", sa)
	}
	if r := peer.publishAck(1, "bldg1/from-site", userProps("tern-seq", "1")); r != packet.Success {
		t.Fatalf("forward: %v", r)
	}
	pub := dial(t, bed.clients, packet.V5)
	pub.connectWith(&packet.Connect{ClientID: []byte("p"), CleanStart: true, HasUsername: true, Username: []byte("pub")})
	pub.send(&packet.Publish{QoS: 2, PacketID: 1, Topic: []byte("bldg1/x"), Payload: []byte("m"),
		Props: userProps("tern-seq", "999", "tern-origin", "forged", "k", "v")})
	got, ok := peer.must(2 * time.Second).(*packet.Publish)
	if !ok || string(got.Topic) != "bldg1/x" {
		t.Fatalf("the peer got %+v, want bldg1/x (not its own message back)", got)
	}
	if got.QoS != 1 {
		t.Errorf("QoS %d on the link, want 1", got.QoS)
	}
	for key, want := range map[string]string{"tern-seq": "1", "tern-qos": "2", "tern-origin": "dr", "tern-sender": "pub", "k": "v"} {
		if v, n := userValue(&got.Props, key); v != want || n != 1 {
			t.Errorf("%s: %q (%d times), want %q once; all: %+v", key, v, n, want, got.Props.User)
		}
	}
}

// Who is not a peer is refused at CONNECT.
func TestPeerConnectRefusals(t *testing.T) {
	bed := startPeerBed(t, certAuth{"site-a": {"route:bldg1/#"}, "": nil}, "site-a", "")
	cases := []struct {
		addr string
		v    packet.Version
		id   string
		want packet.ReasonCode
	}{
		{bed.peers[""], packet.V5, "$route/x/r1", packet.NotAuthorized},
		{bed.peers["site-a"], packet.V5, "$route/site-b/r1", packet.ClientIDNotValid},
		{bed.peers["site-a"], packet.V5, "plain", packet.ClientIDNotValid},
		{bed.peers["site-a"], packet.V311, "$route/site-a/r1", packet.V3ConnackCode(packet.UnsupportedProtocolVersion)},
	}
	for _, c := range cases {
		cl := dial(t, c.addr, c.v)
		if ack := cl.connectWith(&packet.Connect{ClientID: []byte(c.id), CleanStart: true}); ack.Reason != c.want {
			t.Errorf("%s over %v as %q: %v, want %v", c.addr, c.v, c.id, ack.Reason, c.want)
		}
	}
}
