package main

import (
	"context"
	"fmt"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"github.com/ternmq/tern/internal/cluster"
)

// Persistent sessions across the cluster's processes: a session moves from one node to another
// with its queue; kill -9 of the leader and then of a follower under QoS 1 load from publishers
// on every node, with a persistent subscriber on every node, loses nothing that was
// acknowledged; a partitioned minority refuses what it cannot make durable.

// loadClient is one connection of the load: it reconnects, to its home node first, then to the
// others, whenever its connection ends.
type loadClient struct {
	c    *ctestCluster
	id   string
	home int
	sub  bool // a persistent subscriber to load/#, else a publisher to load/<id>

	mu sync.Mutex
	// Publisher: acked are the numbers acknowledged, and when (the first after a kill counts).
	acked   []int
	ackedAt []time.Time
	// Subscriber: got is every payload received; lost counts reconnects that found no session.
	got        map[string]bool
	lost       int
	reconnects int
	history    []string // node:session present, per connect
}

// connect opens a paho connection to node i; ended is closed when it ends.
func (lc *loadClient) connect(ctx context.Context, i int) (*paho.Client, net.Conn, <-chan struct{}, error) {
	n := lc.c.nodes[i]
	conn, err := net.DialTimeout("tcp", n.mqtt, 2*time.Second)
	if err != nil {
		return nil, nil, nil, err
	}
	ended := make(chan struct{})
	var once sync.Once
	end := func() { once.Do(func() { close(ended) }) }
	cfg := paho.ClientConfig{Conn: packets.NewThreadSafeConn(conn), PacketTimeout: 10 * time.Second,
		OnClientError: func(error) { end() }, OnServerDisconnect: func(*paho.Disconnect) { end() }}
	if lc.sub {
		cfg.OnPublishReceived = []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			lc.mu.Lock()
			lc.got[string(pr.Packet.Payload)] = true
			lc.mu.Unlock()
			return true, nil
		}}
	}
	cl := paho.NewClient(cfg)
	expiry := uint32(600)
	cp := &paho.Connect{ClientID: lc.id, CleanStart: !lc.sub, KeepAlive: 30}
	if lc.sub {
		cp.Properties = &paho.ConnectProperties{SessionExpiryInterval: &expiry}
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ack, err := cl.Connect(cctx, cp)
	if err == nil && ack.ReasonCode != 0 {
		err = fmt.Errorf("connack %#x", ack.ReasonCode)
	}
	if err != nil {
		_ = conn.Close()
		return nil, nil, nil, err
	}
	if lc.sub {
		lc.mu.Lock()
		first := lc.reconnects == 0
		if !first && !ack.SessionPresent {
			lc.lost++
		}
		lc.reconnects++
		lc.history = append(lc.history, fmt.Sprintf("%s:%v@%s", n.id, ack.SessionPresent, time.Now().Format("15:04:05.000")))
		lc.mu.Unlock()
		if first {
			sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, err := cl.Subscribe(sctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "load/#", QoS: 1}}})
			cancel()
			if err != nil {
				_ = conn.Close()
				return nil, nil, nil, err
			}
		}
	}
	return cl, conn, ended, nil
}

