package cluster

import (
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/webhook"
)

// receiver is an HTTP endpoint that records the bodies POSTed to it.
type receiver struct {
	mu     sync.Mutex
	bodies []string
	srv    *httptest.Server
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, q *http.Request) {
		b, _ := io.ReadAll(q.Body)
		r.mu.Lock()
		r.bodies = append(r.bodies, string(b))
		r.mu.Unlock()
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.bodies)
}

func (r *receiver) count(body string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, b := range r.bodies {
		if b == body {
			n++
		}
	}
	return n
}

// hooks runs a webhook Manager on n over the cluster's records, as tern serve does.
func hooks(t *testing.T, n *tnode) *webhook.Manager {
	t.Helper()
	m, err := webhook.New(n.b, n.Records(), webhook.Config{AllowPrivate: true, Node: n.id, Directory: n.Node,
		BackoffBase: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond}, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	n.WatchRecords(m.RecordsChanged)
	n.WatchSessions(m.SessionsChanged)
	m.RecordsChanged("webhooks")
	t.Cleanup(m.Close)
	return m
}

func hookIDs(m *webhook.Manager) []string {
	var ids []string
	for _, h := range m.List(auth.Unrestricted("admin")) {
		ids = append(ids, h.ID)
	}
	slices.Sort(ids)
	return ids
}

// A hook created on one node is listed on every node; a message published on another node is
// POSTed once (only the creating node delivers); deleting it on a third node stops it
// everywhere.
func TestWebhooksAreClusterWide(t *testing.T) {
	_, n1, n2, n3 := brokerCluster(t)
	m1, m2, m3 := hooks(t, n1), hooks(t, n2), hooks(t, n3)
	rcv := newReceiver(t)
	admin := auth.Unrestricted("admin")
	h, err := m1.Create(admin, webhook.Hook{Filter: "orders/#", URL: rcv.srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "every node lists the hook", func() bool {
		for _, m := range []*webhook.Manager{m1, m2, m3} {
			if !slices.Equal(hookIDs(m), []string{h.ID}) {
				return false
			}
		}
		return true
	})
	pub, _, _ := mustConn(t, n2, broker.ConnectRequest{ClientID: "pub"})
	defer pub.Disconnect(broker.DisconnectRequest{Graceful: true})
	// The hook's subscription reaches n2 as interest; probe until a message gets through.
	eventually(t, "a message published on n2 reaches the hook", func() bool {
		pubAcked(t, pub, "orders/probe", "probe")
		return rcv.count("probe") > 0
	})
	pubAcked(t, pub, "orders/1", "one")
	eventually(t, "the message is POSTed", func() bool { return rcv.count("one") > 0 })
	// Another message after it, in order: once it arrived, "one" had every chance to come twice.
	pubAcked(t, pub, "orders/2", "two")
	eventually(t, "the next message is POSTed", func() bool { return rcv.count("two") > 0 })
	if n := rcv.count("one"); n != 1 {
		t.Fatalf("message POSTed %d times, want once", n)
	}

	if err := m3.Delete(admin, h.ID); err != nil {
		t.Fatal(err)
	}
	eventually(t, "no node lists the hook", func() bool {
		return len(hookIDs(m1))+len(hookIDs(m2))+len(hookIDs(m3)) == 0
	})
	// n1 dropped the hook's session: nothing is queued for it any more.
	eventually(t, "n1 ends the hook's session", func() bool {
		_, ok := n1.b.Session("$webhook-" + h.ID)
		return !ok
	})
	pubAcked(t, pub, "orders/3", "three")
	synced(t, n2, n1, n3)
	if rcv.count("three") != 0 {
		t.Fatal("a deleted hook delivered")
	}
}
