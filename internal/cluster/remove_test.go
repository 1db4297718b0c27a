package cluster

import (
	"errors"
	"strings"
	"testing"

	"github.com/ternmq/tern/internal/broker"
)

// Remove refuses this node, a node the cluster does not have, a node it can still reach (that
// one should leave), and a removal that would leave fewer than a majority of the voters
// reachable, unless forced.
func TestRemoveRefusals(t *testing.T) {
	tc := newTCluster(t)
	n1, n2, n3 := tc.three()
	eventually(t, "n2 reaches n3", func() bool { return n2.links.up("n3") != nil })
	if err := n2.Remove(ctx(t), "n2", false); !errors.Is(err, ErrRemoveRefused) {
		t.Fatalf("removing itself: %v", err)
	}
	if err := n2.Remove(ctx(t), "n9", false); !errors.Is(err, ErrNotMember) {
		t.Fatalf("removing a node that is not a member: %v", err)
	}
	if err := n2.Remove(ctx(t), "n3", false); !errors.Is(err, ErrRemoveRefused) || !strings.Contains(err.Error(), "reachable") {
		t.Fatalf("removing a reachable node: %v", err)
	}
	for _, n := range []*tnode{n2, n3} {
		tc.isolate(n, false)
		if err := n.Close(); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "n1 sees both links down", func() bool { return n1.links.up("n2") == nil && n1.links.up("n3") == nil })
	err := n1.Remove(ctx(t), "n3", false)
	if !errors.Is(err, ErrRemoveRefused) || !strings.Contains(err.Error(), "majority") {
		t.Fatalf("a removal that leaves no majority: %v", err)
	}
	if len(n1.members()) != 3 {
		t.Fatalf("members after refusals: %v", n1.members())
	}
}

// A node gone for good is removed through a follower (which asks the leader); its persistent
// session, with the messages queued for it, is then held by a live node, and the cluster of
// two goes on committing.
func TestRemoveDeadNodeHandsSessionsOver(t *testing.T) {
	tc, n1, n2, n3 := brokerCluster(t)
	eventually(t, "n1 leads", n1.IsLeader)
	c3, _, _ := mustConn(t, n3, persistent("s"))
	sub(t, c3, "t/#")
	c3.Disconnect(broker.DisconnectRequest{Graceful: true})
	synced(t, n3, n1, n2)
	pub, _, _ := mustConn(t, n1, broker.ConnectRequest{ClientID: "pub"})
	pubAcked(t, pub, "t/x", "before")
	tc.isolate(n3, false)
	if err := n3.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "n2 sees n3's link down", func() bool { return n2.links.up("n3") == nil })
	if err := n2.Remove(ctx(t), "n3", false); err != nil {
		t.Fatalf("removing a dead node through a follower: %v", err)
	}
	if n2.isMember("n3") || len(n2.members()) != 2 {
		t.Fatalf("members on n2 after the removal: %v", n2.members())
	}
	eventually(t, "n1 sees two members", func() bool { return len(n1.members()) == 2 })
	eventually(t, "the removed node's session is held by a live node", func() bool {
		e, ok := n1.fsm.dir.get("s")
		return ok && e.owner != "n3" && e.owner != ""
	})
	synced(t, n1, n2)
	pubAcked(t, pub, "t/x", "after")
	_, k, res := mustConn(t, n2, persistent("s"))
	if !res.SessionPresent {
		t.Fatal("the removed node's session is not present")
	}
	k.waitPayloads(t, "before", "after")
}

// A node that leaves hands its persistent sessions over: the session, with what was queued for
// it, is held by a node that stays.
func TestLeaveHandsSessionsOver(t *testing.T) {
	_, n1, n2, n3 := brokerCluster(t)
	eventually(t, "n1 leads", n1.IsLeader)
	c3, _, _ := mustConn(t, n3, persistent("s"))
	sub(t, c3, "t/#")
	c3.Disconnect(broker.DisconnectRequest{Graceful: true})
	synced(t, n3, n1, n2)
	pub, _, _ := mustConn(t, n1, broker.ConnectRequest{ClientID: "pub"})
	pubAcked(t, pub, "t/x", "before")
	if err := n3.Leave(ctx(t)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the session is held by a node that stays", func() bool {
		e, ok := n1.fsm.dir.get("s")
		return ok && (e.owner == "n1" || e.owner == "n2")
	})
	synced(t, n1, n2)
	pubAcked(t, pub, "t/x", "after")
	_, k, res := mustConn(t, n2, persistent("s"))
	if !res.SessionPresent {
		t.Fatal("the session of the node that left is not present")
	}
	k.waitPayloads(t, "before", "after")
}
