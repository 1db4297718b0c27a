package cluster

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/ternmq/tern/internal/message"
	"github.com/ternmq/tern/internal/store"
)

func get(t *testing.T, n *tnode, ns, key string) string {
	t.Helper()
	v, ok, err := n.Records().Get(ns, key)
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		return "<none>"
	}
	return string(v)
}

// A write on any node (a follower forwards it to the leader) is committed and applied on every
// node; reads are local and see the write on the node that made it as soon as it returns.
func TestRecordsReplicate(t *testing.T) {
	tc := newTCluster(t)
	n1, n2, n3 := tc.three()
	for _, n := range []*tnode{n1, n2, n3} {
		if err := n.Records().Put("users", "from-"+n.id, []byte(n.id)); err != nil {
			t.Fatalf("put on %s: %v", n.id, err)
		}
		if got := get(t, n, "users", "from-"+n.id); got != n.id {
			t.Fatalf("%s does not read its own write: %q", n.id, got)
		}
	}
	if err := n2.Records().Delete("users", "from-n1"); err != nil {
		t.Fatal(err)
	}
	idx, err := n3.Write(ctx(t), []byte{cmdNoop})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []*tnode{n1, n2, n3} {
		if err := n.waitApplied(ctx(t), idx); err != nil {
			t.Fatal(err)
		}
		var keys []string
		if err := n.Records().Scan("users", func(k string, v []byte) error { keys = append(keys, k+"="+string(v)); return nil }); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(keys) != "[from-n2=n2 from-n3=n3]" {
			t.Fatalf("%s has %v", n.id, keys)
		}
	}
}

// A leader cut off from the others stops acknowledging writes (its lease runs out and no
// leader is reachable): they fail instead of being reported done, and they never appear. The
// majority elects a new leader and goes on; when the partition heals, the old leader catches up.
//
// The refusal comes soon after the node finds no leader, well before the write timeout.
func TestMinorityRefusesWrites(t *testing.T) {
	tc := newTCluster(t)
	tc.writeTimeout = 30 * time.Second
	n1, n2, n3 := tc.three()
	eventually(t, "n1 leads", n1.IsLeader)
	tc.isolate(n1, false)
	start := time.Now()
	err := n1.Records().Put("users", "lost", []byte("x"))
	if err == nil {
		t.Fatalf("a write in the minority was acknowledged")
	}
	took := time.Since(start)
	t.Logf("minority write refused after %s: %v", took.Round(time.Millisecond), err)
	if took > tc.writeTimeout/2 {
		t.Fatalf("the minority took %s to refuse a write", took)
	}
	var leader *tnode
	eventually(t, "a new leader in the majority", func() bool {
		for _, n := range []*tnode{n2, n3} {
			if n.IsLeader() {
				leader = n
				return true
			}
		}
		return false
	})
	t.Logf("new leader %s %s after the partition", leader.id, time.Since(start).Round(time.Millisecond))
	if err := n3.Records().Put("users", "kept", []byte("y")); err != nil {
		t.Fatalf("majority write: %v", err)
	}
	tc.isolate(n1, true)
	eventually(t, "n1 catches up", func() bool { return get(t, n1, "users", "kept") == "y" })
	for _, n := range []*tnode{n1, n2, n3} {
		if got := get(t, n, "users", "lost"); got != "<none>" {
			t.Fatalf("%s has the refused write: %q", n.id, got)
		}
	}
}

