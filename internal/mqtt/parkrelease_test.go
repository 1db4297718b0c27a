package mqtt

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"github.com/ternmq/tern/internal/mqtt/packet"
)

// pahoClient is a paho.golang (MQTT 5) client on nc whose received messages go to msgs.
func pahoClient(t *testing.T, nc net.Conn, id string) (*paho.Client, chan *paho.Publish) {
	t.Helper()
	msgs := make(chan *paho.Publish, 16)
	c := paho.NewClient(paho.ClientConfig{
		Conn: packets.NewThreadSafeConn(nc),
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){
			func(pr paho.PublishReceived) (bool, error) {
				select {
				case msgs <- pr.Packet:
				default:
					t.Errorf("%s: message buffer full", id)
				}
				return true, nil
			},
		},
		PacketTimeout: 5 * time.Second,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: id, KeepAlive: 60, CleanStart: true}); err != nil {
		t.Fatalf("%s: connect: %v", id, err)
	}
	t.Cleanup(func() {
		_ = c.Disconnect(&paho.Disconnect{})
		_ = nc.Close()
	})
	return c, msgs
}

func pahoSubscribe(t *testing.T, c *paho.Client, filter string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}}); err != nil {
		t.Fatalf("subscribe %s: %v", filter, err)
	}
}

func pahoPublish(t *testing.T, c *paho.Client, topic, payload string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(payload)}); err != nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
}

func expectMessage(t *testing.T, msgs chan *paho.Publish, topic, payload string) {
	t.Helper()
	select {
	case m := <-msgs:
		if m.Topic != topic || string(m.Payload) != payload {
			t.Fatalf("got %s %q, want %s %q", m.Topic, m.Payload, topic, payload)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("no message on %s", topic)
	}
}

// parkChecks records, on each connection's own goroutine as it parks (Server.parkHook), what it
// still holds that it should have given back: the read buffer (with the structures a PUBLISH is
// decoded into), the batch of receivers it wrote for, and the part of the connection few
// clients use.
type parkChecks struct {
	mu       sync.Mutex
	parks    map[*conn]int
	problems []string
	// asides counts parks with the start of a packet set aside.
	asides int
}

func watchParks(srv *Server) *parkChecks {
	pc := &parkChecks{parks: map[*conn]int{}}
	hook := func(c *conn) {
		var held []string
		st := c.rd.st
		if st != nil && st.rb != nil {
			held = append(held, fmt.Sprintf("its read buffer (%d bytes pending)", st.end-st.start))
		}
		if st != nil && st.buf == nil {
			held = append(held, "its read state with nothing pending")
		}
		if !reflect.ValueOf(c.batch).IsZero() {
			held = append(held, "its batch")
		}
		if c.rare != nil {
			held = append(held, "its rare part")
		}
		pc.mu.Lock()
		defer pc.mu.Unlock()
		pc.parks[c]++
		if st != nil && st.rb == nil && st.buf != nil {
			pc.asides++
		}
		for _, h := range held {
			pc.problems = append(pc.problems, fmt.Sprintf("%s parked holding %s", c.clientID(), h))
		}
	}
	srv.parkHook.Store(&hook)
	return pc
}

// waitParked waits until every one of srv's n connections has parked at least want times and is
// parked now, then fails the test for anything a connection held when it parked.
func (pc *parkChecks) waitParked(t *testing.T, srv *Server, n, want int) {
	t.Helper()
	deadline := time.Now().Add(handoffAfter + 10*time.Second)
	for {
		cs := srv.conns.All()
		ok := len(cs) == n
		pc.mu.Lock()
		for _, c := range cs {
			ok = ok && pc.parks[c] >= want && c.watch != nil && c.watch.Parked()
		}
		problems := slices.Clone(pc.problems)
		pc.mu.Unlock()
		if ok {
			for _, p := range problems {
				t.Error(p)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the %d connections did not all park", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Real clients (paho.golang) idle until their connections park, over TCP and over TLS, then one
// receives a message and publishes one that the other receives: what a connection gives back when
// it parks comes back when it wakes. Twice, so a connection that parked after carrying messages
// (its batch grown by the receivers it wrote for) is checked too.
func TestParkedConnectionsReleaseAndRestore(t *testing.T) {
	needPoller(t)
	for _, tc := range []struct {
		name  string
		start func(t *testing.T) (*Server, func() net.Conn)
	}{
		{"tcp", func(t *testing.T) (*Server, func() net.Conn) {
			srv, addr := startFace(t, nil)
			return srv, func() net.Conn {
				nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				return nc
			}
		}},
		{"tls", func(t *testing.T) (*Server, func() net.Conn) {
			srv, addr := startTLSFace(t)
			return srv, func() net.Conn {
				nc, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
					&tls.Config{InsecureSkipVerify: true})
				if err != nil {
					t.Fatal(err)
				}
				return nc
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, dial := tc.start(t)
			pc := watchParks(srv)
			a, aMsgs := pahoClient(t, dial(), "a")
			b, bMsgs := pahoClient(t, dial(), "b")
			pahoSubscribe(t, a, "park/a")
			pahoSubscribe(t, b, "park/b")
			for round := range 2 {
				pc.waitParked(t, srv, 2, round+1)
				payload := string(rune('0' + round))
				pahoPublish(t, b, "park/a", "to a "+payload)
				expectMessage(t, aMsgs, "park/a", "to a "+payload)
				pahoPublish(t, a, "park/b", "to b "+payload)
				expectMessage(t, bMsgs, "park/b", "to b "+payload)
			}
			pc.waitParked(t, srv, 2, 3)
		})
	}
}

// A connection that parks with the start of a packet (its rest not yet sent) sets those bytes
// aside and gives the pooled read buffer back, over TCP and TLS; the packet completes when the
// rest arrives. Before, such a connection held the whole buffer until its keep alive ran out.
func TestParkedPartialPacketHoldsNoBuffer(t *testing.T) {
	needPoller(t)
	sub := func(t *testing.T) []byte {
		return encode(t, &packet.Subscribe{PacketID: 9, Subscriptions: []packet.Subscription{{Filter: []byte("half/way/there")}}})
	}
	for _, tc := range []struct {
		name  string
		start func(t *testing.T) (*Server, *rawClient, func([]byte))
	}{
		{"tcp", func(t *testing.T) (*Server, *rawClient, func([]byte)) {
			srv, addr := startFace(t, nil)
			rc := dial(t, addr, packet.V311)
			return srv, rc, func(b []byte) {
				if _, err := rc.nc.Write(b); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"tls", func(t *testing.T) (*Server, *rawClient, func([]byte)) {
			srv, addr := startTLSFace(t)
			rc, tc, _ := dialTLS(t, addr)
			return srv, rc, func(b []byte) {
				if _, err := tc.Write(b); err != nil {
					t.Fatal(err)
				}
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, rc, write := tc.start(t)
			pc := watchParks(srv)
			rc.connect("partial", 60)
			pc.waitParked(t, srv, 1, 1)
			b := sub(t)
			write(b[:3])
			pc.waitParked(t, srv, 1, 2)
			pc.mu.Lock()
			asides := pc.asides
			pc.mu.Unlock()
			if asides == 0 {
				t.Fatal("the connection parked without the start of the packet set aside")
			}
			write(b[3:])
			if _, ok := rc.must(5 * time.Second).(*packet.Suback); !ok {
				t.Fatal("no SUBACK for the packet completed after the park")
			}
			pc.waitParked(t, srv, 1, 3)
		})
	}
}
