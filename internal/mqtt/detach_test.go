package mqtt

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/ternmq/tern/internal/mqtt/packet"
)

// detachedNow reports whether c has let go of its net.Conn (netio.Conn.Detach). The connection
// changes it under its lock, so the test reads it under the lock too.
func detachedNow(c *conn) bool {
	c.out.Lock()
	defer c.out.Unlock()
	return c.out.NetConn() == nil
}

// connOf returns srv's connection of client id, waiting until it has one.
func connOf(t *testing.T, srv *Server, id string) *conn {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, c := range srv.conns.All() {
			if c.client != nil && c.client.ClientID() == id {
				return c
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no connection of %s", id)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitDetached waits until id's connection is detached and parked.
func waitDetached(t *testing.T, srv *Server, id string) *conn {
	t.Helper()
	c := connOf(t, srv, id)
	deadline := time.Now().Add(handoffAfter + 10*time.Second)
	for !(detachedNow(c) && c.watch.Parked()) {
		if time.Now().After(deadline) {
			t.Fatalf("%s's connection did not detach", id)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return c
}

// openFDs counts this process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count descriptors: %v", err)
	}
	return len(es)
}

// A quiet connection detaches from Go's socket object and still gets its messages (written
// without attaching), answers a ping and acknowledges a delivery (staying detached), attaches
// when its client gets busy and detaches again once quiet, runs out of keep alive, is taken
// over, and closes both its descriptors when it ends.
func TestDetachedConnectionServesItsClient(t *testing.T) {
	needPoller(t)
	srv, addr := startFace(t, func(c *Config) { c.DetachIdle = 20 * time.Millisecond })
	baseFDs := openFDs(t)

	subConn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	sub, msgs := pahoClient(t, subConn, "sub")
	pahoSubscribe(t, sub, "d/one")
	pubConn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := pahoClient(t, pubConn, "pub")

	c := waitDetached(t, srv, "sub")
	attaches := srv.stats.Attaches.Load()
	pahoPublish(t, pub, "d/one", "first") // QoS 1: the subscriber acknowledges it
	expectMessage(t, msgs, "d/one", "first")
	if !detachedNow(c) {
		t.Error("a delivery and its acknowledgement attached the connection")
	}

	pinger := dial(t, addr, packet.V311)
	pinger.connect("pinger", 60)
	pc := waitDetached(t, srv, "pinger")
	pinger.send(&packet.Pingreq{})
	if _, ok := pinger.must(2 * time.Second).(*packet.Pingresp); !ok {
		t.Fatal("no PINGRESP")
	}
	if !detachedNow(pc) {
		t.Error("a keep-alive ping attached the connection")
	}
	if got := srv.stats.Attaches.Load(); got != attaches {
		t.Fatalf("%d attaches for a publish, its delivery and acknowledgement, and a ping; want none", got-attaches)
	}
	if got := srv.stats.Detached.Load(); got != 3 {
		t.Errorf("%d connections detached, want 3", got)
	}

	// Woken again and again soon after its last packet, the connection is busy: it attaches
	// at the busyWakes-th such wake. Quiet again, it detaches. (The pause makes the first of
	// these pings come after a quiet spell, so the count starts from it whatever came before.)
	time.Sleep(handoffAfter)
	for i := 0; i <= busyWakes; i++ {
		pinged := time.Now()
		for !pc.watch.Parked() {
			if time.Since(pinged) > handoffAfter/2 {
				t.Fatal("the connection did not park again after the ping")
			}
			time.Sleep(time.Millisecond)
		}
		pinger.send(&packet.Pingreq{})
		if _, ok := pinger.must(2 * time.Second).(*packet.Pingresp); !ok {
			t.Fatal("no PINGRESP")
		}
		want := attaches
		if i == busyWakes {
			want++
		}
		if got := srv.stats.Attaches.Load(); got != want {
			t.Fatalf("%d attaches after %d quick pings; want %d", got-attaches, i, want-attaches)
		}
	}
	waitDetached(t, srv, "pinger")
	pinger.send(&packet.Pingreq{})
	if _, ok := pinger.must(2 * time.Second).(*packet.Pingresp); !ok {
		t.Fatal("no PINGRESP after detaching again")
	}

	// A subscription made while detached works.
	pahoSubscribe(t, sub, "d/two")
	pahoPublish(t, pub, "d/two", "third")
	expectMessage(t, msgs, "d/two", "third")

	// A detached connection's keep alive still runs out.
	lazy := dial(t, addr, packet.V5)
	lazy.connect("lazy", 1)
	waitDetached(t, srv, "lazy")
	p, err := lazy.recv(5 * time.Second)
	if d, ok := p.(*packet.Disconnect); !ok || d.Reason != packet.KeepAliveTimeout {
		t.Fatalf("got %v, %v; want DISCONNECT keep alive timeout", p, err)
	}

	// A detached connection taken over by a client of the same id is closed.
	waitDetached(t, srv, "pinger")
	again := dial(t, addr, packet.V311)
	again.connect("pinger", 60)
	if _, err := pinger.recv(5 * time.Second); !errors.Is(err, io.EOF) && !isReset(err) {
		t.Fatalf("taken-over detached connection: %v, want the end of the stream", err)
	}

	// Everything closed, the descriptors the connections held are all closed too.
	_ = again.nc.Close()
	_ = lazy.nc.Close()
	_ = pinger.nc.Close()
	_ = sub.Disconnect(&paho.Disconnect{})
	_ = pub.Disconnect(&paho.Disconnect{})
	_ = subConn.Close()
	_ = pubConn.Close()
	waitAllClosed(t, srv, baseFDs)
}

// waitAllClosed waits until srv has no connection left and the process no more descriptors than
// baseFDs, and checks that none is still counted detached.
func waitAllClosed(t *testing.T, srv *Server, baseFDs int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for len(srv.conns.All()) > 0 || openFDs(t) > baseFDs {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections and %d descriptors left (%d before)", len(srv.conns.All()), openFDs(t), baseFDs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := srv.stats.Detached.Load(); got != 0 {
		t.Errorf("%d connections counted detached after all closed", got)
	}
}

// isReset reports whether err is a connection reset.
func isReset(err error) bool { return err != nil && strings.Contains(err.Error(), "reset") }

// With DetachIdle 0 nothing detaches.
func TestDetachIdleZeroKeepsTheConnection(t *testing.T) {
	needPoller(t)
	srv, addr := startFace(t, func(c *Config) { c.DetachIdle = 0 })
	parkedClients(t, addr, 1, packet.V311)
	c := connOf(t, srv, "idle-0")
	deadline := time.Now().Add(handoffAfter + 10*time.Second)
	for !c.watch.Parked() {
		if time.Now().After(deadline) {
			t.Fatal("the connection did not park")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if detachedNow(c) {
		t.Fatal("detached with DetachIdle 0")
	}
}

// lineWriter hands each write (a text handler's whole record) to a channel, dropping what finds
// it full.
type lineWriter chan string

func (w lineWriter) Write(p []byte) (int, error) {
	select {
	case w <- string(p):
	default:
	}
	return len(p), nil
}

// The core's debug line for a disconnect names the client's address, which it asks the
// connection for (broker.RemoteNamer) rather than keeping it per client: also once the
// connection has let go of Go's socket object.
func TestDisconnectLogNamesTheClientAddress(t *testing.T) {
	needPoller(t)
	lines := make(lineWriter, 256)
	log := slog.New(slog.NewTextHandler(lines, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, addr := startFaceLogging(t, log, func(c *Config) { c.DetachIdle = time.Millisecond })
	rc := dial(t, addr, packet.V311)
	rc.connect("far", 60)
	waitDetached(t, srv, "far")
	_ = rc.nc.Close()
	want := "remote=" + rc.nc.LocalAddr().String()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case line := <-lines:
			if strings.Contains(line, `msg="client disconnected"`) && strings.Contains(line, "client=far") {
				if !strings.Contains(line, want) {
					t.Fatalf("disconnect line %q lacks %s", line, want)
				}
				return
			}
		case <-timeout:
			t.Fatal("no disconnect line")
		}
	}
}