// A node that joins after the log was compacted gets the state by snapshot: records and
// retained messages.
func TestLateJoinerGetsSnapshot(t *testing.T) {
	tc := newTCluster(t)
	tc.tune = func(c *raft.Config) {
		c.TrailingLogs = 1
		c.SnapshotThreshold = 1 << 30
		c.SnapshotInterval = time.Hour
	}
	n1 := tc.add("n1", nil, "")
	n2 := tc.add("n2", n1, "")
	for i := range 5 {
		if err := n2.Records().Put("users", fmt.Sprint("u", i), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := n1.Write(ctx(t), encodeRetain(&message.Message{Topic: "r/1", Payload: []byte("kept")})); err != nil {
		t.Fatal(err)
	}
	if err := n1.r.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	if first, _ := n1.store.FirstIndex(); first <= 1 {
		t.Fatalf("log not compacted: first index %d", first)
	}
	n3 := tc.add("n3", n1, "")
	if n3.core.restores == 0 {
		t.Fatal("the late joiner was not sent a snapshot")
	}
	if got := get(t, n3, "users", "u4"); got != "v" {
		t.Fatalf("record after snapshot: %q", got)
	}
	n3.core.mu.Lock()
	r := n3.core.retained["r/1"]
	n3.core.mu.Unlock()
	if r != "kept" {
		t.Fatalf("retained after snapshot: %q", r)
	}
}

// A node restarted on its data keeps its state and membership and applies what it missed.
func TestRestartKeepsState(t *testing.T) {
	tc := newTCluster(t)
	n1, n2, n3 := tc.three()
	if err := n3.Records().Put("users", "a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	dir := n3.dir
	if err := n3.Close(); err != nil {
		t.Fatal(err)
	}
	tc.isolate(n3, false)
	if err := n2.Records().Put("users", "b", []byte("2")); err != nil {
		t.Fatal(err)
	}
	// The same node again, on the same directory: it resumes (no join) and catches up.
	again := tc.add("n3", nil, dir)
	if got := get(t, again, "users", "a"); got != "1" {
		t.Fatalf("state before the restart: %q", got)
	}
	eventually(t, "restarted node catches up", func() bool { return get(t, again, "users", "b") == "2" })
	_ = n1
}

// Interest travels over the links; a message goes once to each interested node, a shared group
// to one node at a time, and a QoS 1 message is accepted when the receiving node answered.
func TestRouteByInterest(t *testing.T) {
	tc := newTCluster(t)
	n1, n2, n3 := tc.three()
	n2.core.setInterest("a/#", "$share/g/s/+")
	n3.core.setInterest("a/b", "$share/g/s/+")
	eventually(t, "interest reaches n1", func() bool {
		return n1.LinksUp() == 2 && len(n1.links.index.Match("s/x").Shared) == 1 && len(n1.links.index.Match("a/b").Entries) == 2
	})
	r := n1.Route(&message.Message{Topic: "a/b", Payload: []byte("1"), QoS: 1}, false, nil)
	if r.Nodes != 2 || r.Accepted == nil {
		t.Fatalf("routed %+v", r)
	}
	if err := r.Accepted.Wait(); err != nil {
		t.Fatal(err)
	}
	if d2, d3 := n2.core.deliveries(), n3.core.deliveries(); fmt.Sprint(d2) != "[a/b=1[]]" || fmt.Sprint(d3) != "[a/b=1[]]" {
		t.Fatalf("deliveries %v %v", d2, d3)
	}
	// The shared group alternates between n2 and n3; n1's own members take turns too.
	var local int
	for i := range 6 {
		r := n1.Route(&message.Message{Topic: "s/x", Payload: []byte(fmt.Sprint(i)), QoS: 1}, false, []string{"g/s/+"})
		if err := r.Accepted.Wait(); err != nil {
			t.Fatal(err)
		}
		if slices.Contains(r.Serve, "g/s/+") {
			local++
			if r.Nodes != 0 {
				t.Fatalf("served here and sent elsewhere: %+v", r)
			}
		} else if r.Nodes != 1 {
			t.Fatalf("message %d went to %d nodes", i, r.Nodes)
		}
	}
	shared := func(n *tnode) int {
		k := 0
		for _, d := range n.core.deliveries() {
			if d[0] == 's' {
				k++
			}
		}
		return k
	}
	if local != 2 || shared(n2) != 2 || shared(n3) != 2 {
		t.Fatalf("round robin: here %d, n2 %d, n3 %d", local, shared(n2), shared(n3))
	}
	// Nobody is interested: nothing is sent.
	if r := n1.Route(&message.Message{Topic: "z", QoS: 1}, false, nil); r.Nodes != 0 || r.Accepted != nil {
		t.Fatalf("uninterested topic routed %+v", r)
	}
	// A node whose interest is gone gets nothing more.
	n3.core.setInterest()
	eventually(t, "n3's interest withdrawn", func() bool { return len(n1.links.index.Match("a/b").Entries) == 1 })
}

// A node that leaves is removed from the configuration; the others carry on.
func TestLeave(t *testing.T) {
	tc := newTCluster(t)
	n1, n2, n3 := tc.three()
	eventually(t, "n1 leads", n1.IsLeader)
	// The leader itself leaves: it hands leadership over first.
	if err := n1.Leave(ctx(t)); err != nil {
		t.Fatal(err)
	}
	<-n1.Left()
	eventually(t, "two members left", func() bool { return len(n2.members()) == 2 && len(n3.members()) == 2 })
	if err := n3.Records().Put("users", "after", []byte("x")); err != nil {
		t.Fatalf("write after a leave: %v", err)
	}
	st := n2.Status()
	if len(st.Members) != 2 || st.Leader == "" || st.Leader == "n1" {
		t.Fatalf("status %+v", st)
	}
}

// A QoS 1 message in flight to a node whose link breaks before it accepted the message fails
// the publisher's acknowledgement (so the publisher sends it again) instead of passing for
// accepted; a node whose link is down is skipped.
func TestLinkLostFailsAcceptance(t *testing.T) {
	tc := newTCluster(t)
	n1, n2, _ := tc.three()
	n2.core.mu.Lock()
	n2.core.hold = store.NewTicket() // n2 takes the message but never says it is durable
	n2.core.mu.Unlock()
	n2.core.setInterest("slow/#")
	eventually(t, "n2's interest reaches n1", func() bool { return len(n1.links.index.Match("slow/x").Entries) == 1 })
	r := n1.Route(&message.Message{Topic: "slow/x", Payload: []byte("1"), QoS: 1}, false, nil)
	if r.Nodes != 1 || r.Accepted == nil {
		t.Fatalf("routed %+v", r)
	}
	select { // delivered on n2, not accepted
	case <-n2.core.tick:
	case <-time.After(waitTimeout):
		t.Fatal("not delivered on n2")
	}
	if r.Accepted.Done() {
		t.Fatal("accepted before n2 said so")
	}
	if err := n2.Close(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- r.Accepted.Wait() }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a message n2 never accepted passed for accepted")
		}
	case <-time.After(waitTimeout):
		t.Fatal("the acceptance never completed after the link broke")
	}
	eventually(t, "n1 sees n2's link down", func() bool { return n1.links.up("n2") == nil })
	dropped := n1.links.stats.Dropped.Load()
	if r := n1.Route(&message.Message{Topic: "slow/y", QoS: 1}, false, nil); r.Nodes != 0 || r.Accepted != nil {
		t.Fatalf("routed to a node whose link is down: %+v", r)
	}
	if n1.links.stats.Dropped.Load() != dropped+1 {
		t.Fatal("the skipped copy was not counted")
	}
}

// A write returns once this node's state machine has applied it, not once raft handed it over
// (raft counts an entry applied when it passes it to the state machine): a follower whose state
// machine is slow does not return early.
func TestWriteReturnsOnceAppliedHere(t *testing.T) {
	tc := newTCluster(t)
	n1, n2, _ := tc.three()
	eventually(t, "n1 leads", n1.IsLeader)
	n2.core.mu.Lock()
	n2.core.applying, n2.core.release = make(chan struct{}), make(chan struct{})
	n2.core.mu.Unlock()
	var once sync.Once
	release := func() { once.Do(func() { close(n2.core.release) }) }
	t.Cleanup(release) // a failure below must not leave n2's state machine stuck
	done := make(chan error, 1)
	go func() {
		_, err := n2.Write(ctx(t), encodeRetain(&message.Message{Topic: "r", Payload: []byte("v")}))
		done <- err
	}()
	select {
	case <-n2.core.applying:
	case <-time.After(waitTimeout):
		t.Fatal("n2 never applied the write")
	}
	eventually(t, "raft on n2 counts the entry applied", func() bool { return n2.r.AppliedIndex() >= n1.r.AppliedIndex() })
	select {
	case err := <-done:
		t.Fatalf("the write returned (%v) while n2's state machine was still applying it", err)
	case <-time.After(500 * time.Millisecond): // the window the early return used to fall in
	}
	release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// A node that left joins again on the same directory, nothing removed by hand: it is a member
// again and gets what was written while it was away. Without Join it refuses to start.
func TestRejoinAfterLeave(t *testing.T) {
	tc := newTCluster(t)
	n1, _, n3 := tc.three()
	eventually(t, "n1 leads", n1.IsLeader)
	if err := n3.Leave(ctx(t)); err != nil {
		t.Fatal(err)
	}
	<-n3.Left()
	if err := n3.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "two members left", func() bool { return len(n1.members()) == 2 })
	if err := n1.Records().Put("users", "away", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if n, err := Open(Config{NodeID: "n3", Dir: n3.dir, Listen: "127.0.0.1:0"}); err == nil {
		_ = n.Close()
		t.Error("a node that left opened without Join")
	}
	back := tc.add("n3", n1, n3.dir)
	eventually(t, "n3 is a member again", func() bool { return n1.isMember("n3") && len(n1.members()) == 3 })
	if got := get(t, back, "users", "away"); got != "x" {
		t.Fatalf("n3 has %q of what was written while it was away", got)
	}
	if err := back.Records().Put("users", "back", []byte("y")); err != nil {
		t.Fatalf("a write on the node that rejoined: %v", err)
	}
}