// run keeps the client connected (and publishing) until ctx ends.
func (lc *loadClient) run(ctx context.Context, wg *sync.WaitGroup) {
	defer wg.Done()
	next := 0
	for try := 0; ctx.Err() == nil; try++ {
		i := (lc.home + try) % len(lc.c.nodes)
		cl, conn, ended, err := lc.connect(ctx, i)
		if err != nil {
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		try = -1 // home first again next time
		if lc.sub {
			select {
			case <-ctx.Done():
			case <-ended:
			}
			_ = conn.Close()
			continue
		}
		for ctx.Err() == nil {
			pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			res, err := cl.Publish(pctx, &paho.Publish{Topic: "load/" + lc.id, QoS: 1,
				Payload: fmt.Appendf(nil, "%s:%d", lc.id, next)})
			cancel()
			if res != nil && res.ReasonCode >= 0x80 {
				// Refused (no leader, a node holding sessions gone): the same number again.
				select {
				case <-ctx.Done():
				case <-time.After(50 * time.Millisecond):
				}
				continue
			}
			if err != nil {
				break // the connection ended: reconnect, send the same number again
			}
			lc.mu.Lock()
			lc.acked = append(lc.acked, next)
			lc.ackedAt = append(lc.ackedAt, time.Now())
			lc.mu.Unlock()
			next++
		}
		_ = conn.Close()
	}
}

func (lc *loadClient) ackedCount() int {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	return len(lc.acked)
}

// firstAckAfter is when the publisher's first acknowledgement after t came (zero: none yet).
func (lc *loadClient) firstAckAfter(t time.Time) time.Time {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	for _, at := range lc.ackedAt {
		if at.After(t) {
			return at
		}
	}
	return time.Time{}
}

// missing lists what sub has not received of what the publishers had acknowledged.
func missing(sub *loadClient, pubs []*loadClient) []string {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	var out []string
	for _, p := range pubs {
		p.mu.Lock()
		for _, n := range p.acked {
			if s := fmt.Sprintf("%s:%d", p.id, n); !sub.got[s] {
				out = append(out, s)
			}
		}
		p.mu.Unlock()
	}
	return out
}

// leaderOf asks node n who leads ("" when it cannot say).
func (c *ctestCluster) leaderOf(n *cnode) string {
	st, ok := c.status(n)
	if !ok {
		return ""
	}
	return st.Leader
}

func TestClusterSessionsAndFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs three tern processes")
	}
	c := newCTestCluster(t)
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
	until(t, 20*time.Second, "every node is live with three members", func() bool {
		for _, n := range c.nodes {
			st, ok := c.status(n)
			if !ok || len(st.Members) != 3 || st.Leader == "" || !st.Live {
				return false
			}
		}
		return true
	})

	t.Run("a session moves from node 1 to node 2 with its queue", func(t *testing.T) {
		s := c.dialSession(t, n1, "mover", false)
		s.sub(t, "mv/#", 1)
		_ = s.Disconnect(&paho.Disconnect{})
		// The subscription is in the log once acknowledged; once n3 applied it, n3 routes to it
		// (no interest needs to travel).
		c.settle(t, n1)
		pub := c.dial(t, n3, "mv-pub")
		for i := range 5 {
			if rc := pub.pub(t, "mv/x", fmt.Sprint(i), 1, false); rc >= 0x80 {
				t.Fatalf("publish refused: %#x", rc)
			}
		}
		s2 := c.dialSession(t, n2, "mover", true)
		for i := range 5 {
			s2.waitFor(t, fmt.Sprintf("mv/x=%d", i))
		}
	})

	t.Run("a minority refuses what it cannot make durable", func(t *testing.T) {
		// One persistent subscriber on the node cut off, one on the majority's side.
		here := c.dialSession(t, n3, "durable-here", false)
		here.sub(t, "min/here/#", 1)
		there := c.dialSession(t, n1, "durable-there", false)
		there.sub(t, "min/there/#", 1)
		c.settle(t, n1)
		pub := c.dial(t, n3, "min-pub")
		c.partition(n3, true)
		t.Cleanup(func() { c.partition(n3, false) })
		for _, topic := range []string{"min/here/x", "min/there/x"} {
			start := time.Now()
			rc := publishRC(t, pub, topic)
			t.Logf("%s: the minority answered %#x after %s", topic, rc, time.Since(start).Round(time.Millisecond))
			if rc < 0x80 {
				t.Fatalf("the minority acknowledged a message for a persistent session (%s) it could not commit", topic)
			}
		}
		conn, err := net.DialTimeout("tcp", n3.mqtt, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		cl := paho.NewClient(paho.ClientConfig{Conn: packets.NewThreadSafeConn(conn)})
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		ack, err := cl.Connect(ctx, &paho.Connect{ClientID: "newcomer", CleanStart: true})
		cancel()
		_ = conn.Close()
		if err == nil && ack.ReasonCode < 0x80 {
			t.Fatal("the minority took a client id it cannot claim")
		}
		c.partition(n3, false)
		until(t, 30*time.Second, "n3 catches up after the partition", func() bool {
			st, ok := c.status(n3)
			return ok && st.Leader != "" && st.AppliedIndex >= c.statusOK(n1).CommitIndex
		})
	})

	t.Run("kill -9 of the leader and of a follower under load loses nothing acknowledged", func(t *testing.T) {
		ctx, stop := context.WithCancel(context.Background())
		defer stop()
		var wg sync.WaitGroup
		var pubs, subs []*loadClient
		for i := range c.nodes {
			s := &loadClient{c: c, id: fmt.Sprintf("lsub%d", i+1), home: i, sub: true, got: map[string]bool{}}
			subs = append(subs, s)
			wg.Add(1)
			go s.run(ctx, &wg)
		}
		until(t, 20*time.Second, "the subscribers subscribed", func() bool {
			for _, s := range subs {
				s.mu.Lock()
				r := s.reconnects
				s.mu.Unlock()
				if r == 0 {
					return false
				}
			}
			return true
		})
		// Their subscriptions are in the log: let every node apply them before publishing.
		for _, n := range c.nodes {
			c.settle(t, n)
		}
		for i := range c.nodes {
			p := &loadClient{c: c, id: fmt.Sprintf("lpub%d", i+1), home: i}
			pubs = append(pubs, p)
			wg.Add(1)
			go p.run(ctx, &wg)
		}
		progress := func(what string, more int) {
			t.Helper()
			base := make([]int, len(pubs))
			for i, p := range pubs {
				base[i] = p.ackedCount()
			}
			until(t, 60*time.Second, what, func() bool {
				for i, p := range pubs {
					if p.ackedCount() < base[i]+more {
						return false
					}
				}
				return true
			})
		}
		progress("every publisher acknowledged", 30)

		kill := func(victim *cnode, role string) {
			t.Helper()
			if err := victim.proc.cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			<-victim.proc.done
			killed := time.Now()
			var survivors []*cnode
			for _, n := range c.nodes {
				if n != victim {
					survivors = append(survivors, n)
				}
			}
			took := until(t, newLeaderBound, "a leader among the survivors", func() bool {
				l := c.leaderOf(survivors[0])
				return l != "" && l != victim.id && l == c.leaderOf(survivors[1])
			})
			progress("every publisher acknowledged after the kill", 30)
			first := time.Time{}
			for _, p := range pubs {
				if at := p.firstAckAfter(killed); !at.IsZero() && (first.IsZero() || at.Before(first)) {
					first = at
				}
			}
			t.Logf("kill -9 of the %s %s: a leader %s after, the first acknowledged publish %s after",
				role, victim.id, took.Round(time.Millisecond), first.Sub(killed).Round(time.Millisecond))
			// The killed node comes back on its data directory, rejoins and catches up.
			c.start(victim, "")
			until(t, 60*time.Second, "the killed node catches up", func() bool {
				st, ok := c.status(victim)
				l := c.statusOK(survivors[0])
				return ok && st.Live && st.Leader != "" && st.AppliedIndex+50 >= l.CommitIndex
			})
			progress("every publisher acknowledged after the restart", 10)
		}
		var leader, follower *cnode
		until(t, 20*time.Second, "a leader", func() bool {
			l := c.leaderOf(n1)
			for _, n := range c.nodes {
				if n.id == l {
					leader = n
				}
			}
			return leader != nil
		})
		kill(leader, "leader")
		l := c.leaderOf(n1)
		for _, n := range c.nodes {
			if n.id != l && n != leader {
				follower = n
			}
		}
		if follower == nil {
			follower = leader // it leads again: kill another one
			for _, n := range c.nodes {
				if n.id != l {
					follower = n
				}
			}
		}
		kill(follower, "follower")
		stop()
		wg.Wait()
		total := 0
		for _, p := range pubs {
			total += p.ackedCount()
		}
		for _, s := range subs {
			deadline := time.Now().Add(30 * time.Second)
			for m := missing(s, pubs); len(m) > 0; m = missing(s, pubs) {
				if time.Now().After(deadline) {
					s.mu.Lock()
					got, rec, hist := len(s.got), s.reconnects, s.history
					s.mu.Unlock()
					t.Fatalf("not within 30s: %s lacks %d of the acknowledged messages (first %v); it has %d, connected %d times: %v",
						s.id, len(m), m[:min(len(m), 10)], got, rec, hist)
				}
				<-time.After(50 * time.Millisecond)
			}
			s.mu.Lock()
			lost, got, rec := s.lost, len(s.got), s.reconnects
			s.mu.Unlock()
			if lost > 0 {
				s.mu.Lock()
				t.Errorf("%s reconnected %d times without its session: %v", s.id, lost, s.history)
				s.mu.Unlock()
			}
			t.Logf("%s: %d distinct messages received, %d connects", s.id, got, rec)
		}
		if m := missing(subs[0], pubs); len(m) > 0 {
			t.Fatalf("lost: %v", m[:min(len(m), 10)])
		}
		t.Logf("%d messages acknowledged, every one received by every subscriber", total)
	})
}

