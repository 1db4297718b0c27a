package mqtt

import (
	"crypto/tls"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/certs/certstest"
	"github.com/ternmq/tern/internal/mqtt/packet"
	"github.com/ternmq/tern/internal/netio"
	"github.com/ternmq/tern/internal/tlsrec"
)

// startTLSFace runs an MQTT face behind tlsrec.NewListener, as the server's TLS listener does.
func startTLSFace(t *testing.T) (*Server, string) {
	t.Helper()
	return startTLSFaceOn(t, tlsrec.NewListener)
}

// tlsListeners are the two ways a TLS connection parks: a tlsrec.Conn, and a tls.Conn over a
// netio.ParkConn (which tlsrec falls back to for TLS 1.2, and the HTTPS listener uses).
var tlsListeners = []struct {
	name string
	wrap func(net.Listener, *tls.Config) net.Listener
}{{"tlsrec", tlsrec.NewListener}, {"tls.Conn", netio.NewTLSListener}}

// startTLSFaceOn runs an MQTT face behind the TLS listener wrap makes; mod (if any) changes its
// configuration.
func startTLSFaceOn(t *testing.T, wrap func(net.Listener, *tls.Config) net.Listener, mod ...func(*Config)) (*Server, string) {
	t.Helper()
	b, err := broker.New(broker.DefaultConfig(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	cfg := DefaultConfig()
	for _, m := range mod {
		m(&cfg)
	}
	srv := NewServer(b, cfg, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tcfg := &tls.Config{Certificates: []tls.Certificate{certstest.ServerPair(t)}, MinVersion: tls.VersionTLS12}
	go func() { _ = srv.Serve(wrap(ln, tcfg), nil) }()
	t.Cleanup(func() { _ = srv.Close() })
	return srv, ln.Addr().String()
}

// splitConn sends each write in two TCP writes, the first of split bytes, so a TLS record
// arrives in two segments (TCP_NODELAY is on, so they usually leave separately).
type splitConn struct {
	net.Conn
	split int
}

func (c *splitConn) Write(p []byte) (int, error) {
	if c.split <= 0 || len(p) <= c.split {
		return c.Conn.Write(p)
	}
	n, err := c.Conn.Write(p[:c.split])
	if err != nil {
		return n, err
	}
	m, err := c.Conn.Write(p[c.split:])
	return n + m, err
}

func dialTLS(t *testing.T, addr string) (*rawClient, *tls.Conn, *splitConn) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	sc := &splitConn{Conn: nc}
	tc := tls.Client(sc, &tls.Config{InsecureSkipVerify: true})
	t.Cleanup(func() { _ = tc.Close() })
	return &rawClient{t: t, nc: tc, rd: packet.NewReader(tc, 0, 0), v: packet.V311}, tc, sc
}

// waitGoroutines waits until at most base+max goroutines run: the server's connections parked.
func waitGoroutines(t *testing.T, base, max int) {
	t.Helper()
	deadline := time.Now().Add(handoffAfter + 10*time.Second)
	for runtime.NumGoroutine()-base > max {
		if time.Now().After(deadline) {
			t.Fatalf("connections hold %d goroutines, want at most %d", runtime.NumGoroutine()-base, max)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func encode(t *testing.T, ps ...packet.Packet) []byte {
	t.Helper()
	var b []byte
	for _, p := range ps {
		var err error
		if b, err = p.Append(b, packet.V311); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// Idle TLS connections park in the poller like TCP ones, and parked they still read every packet
// however it is cut into TLS records and TCP segments: a connection that slept with a complete
// record (or packet) buffered would miss an answer here and the test would time out.
func TestIdleTLSConnectionsPark(t *testing.T) {
	needPoller(t)
	for _, l := range tlsListeners {
		t.Run(l.name, func(t *testing.T) { testIdleTLSConnectionsPark(t, l.wrap) })
	}
}

func testIdleTLSConnectionsPark(t *testing.T, wrap func(net.Listener, *tls.Config) net.Listener) {
	_, addr := startTLSFaceOn(t, wrap)
	base := runtime.NumGoroutine()
	const n = 20
	type client struct {
		rc *rawClient
		tc *tls.Conn
		sc *splitConn
	}
	cs := make([]client, n)
	for i := range cs {
		rc, tc, sc := dialTLS(t, addr)
		rc.connect("tls-"+string(rune('a'+i)), 60)
		cs[i] = client{rc, tc, sc}
	}
	// Client goroutines: none (the test reads synchronously); the server's parked: none.
	waitGoroutines(t, base, n/4)

	ping := encode(t, &packet.Pingreq{})
	expect := func(c client, k int, what string) {
		t.Helper()
		for range k {
			if _, ok := c.rc.must(5 * time.Second).(*packet.Pingresp); !ok {
				t.Fatalf("%s: no PINGRESP", what)
			}
		}
	}
	for _, c := range cs {
		// Two packets in one record.
		if _, err := c.tc.Write(append(append([]byte{}, ping...), ping...)); err != nil {
			t.Fatal(err)
		}
		expect(c, 2, "two packets in one record")
	}
	waitGoroutines(t, base, n/4)
	sub := encode(t, &packet.Subscribe{PacketID: 7, Subscriptions: []packet.Subscription{{Filter: []byte("a/long/enough/filter")}}})
	for _, c := range cs {
		// One packet across two records.
		if _, err := c.tc.Write(sub[:3]); err != nil {
			t.Fatal(err)
		}
		if _, err := c.tc.Write(sub[3:]); err != nil {
			t.Fatal(err)
		}
		if _, ok := c.rc.must(5 * time.Second).(*packet.Suback); !ok {
			t.Fatal("packet across records: no SUBACK")
		}
	}
	waitGoroutines(t, base, n/4)
	for _, c := range cs {
		// One record across two TCP segments.
		c.sc.split = 4
		if _, err := c.tc.Write(ping); err != nil {
			t.Fatal(err)
		}
		expect(c, 1, "record across segments")
		c.sc.split = 0
	}
}
