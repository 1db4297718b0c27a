package mqtt

import (
	"bytes"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/mqtt/packet"
	"github.com/ternmq/tern/internal/netio"
	"github.com/ternmq/tern/internal/tlsrec"
)

// tlsSocketOf is the socket under id's TLS connection.
func tlsSocketOf(t *testing.T, srv *Server, id string) (*conn, *netio.ParkConn) {
	t.Helper()
	c := connOf(t, srv, id)
	p := c.rd.parkConn()
	if p == nil {
		t.Fatalf("%s: no parkable socket under the TLS connection", id)
	}
	return c, p
}

// waitTLSDetached waits until id's TLS connection has parked with its socket detached.
func waitTLSDetached(t *testing.T, srv *Server, id string) (*conn, *netio.ParkConn) {
	t.Helper()
	c, p := tlsSocketOf(t, srv, id)
	deadline := time.Now().Add(handoffAfter + 10*time.Second)
	for !(p.Detached() && c.watch.Parked()) {
		if time.Now().After(deadline) {
			t.Fatalf("%s's TLS socket did not detach", id)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return c, p
}

// A quiet TLS connection's socket lets go of its net.Conn (tlsrec over netio.ParkConn.Detach):
// it still gets its messages and acknowledges them, answers a ping, all without attaching; a
// delivery larger than the socket takes attaches it for the writer, and it detaches again once
// quiet, holding one descriptor; it closes everything when it ends.
func TestIdleTLSConnectionsDetach(t *testing.T) {
	needPoller(t)
	srv, addr := startTLSFaceOn(t, tlsrec.NewListener, func(c *Config) { c.DetachIdle = 20 * time.Millisecond })
	baseFDs := openFDs(t)
	dialTLSConn := func() net.Conn {
		nc, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		return nc
	}
	sub, msgs := pahoClient(t, dialTLSConn(), "tsub")
	pahoSubscribe(t, sub, "td/one")
	pub, _ := pahoClient(t, dialTLSConn(), "tpub")

	// A TLS 1.2 client: its connection stays a tls.Conn (tlsrec cannot take 1.2 over), whose
	// socket detaches all the same.
	old, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
		&tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	sub12, msgs12 := pahoClient(t, old, "tsub12")
	pahoSubscribe(t, sub12, "td/one")

	_, sp := waitTLSDetached(t, srv, "tsub")
	c12, sp12 := waitTLSDetached(t, srv, "tsub12")
	if tc, ok := c12.rd.conn.(*tlsrec.Conn); !ok || tc.TookOver() {
		t.Fatal("the TLS 1.2 connection is not a tls.Conn under tlsrec")
	}
	if n := srv.stats.Detached.Load(); n < 2 {
		t.Errorf("Stats.Detached counts %d connections, want at least the two subscribers", n)
	}
	pahoPublish(t, pub, "td/one", "first") // QoS 1: the subscribers acknowledge it
	expectMessage(t, msgs, "td/one", "first")
	expectMessage(t, msgs12, "td/one", "first")
	if !sp.Detached() || !sp12.Detached() {
		t.Error("a delivery and its acknowledgement attached the socket")
	}
	if a := sp.RemoteAddr(); a == nil || a.String() == "" {
		t.Error("a detached socket does not name its client")
	}

	pinger, _, _ := dialTLS(t, addr)
	pinger.connect("tpinger", 60)
	_, pp := waitTLSDetached(t, srv, "tpinger")
	pinger.send(&packet.Pingreq{})
	if _, ok := pinger.must(2 * time.Second).(*packet.Pingresp); !ok {
		t.Fatal("no PINGRESP")
	}
	if !pp.Detached() {
		t.Error("a keep-alive ping attached the socket")
	}

	// A reader that stops reading: deliveries fill its socket, the writer attaches to wait.
	slow, _, _ := dialTLS(t, addr)
	slow.connect("tslow", 60)
	slow.send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: []byte("td/big")}}})
	if _, ok := slow.must(5 * time.Second).(*packet.Suback); !ok {
		t.Fatal("no SUBACK")
	}
	waitTLSDetached(t, srv, "tslow")
	big := bytes.Repeat([]byte("b"), 256<<10)
	const bigCount = 16 // 4 MiB: more than loopback's socket buffers hold
	for range bigCount {
		pahoPublish(t, pub, "td/big", string(big))
	}
	for i := range bigCount {
		m, ok := slow.must(10 * time.Second).(*packet.Publish)
		if !ok || !bytes.Equal(m.Payload, big) {
			t.Fatalf("big message %d did not arrive whole", i)
		}
	}
	_, slp := waitTLSDetached(t, srv, "tslow")
	// Detached again: the writer's net.Conn is closed, one descriptor is left. Close the
	// clients and every descriptor goes.
	if !slp.Detached() {
		t.Fatal("not detached")
	}
	slow.send(&packet.Pingreq{})
	if _, ok := slow.must(2 * time.Second).(*packet.Pingresp); !ok {
		t.Fatal("no PINGRESP after the big deliveries")
	}
	_ = slow.nc.Close()
	_ = pinger.nc.Close()
	deadline := time.Now().Add(10 * time.Second)
	for srv.stats.Open.Load() > 3 {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections still open", srv.stats.Open.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Each of the three paho clients holds its socket here and the server one descriptor for
	// it; the client side of the closed ones went with them.
	if n := openFDs(t); n > baseFDs+6 {
		t.Errorf("%d descriptors open, want at most %d", n, baseFDs+6)
	}
}
