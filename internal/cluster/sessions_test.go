package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/message"
)

// tsink records what a node's core sends one test connection.
type tsink struct {
	mu     sync.Mutex
	got    []string // payloads, with a "dup:" prefix when sent again
	pids   []uint16
	closed error
	tick   chan struct{}
}

func newTSink() *tsink { return &tsink{tick: make(chan struct{}, 1)} }

func (k *tsink) Send(d broker.Delivery) broker.SendResult {
	k.mu.Lock()
	p := string(d.Msg.Payload)
	if d.Dup {
		p = "dup:" + p
	}
	k.got = append(k.got, p)
	k.pids = append(k.pids, d.PacketID)
	k.mu.Unlock()
	k.poke()
	return broker.Sent
}

func (k *tsink) poke() {
	select {
	case k.tick <- struct{}{}:
	default:
	}
}

func (k *tsink) Release(uint16) {}

func (k *tsink) Close(reason error) {
	k.mu.Lock()
	k.closed = reason
	k.mu.Unlock()
	k.poke()
}

func (k *tsink) Drained() <-chan struct{} {
	ch := make(chan struct{})
	close(ch)
	return ch
}

func (k *tsink) payloads() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.got)
}

func (k *tsink) closedWith() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.closed
}

// waitPayloads waits until the sink has received want, in that order.
func (k *tsink) waitPayloads(t *testing.T, want ...string) {
	t.Helper()
	deadline := time.After(waitTimeout)
	for fmt.Sprint(k.payloads()) != fmt.Sprint(want) {
		select {
		case <-k.tick:
		case <-deadline:
			t.Fatalf("received %q, want %q", k.payloads(), want)
		}
	}
}

// conn connects a client to a node's core and starts it.
func conn(t *testing.T, n *tnode, req broker.ConnectRequest) (*broker.Client, *tsink, broker.ConnectResult, error) {
	t.Helper()
	k := newTSink()
	req.Sink = k
	c, res, err := n.b.Connect(context.Background(), req)
	if err == nil {
		c.Start()
	}
	return c, k, res, err
}

func mustConn(t *testing.T, n *tnode, req broker.ConnectRequest) (*broker.Client, *tsink, broker.ConnectResult) {
	t.Helper()
	c, k, res, err := conn(t, n, req)
	if err != nil {
		t.Fatalf("connect %s to %s: %v", req.ClientID, n.id, err)
	}
	return c, k, res
}

func persistent(id string) broker.ConnectRequest {
	return broker.ConnectRequest{ClientID: id, Expiry: broker.NeverExpire}
}

func sub(t *testing.T, c *broker.Client, filter string) {
	t.Helper()
	if r := c.Subscribe([]broker.SubscribeRequest{{Filter: filter, QoS: 1}}); r[0].Err != nil {
		t.Fatal(r[0].Err)
	}
}

// pubAcked publishes QoS 1 messages and waits for each to be acknowledged (durable).
func pubAcked(t *testing.T, c *broker.Client, topic string, payloads ...string) {
	t.Helper()
	for _, p := range payloads {
		res, err := c.Publish(&message.Message{Topic: topic, Payload: []byte(p), QoS: 1})
		if err == nil {
			err = res.Durable.Wait()
		}
		if err != nil {
			t.Fatalf("publish %s: %v", p, err)
		}
	}
}

// synced waits until every node has applied what n has.
func synced(t *testing.T, n *tnode, others ...*tnode) {
	t.Helper()
	i := n.fsm.appliedIndex()
	for _, o := range others {
		if err := o.waitApplied(ctx(t), i); err != nil {
			t.Fatal(err)
		}
	}
}

func brokerCluster(t *testing.T) (*tcluster, *tnode, *tnode, *tnode) {
	tc := newTCluster(t)
	tc.brokers = true
	n1, n2, n3 := tc.three()
	return tc, n1, n2, n3
}

// A persistent session goes offline on one node; messages published on another are kept for it
// (routed by the directory, no interest needed) and acknowledged once the log has them; the
// client comes back on a third node and finds its session there with its queue, and the first
// node no longer has it.
func TestSessionMovesWithItsQueue(t *testing.T) {
	_, n1, n2, n3 := brokerCluster(t)
	c1, _, _ := mustConn(t, n1, persistent("s"))
	sub(t, c1, "t/#")
	c1.Disconnect(broker.DisconnectRequest{Graceful: true})
	synced(t, n1, n2)
	pub, _, _ := mustConn(t, n2, broker.ConnectRequest{ClientID: "pub"})
	pubAcked(t, pub, "t/x", "0", "1", "2")
	_, k3, res := mustConn(t, n3, persistent("s"))
	if !res.SessionPresent {
		t.Fatal("the session was not present on the node it moved to")
	}
	k3.waitPayloads(t, "0", "1", "2")
	if slices.Contains(n1.b.SessionIDs(), "s") {
		t.Fatal("the node the session left still has it")
	}
	// It is at home on n3 now: what n1 publishes reaches it there.
	synced(t, n3, n1)
	pub1, _, _ := mustConn(t, n1, broker.ConnectRequest{ClientID: "pub1"})
	pubAcked(t, pub1, "t/y", "3")
	k3.waitPayloads(t, "0", "1", "2", "3")
}

