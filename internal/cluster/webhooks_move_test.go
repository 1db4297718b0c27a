package cluster

import (
	"errors"
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
	// be kept), so the publisher sends it again.
	eventually(t, "a message published on n2 is accepted for the hook", func() bool {
		res, err := pub.Publish(&message.Message{Topic: "orders/2", Payload: []byte("two"), QoS: 1})
		if err == nil {
			err = res.Durable.Wait()
		}
		if err != nil && !errors.Is(err, errUnreachable) {
			t.Logf("publish refused: %v", err)
		}
		return err == nil
	})
	owner, _ := n2.SessionOwner("$webhook-" + h.ID)
	if owner != "n2" && owner != "n3" {
		t.Fatalf("the hook's session is held by %q", owner)
	}
	eventually(t, "a survivor POSTs the message", func() bool { return rcv.count("two") > 0 })
	pubAcked(t, pub, "orders/3", "three")
	eventually(t, "and the next", func() bool { return rcv.count("three") > 0 })
	if n := rcv.count("two"); n != 1 {
		t.Fatalf("message POSTed %d times, want once", n)
	}
	if n := rcv.total(); n != 3 {
		t.Fatalf("%d POSTs, want 3", n)
	}
	eventually(t, "every live node shows the new node delivering, with every attempt", func() bool {
		return hookShown(t, h.ID, owner, 3, m2, m3)
	})
	// Retry-now is answered on the node that does not deliver the hook too.
	other := map[string]*webhook.Manager{"n2": m3, "n3": m2}[owner]
	if err := other.RetryNow(admin, h.ID); err != nil {
		t.Fatalf("retry-now off the delivering node: %v", err)
	}
}