// dialSession connects a persistent session (MQTT 5, expiry 10 minutes); present is what the
// CONNACK must say.
func (c *ctestCluster) dialSession(t *testing.T, n *cnode, id string, present bool) *mqttClient {
	t.Helper()
	conn, err := net.DialTimeout("tcp", n.mqtt, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	m := &mqttClient{new: make(chan struct{}, 1)}
	cfg := paho.ClientConfig{Conn: packets.NewThreadSafeConn(conn), PacketTimeout: 10 * time.Second}
	cfg.OnPublishReceived = []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
		m.mu.Lock()
		m.got = append(m.got, pr.Packet.Topic+"="+string(pr.Packet.Payload))
		m.mu.Unlock()
		select {
		case m.new <- struct{}{}:
		default:
		}
		return true, nil
	}}
	m.Client = paho.NewClient(cfg)
	expiry := uint32(600)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	ack, err := m.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: false, KeepAlive: 30,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}})
	if err != nil || ack.ReasonCode != 0 {
		t.Fatalf("connect %s to %s: %v %+v", id, n.id, err, ack)
	}
	if ack.SessionPresent != present {
		t.Fatalf("%s on %s: session present %v, want %v", id, n.id, ack.SessionPresent, present)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return m
}

// statusOK is a node's status, zero when it does not answer.
func (c *ctestCluster) statusOK(n *cnode) cluster.Status {
	st, _ := c.status(n)
	return st
}

// settle waits until every node has applied what n has.
func (c *ctestCluster) settle(t *testing.T, n *cnode) {
	t.Helper()
	want := c.statusOK(n).AppliedIndex
	until(t, 15*time.Second, "every node applied what "+n.id+" has", func() bool {
		for _, o := range c.nodes {
			if c.statusOK(o).AppliedIndex < want {
				return false
			}
		}
		return true
	})
}

// publishRC publishes one QoS 1 message and returns the reason code of its PUBACK.
func publishRC(t *testing.T, m *mqttClient, topic string) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := m.Publish(ctx, &paho.Publish{Topic: topic, Payload: []byte("x"), QoS: 1})
	if res != nil {
		return byte(res.ReasonCode)
	}
	if err != nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
	return 0
}
