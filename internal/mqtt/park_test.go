package mqtt

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/mqtt/packet"
	"github.com/ternmq/tern/internal/netio"
)

func needPoller(t *testing.T) {
	t.Helper()
	if _, err := netio.DefaultPoller(); err != nil {
		t.Skipf("no poller: %v", err)
	}
}

// parkedClients connects n subscribers (idle/<i>, with version v and keep alive 60 s) and waits
// until the server holds (almost) no goroutine for them: they are parked in the poller.
func parkedClients(t *testing.T, addr string, n int, v packet.Version) []*rawClient {
	t.Helper()
	base := runtime.NumGoroutine()
	cs := make([]*rawClient, n)
	for i := range cs {
		c := dial(t, addr, v)
		c.connect(fmt.Sprintf("idle-%d", i), 60)
		c.send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: []byte(fmt.Sprintf("idle/%d", i))}}})
		if _, ok := c.must(2 * time.Second).(*packet.Suback); !ok {
			t.Fatalf("client %d: no SUBACK", i)
		}
		cs[i] = c
	}
	// A connection keeps its goroutine for handoffAfter after its last packet, then parks.
	deadline := time.Now().Add(handoffAfter + 10*time.Second)
	for {
		g := runtime.NumGoroutine() - base
		if g <= n/10 {
			return cs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d idle connections hold %d goroutines", n, g)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Idle connections hold no goroutine, and parked they still get their messages, answer pings,
// and send their next packets.
func TestIdleConnectionsHoldNoGoroutine(t *testing.T) {
	needPoller(t)
	addr := startServer(t, nil)
	const n = 100
	cs := parkedClients(t, addr, n, packet.V311)
	pub := dial(t, addr, packet.V311)
	pub.connect("pub", 0)
	for i := range cs {
		pub.send(&packet.Publish{Topic: []byte(fmt.Sprintf("idle/%d", i)), Payload: []byte(fmt.Sprint(i))})
	}
	for i, c := range cs {
		p, ok := c.must(5 * time.Second).(*packet.Publish)
		if !ok || string(p.Payload) != fmt.Sprint(i) {
			t.Fatalf("client %d: got %+v", i, p)
		}
		c.send(&packet.Pingreq{})
		if _, ok := c.must(5 * time.Second).(*packet.Pingresp); !ok {
			t.Fatalf("client %d: no PINGRESP", i)
		}
	}
}

// A server that closes ends its parked connections with their DISCONNECT, without waiting out
// its grace period for them.
func TestCloseEndsParkedConnections(t *testing.T) {
	needPoller(t)
	srv, addr := startFace(t, nil)
	cs := parkedClients(t, addr, 20, packet.V5)
	done := make(chan struct{})
	go func() {
		_ = srv.Close()
		close(done)
	}()
	for i, c := range cs {
		d, ok := c.must(5 * time.Second).(*packet.Disconnect)
		if !ok || d.Reason != packet.ServerShuttingDown {
			t.Fatalf("client %d: got %+v, want DISCONNECT server shutting down", i, d)
		}
		// The client closes its side as a client would; the server then lets go.
		_ = c.nc.Close()
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return")
	}
}

// A parked connection whose session is taken over is told so and ends.
func TestTakeoverOfAParkedConnection(t *testing.T) {
	needPoller(t)
	addr := startServer(t, nil)
	cs := parkedClients(t, addr, 1, packet.V5)
	next := dial(t, addr, packet.V5)
	next.connect("idle-0", 0)
	d, ok := cs[0].must(5 * time.Second).(*packet.Disconnect)
	if !ok || d.Reason != packet.SessionTakenOver {
		t.Fatalf("got %+v, want DISCONNECT session taken over", d)
	}
}