// A client connecting on another node takes its session over: the old connection is closed as
// taken over, and what was in flight there is sent again on the new one.
func TestTakeoverAcrossNodes(t *testing.T) {
	_, n1, n2, _ := brokerCluster(t)
	c1, k1, _ := mustConn(t, n1, persistent("s"))
	sub(t, c1, "t/#")
	pub, _, _ := mustConn(t, n1, broker.ConnectRequest{ClientID: "pub"})
	pubAcked(t, pub, "t/x", "a")
	k1.waitPayloads(t, "a") // in flight: never acknowledged
	_, k2, res := mustConn(t, n2, persistent("s"))
	if !res.SessionPresent {
		t.Fatal("session not present after a takeover")
	}
	eventually(t, "the old connection is closed as taken over", func() bool {
		return errors.Is(k1.closedWith(), broker.ErrSessionTakenOver)
	})
	k2.waitPayloads(t, "dup:a")
}

// A clean start on another node ends the session: nothing of it comes along.
func TestCleanStartElsewhereEndsTheSession(t *testing.T) {
	_, n1, n2, _ := brokerCluster(t)
	c1, _, _ := mustConn(t, n1, persistent("s"))
	sub(t, c1, "t/#")
	c1.Disconnect(broker.DisconnectRequest{Graceful: true})
	synced(t, n1, n2)
	pub, _, _ := mustConn(t, n2, broker.ConnectRequest{ClientID: "pub"})
	pubAcked(t, pub, "t/x", "old")
	req := persistent("s")
	req.CleanStart = true
	c2, k2, res := mustConn(t, n2, req)
	if res.SessionPresent {
		t.Fatal("a clean start found a session")
	}
	sub(t, c2, "u")
	synced(t, n2, n1)
	if slices.Contains(n1.b.SessionIDs(), "s") {
		t.Fatal("the old node kept the session")
	}
	if got := k2.payloads(); len(got) != 0 {
		t.Fatalf("a clean start received %q", got)
	}
}

// A client id is unique in the cluster: an exclusive connect (mBus) is refused while the id is
// connected on another node, and a session belongs to its identity on every node.
func TestClientIDUniqueAcrossNodes(t *testing.T) {
	_, n1, n2, _ := brokerCluster(t)
	mustConn(t, n1, broker.ConnectRequest{ClientID: "m", CleanStart: true, Exclusive: true})
	if _, _, _, err := conn(t, n2, broker.ConnectRequest{ClientID: "m", CleanStart: true, Exclusive: true}); !errors.Is(err, broker.ErrClientIDInUse) {
		t.Fatalf("an exclusive id connected elsewhere: %v", err)
	}
	alice, _ := auth.NewPrincipal("alice", "s", []auth.Grant{{Action: auth.Subscribe, Filter: "#"}})
	bob, _ := auth.NewPrincipal("bob", "s", []auth.Grant{{Action: auth.Subscribe, Filter: "#"}})
	mustConn(t, n1, broker.ConnectRequest{ClientID: "s", Expiry: 60, Principal: alice})
	if _, _, _, err := conn(t, n2, broker.ConnectRequest{ClientID: "s", Expiry: 60, Principal: bob}); !errors.Is(err, broker.ErrClientIDInUse) {
		t.Fatalf("another identity took the session: %v", err)
	}
	// A clean session ends with its connection and leaves the directory.
	c, _, _ := mustConn(t, n2, broker.ConnectRequest{ClientID: "brief", CleanStart: true})
	c.Disconnect(broker.DisconnectRequest{Graceful: true})
	eventually(t, "the ended session leaves the directory", func() bool {
		_, ok := n1.fsm.dir.get("brief")
		return !ok
	})
}

