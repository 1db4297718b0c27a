package cluster

import (
	"slices"
	"testing"

	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/message"
)

// A QoS 1 message published on a node whose directory still names the node a persistent session
// was just taken from (a connect elsewhere took it over) reaches the session where it went, or
// is refused so its publisher sends it again: never acknowledged with no copy. Here n3 has
// stopped applying the log (its raft is cut off, its links are not), so it routes by the
// directory from before the takeover, and n1, which has applied the takeover and released the
// session, receives the message after its core let the session go.
func TestPublishRacingTakeoverIsKept(t *testing.T) {
	tc, n1, n2, n3 := brokerCluster(t)
	eventually(t, "n1 leads", n1.IsLeader)
	c1, k1, _ := mustConn(t, n1, persistent("s"))
	sub(t, c1, "t/#")
	pub, _, _ := mustConn(t, n3, broker.ConnectRequest{ClientID: "pub"})
	pubAcked(t, pub, "t/x", "before")
	k1.waitPayloads(t, "before")
	synced(t, n1, n2, n3)

	tc.isolate(n3, false)
	defer tc.isolate(n3, true)
	_, k2, res := mustConn(t, n2, persistent("s"))
	if !res.SessionPresent {
		t.Fatal("the session taken over is not present")
	}
	synced(t, n2, n1) // n1 has applied the takeover: its core let the session go
	if slices.Contains(n1.b.SessionIDs(), "s") {
		t.Fatal("n1 still holds the session taken over")
	}
	if e, _ := n3.fsm.dir.get("s"); e.owner != n1.id {
		t.Fatalf("n3's directory names %q, want n1 (it must not have applied the takeover)", e.owner)
	}

	r, err := pub.Publish(&message.Message{Topic: "t/x", Payload: []byte("during"), QoS: 1})
	if err == nil && r.Durable != nil {
		err = r.Durable.Wait()
	}
	if err != nil {
		t.Logf("refused, so its publisher sends it again: %v", err)
		return
	}
	// Acknowledged: it must be in the session's queue on n2, ahead of one published there after.
	local, _, _ := mustConn(t, n2, broker.ConnectRequest{ClientID: "pub2"})
	pubAcked(t, local, "t/x", "after")
	eventually(t, "the session on n2 receives what was published after", func() bool {
		return slices.Contains(k2.payloads(), "after")
	})
	if got := k2.payloads(); !slices.Contains(got, "during") {
		t.Fatalf("the message acknowledged during the takeover was lost: the session received %q", got)
	}
}
