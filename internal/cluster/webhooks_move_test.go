package cluster

import (
	"errors"
	"fmt"
	"testing"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/message"
	"github.com/ternmq/tern/internal/webhook"
)

// hookShown reports whether every manager shows the hook delivered by node with n deliveries.
func hookShown(t *testing.T, id, node string, n int, ms ...*webhook.Manager) bool {
	t.Helper()
	admin := auth.Unrestricted("admin")
	for _, m := range ms {
		st, err := m.StatusOf(admin, id)
		if err != nil || st.Node != node || st.Delivered != uint64(n) || st.Attempts != uint64(n) {
			return false
		}
	}
	return true
}

// The node delivering a webhook dies: the leader gives the hook's session, with its queue, to a
// live node, which delivers what is published afterwards, once; every live node shows the hook
// delivered by that node, with the attempts of both.
func TestWebhookMovesWhenItsNodeDies(t *testing.T) {
	tc, n1, n2, n3 := brokerCluster(t)
	m1, m2, m3 := hooks(t, n1), hooks(t, n2), hooks(t, n3)
	rcv := newReceiver(t)
	admin := auth.Unrestricted("admin")
	h, err := m1.Create(admin, webhook.Hook{Filter: "orders/#", URL: rcv.srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _ := mustConn(t, n2, broker.ConnectRequest{ClientID: "pub"})
	defer pub.Disconnect(broker.DisconnectRequest{Graceful: true})
	pubAcked(t, pub, "orders/1", "one")
	eventually(t, "n1 POSTs the first message", func() bool { return rcv.count("one") == 1 })
	eventually(t, "every node shows n1 delivering, with its attempt", func() bool {
		return hookShown(t, h.ID, "n1", 1, m1, m2, m3)
	})

	tc.isolate(n1, false)
	if err := n1.Close(); err != nil {
		t.Fatal(err)
	}
	m1.Close()
	// Until the hook's session has moved, a QoS 1 message for it is refused (its copy could not
	// be kept), so the publisher sends it again, each attempt with a payload of its own: a
	// refused attempt may have been kept all the same (QoS 1 is at least once), which is the
	// publisher's duplicate, not the hook's.
	attempt, accepted := 0, ""
	eventually(t, "a message published on n2 is accepted for the hook", func() bool {
		attempt++
		payload := fmt.Sprintf("two-%d", attempt)
		res, err := pub.Publish(&message.Message{Topic: "orders/2", Payload: []byte(payload), QoS: 1})
		if err == nil {
			err = res.Durable.Wait()
		}
		if err != nil && !errors.Is(err, errUnreachable) {
			t.Logf("publish refused: %v", err)
		}
		if err == nil {
			accepted = payload
		}
		return err == nil
	})
	owner, _ := n2.SessionOwner("$webhook-" + h.ID)
	if owner != "n2" && owner != "n3" {
		t.Fatalf("the hook's session is held by %q", owner)
	}
	eventually(t, "a survivor POSTs the message", func() bool { return rcv.count(accepted) > 0 })
	pubAcked(t, pub, "orders/3", "three")
	eventually(t, "and the next", func() bool { return rcv.count("three") > 0 })
	kept := 0 // refused attempts POSTed all the same
	for i := 1; i <= attempt; i++ {
		n := rcv.count(fmt.Sprintf("two-%d", i))
		if n > 1 {
			t.Fatalf("message two-%d POSTed %d times, want at most once (attempt %d accepted)", i, n, attempt)
		}
		kept += n
	}
	if n := rcv.count(accepted); n != 1 {
		t.Fatalf("the accepted message %s POSTed %d times, want once", accepted, n)
	}
	if kept > 1 {
		t.Logf("%d refused attempts were kept and POSTed", kept-1)
	}
	if n := rcv.total(); n != 2+kept {
		t.Fatalf("%d POSTs, want %d", n, 2+kept)
	}
	eventually(t, "every live node shows the new node delivering, with every attempt", func() bool {
		return hookShown(t, h.ID, owner, 2+kept, m2, m3)
	})
	// Retry-now is answered on the node that does not deliver the hook too.
	other := map[string]*webhook.Manager{"n2": m3, "n3": m2}[owner]
	if err := other.RetryNow(admin, h.ID); err != nil {
		t.Fatalf("retry-now off the delivering node: %v", err)
	}
}