// A node dies: the sessions it held are given to the others with their queues. Until then a QoS
// 1 message for them is refused (not acknowledged with no copy kept); after, it is kept.
func TestSessionsOfADeadNodeAreAdopted(t *testing.T) {
	tc, n1, n2, n3 := brokerCluster(t)
	eventually(t, "n1 leads", n1.IsLeader)
	c3, _, _ := mustConn(t, n3, persistent("s"))
	sub(t, c3, "t/#")
	c3.Disconnect(broker.DisconnectRequest{Graceful: true})
	synced(t, n3, n1)
	pub, _, _ := mustConn(t, n1, broker.ConnectRequest{ClientID: "pub"})
	pubAcked(t, pub, "t/x", "before")
	tc.isolate(n3, false)
	if err := n3.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "n1 sees n3's link down", func() bool { return n1.links.up("n3") == nil })
	res, err := pub.Publish(&message.Message{Topic: "t/x", Payload: []byte("refused"), QoS: 1})
	if err == nil {
		err = res.Durable.Wait()
	}
	if !errors.Is(err, errUnreachable) {
		t.Fatalf("a message for a session on a dead node: %v", err)
	}
	start := time.Now()
	// Given to another node, and in that node's core (the directory names it first).
	eventually(t, "the dead node's session is taken up by another", func() bool {
		e, _ := n1.fsm.dir.get("s")
		for _, n := range []*tnode{n1, n2} {
			if e.owner == n.id && slices.Contains(n.b.SessionIDs(), "s") {
				return true
			}
		}
		return false
	})
	t.Logf("adopted %s after the link was seen down", time.Since(start).Round(time.Millisecond))
	synced(t, n1, n2)
	pubAcked(t, pub, "t/x", "after")
	_, k, res2 := mustConn(t, n2, persistent("s"))
	if !res2.SessionPresent {
		t.Fatal("the adopted session is not present")
	}
	k.waitPayloads(t, "before", "after")
}

// A node cut off from the majority cannot make a copy for a persistent session durable: the
// publish is refused rather than acknowledged.
func TestMinorityRefusesDurableCopies(t *testing.T) {
	tc, n1, _, _ := brokerCluster(t)
	eventually(t, "n1 leads", n1.IsLeader)
	c, _, _ := mustConn(t, n1, persistent("s"))
	sub(t, c, "t/#")
	pub, _, _ := mustConn(t, n1, broker.ConnectRequest{ClientID: "pub"})
	tc.isolate(n1, false)
	start := time.Now()
	res, err := pub.Publish(&message.Message{Topic: "t/x", Payload: []byte("x"), QoS: 1})
	if err == nil {
		err = res.Durable.Wait()
	}
	if err == nil {
		t.Fatal("a minority acknowledged a copy it could not commit")
	}
	t.Logf("refused after %s: %v", time.Since(start).Round(time.Millisecond), err)
}

// A node restarted on its data takes its sessions up again, with their queues.
func TestRestartTakesSessionsUp(t *testing.T) {
	tc, n1, n2, _ := brokerCluster(t)
	c, _, _ := mustConn(t, n2, persistent("s"))
	sub(t, c, "t/#")
	c.Disconnect(broker.DisconnectRequest{Graceful: true})
	synced(t, n2, n1)
	pub, _, _ := mustConn(t, n1, broker.ConnectRequest{ClientID: "pub"})
	pubAcked(t, pub, "t/x", "1", "2")
	dir := n2.dir
	if err := n2.Close(); err != nil {
		t.Fatal(err)
	}
	tc.isolate(n2, false)
	again := tc.add("n2", nil, dir)
	eventually(t, "the restarted node is live", again.Live)
	_, k, res := mustConn(t, again, persistent("s"))
	if !res.SessionPresent {
		t.Fatal("session lost over a restart")
	}
	k.waitPayloads(t, "1", "2")
}

// A node that joins after the log was compacted gets the sessions in the snapshot, and can take
// one up with its queue.
func TestLateJoinerGetsSessions(t *testing.T) {
	tc := newTCluster(t)
	tc.brokers = true
	tc.tune = func(c *raft.Config) {
		c.TrailingLogs = 1
		c.SnapshotThreshold = 1 << 30
		c.SnapshotInterval = time.Hour
	}
	n1 := tc.add("n1", nil, "")
	n2 := tc.add("n2", n1, "")
	c, _, _ := mustConn(t, n1, persistent("s"))
	sub(t, c, "t/#")
	c.Disconnect(broker.DisconnectRequest{Graceful: true})
	pub, _, _ := mustConn(t, n2, broker.ConnectRequest{ClientID: "pub"})
	synced(t, n1, n2)
	pubAcked(t, pub, "t/x", "1", "2", "3")
	if err := n1.r.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	n3 := tc.add("n3", n1, "")
	_, k, res := mustConn(t, n3, persistent("s"))
	if !res.SessionPresent {
		t.Fatal("session not in the snapshot")
	}
	k.waitPayloads(t, "1", "2", "3")
}
