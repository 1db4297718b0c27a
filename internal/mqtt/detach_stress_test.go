package mqtt

import (
	"context"
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"github.com/ternmq/tern/internal/tlsrec"
)

// Clients that go quiet and busy again at random, so their connections detach and attach over
// and over, while a publisher fans large messages out to all of them and some reconnect under
// the same client id (a takeover of a connection in any state): every QoS 1 message a client
// sends to itself comes back, and when all have left no descriptor is left open and none is
// counted detached. Run with -race, it is the check that the kept descriptors, the watches and
// the writers stay out of each other's way.
//
// Over TLS (tlsrec) the sockets under the record layer detach and attach the same way.
func TestDetachAttachUnderLoad(t *testing.T) {
	needPoller(t)
	if testing.Short() {
		t.Skip("runs for several seconds")
	}
	detachNow := func(c *Config) { c.DetachIdle = time.Millisecond }
	t.Run("tcp", func(t *testing.T) {
		srv, addr := startFace(t, detachNow)
		testDetachAttachUnderLoad(t, srv, func() (net.Conn, error) { return net.Dial("tcp", addr) })
	})
	t.Run("tls", func(t *testing.T) {
		srv, addr := startTLSFaceOn(t, tlsrec.NewListener, detachNow)
		// The face counts no TLS socket as detached (Stats.Detached is the plain
		// connections'): the test looks at the sockets while it runs.
		most := make(chan int)
		done := make(chan struct{})
		go func() {
			m := 0
			for {
				select {
				case <-done:
					most <- m
					return
				case <-time.After(10 * time.Millisecond):
					m = max(m, countTLSDetached(srv))
				}
			}
		}()
		testDetachAttachUnderLoad(t, srv, func() (net.Conn, error) {
			return tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
		})
		close(done)
		if m := <-most; m == 0 {
			t.Error("no TLS socket detached")
		} else {
			t.Logf("at most %d TLS sockets detached at once", m)
		}
	})
}

func testDetachAttachUnderLoad(t *testing.T, srv *Server, dial func() (net.Conn, error)) {
	baseFDs := openFDs(t)
	const clients = 12
	run := 5 * time.Second
	stop := time.Now().Add(run)

	fanCtx, fanStop := context.WithCancel(context.Background())
	fanDone := make(chan struct{})
	go func() {
		defer close(fanDone)
		nc, err := dial()
		if err != nil {
			t.Error(err)
			return
		}
		defer nc.Close()
		c := paho.NewClient(paho.ClientConfig{Conn: packets.NewThreadSafeConn(nc), PacketTimeout: 5 * time.Second})
		ctx, cancel := context.WithTimeout(fanCtx, 5*time.Second)
		_, err = c.Connect(ctx, &paho.Connect{ClientID: "fan", KeepAlive: 60, CleanStart: true})
		cancel()
		if err != nil {
			t.Error(err)
			return
		}
		big := make([]byte, 64<<10)
		for fanCtx.Err() == nil {
			_, _ = c.Publish(fanCtx, &paho.Publish{Topic: "stress/all", QoS: 0, Payload: big})
			select {
			case <-fanCtx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
		_ = c.Disconnect(&paho.Disconnect{})
	}()

	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			id := fmt.Sprintf("stress-%d", i)
			prev := func() {}
			for round := 0; time.Now().Before(stop); round++ {
				next, err := stressSession(dial, id, rng, stop, prev)
				if err != nil {
					t.Errorf("%s round %d: %v", id, round, err)
					return
				}
				prev = next
			}
			prev()
		}()
	}
	wg.Wait()
	fanStop()
	<-fanDone

	waitAllClosed(t, srv, baseFDs)
	t.Logf("attaches: %d", srv.stats.Attaches.Load())
}

// stressSession connects as id, taking over the previous session's connection (prev closes
// that one afterwards), subscribes to its own topic and the fan-out, and until stop or a random
// reconnect sends bursts of QoS 1 messages to itself between random pauses, checking each comes
// back. It returns what closes its own connection.
func stressSession(dial func() (net.Conn, error), id string, rng *rand.Rand, stop time.Time, prev func()) (func(), error) {
	nc, err := dial()
	if err != nil {
		return nil, err
	}
	echoes := make(chan string, 64)
	c := paho.NewClient(paho.ClientConfig{
		Conn:          packets.NewThreadSafeConn(nc),
		PacketTimeout: 5 * time.Second,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			if pr.Packet.Topic != "stress/all" {
				select {
				case echoes <- string(pr.Packet.Payload):
				default:
				}
			}
			return true, nil
		}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	closeIt := func() { _ = c.Disconnect(&paho.Disconnect{}); _ = nc.Close() }
	_, err = c.Connect(ctx, &paho.Connect{ClientID: id, KeepAlive: 60, CleanStart: true})
	prev()
	if err != nil {
		closeIt()
		return nil, fmt.Errorf("connect: %w", err)
	}
	fail := func(format string, a ...any) (func(), error) {
		closeIt()
		return nil, fmt.Errorf(format, a...)
	}
	own := "stress/" + id
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: own, QoS: 1}, {Topic: "stress/all", QoS: 0}}}); err != nil {
		return fail("subscribe: %w", err)
	}
	for n := 0; time.Now().Before(stop); {
		for range 1 + rng.IntN(8) {
			n++
			want := fmt.Sprint(n)
			if _, err := c.Publish(ctx, &paho.Publish{Topic: own, QoS: 1, Payload: []byte(want)}); err != nil {
				return fail("publish %s: %w", want, err)
			}
			select {
			case got := <-echoes:
				if got != want {
					return fail("echo %q, want %q", got, want)
				}
			case <-time.After(5 * time.Second):
				return fail("no echo of %s", want)
			}
		}
		if rng.IntN(6) == 0 {
			return closeIt, nil // the next session takes this one over
		}
		time.Sleep(time.Duration(rng.IntN(1500)) * time.Millisecond) // quiet: detach; or not
	}
	return closeIt, nil
}
