package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// hookReceiver is a webhook endpoint that counts the bodies POSTed to it.
type hookReceiver struct {
	mu     sync.Mutex
	bodies map[string]int
	srv    *httptest.Server
}

func newHookReceiver(t *testing.T) *hookReceiver {
	r := &hookReceiver{bodies: map[string]int{}}
	r.srv = httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, q *http.Request) {
		b, _ := io.ReadAll(q.Body)
		r.mu.Lock()
		r.bodies[string(b)]++
		r.mu.Unlock()
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *hookReceiver) count(body string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.bodies[body]
}

// publishQoS1 publishes body at QoS 1 through n's HTTP API and reports whether it was accepted.
func publishQoS1(t *testing.T, n *cnode, topic, body string) bool {
	cl := http.Client{Timeout: 30 * time.Second}
	resp, err := cl.Post("http://"+n.http+"/v1/pub/"+topic+"?qos=1", "text/plain", strings.NewReader(body))
	if err != nil {
		t.Logf("publish on %s: %v", n.id, err)
		return false
	}
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Logf("publish on %s: %d %s", n.id, resp.StatusCode, b)
	}
	return resp.StatusCode == http.StatusOK
}

// hookNode returns the node that n says delivers the hook.
func (c *ctestCluster) hookNode(n *cnode, id string) string {
	code, body := c.api(n, "GET", "/v1/webhooks/"+id, nil)
	var h struct {
		Node string `json:"node"`
	}
	if code != http.StatusOK || json.Unmarshal([]byte(body), &h) != nil {
		return ""
	}
	return h.Node
}

// A webhook created on n1 is delivered by another node once n1 is killed (kill -9): a message
// published on n2 afterwards is POSTed, and when n1 comes back it does not POST it again.
func TestClusterWebhookMovesWhenItsNodeDies(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs three tern processes")
	}
	t.Setenv("TERN_WEBHOOKS__ALLOW_PRIVATE", "true") // the receiver is on loopback
	rcv := newHookReceiver(t)
	c := newCTestCluster(t)
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range c.nodes {
				if n.proc != nil {
					b, _ := os.ReadFile(n.proc.logPath)
					t.Logf("%s's log:\n%s", n.id, b)
				}
			}
		}
	})
	until(t, 20*time.Second, "every node is live with three members", func() bool {
		for _, n := range c.nodes {
			st, ok := c.status(n)
			if !ok || len(st.Members) != 3 || st.Leader == "" || !st.Live {
				return false
			}
		}
		return true
	})
	code, body := c.api(n1, "POST", "/v1/webhooks", map[string]any{"filter": "hk/#", "url": rcv.srv.URL})
	if code != http.StatusCreated {
		t.Fatalf("create: %d %s", code, body)
	}
	var h struct{ ID string }
	if err := json.Unmarshal([]byte(body), &h); err != nil {
		t.Fatal(err)
	}
	c.settle(t, n1)
	if !publishQoS1(t, n2, "hk/1", "one") {
		t.Fatal("publish refused")
	}
	until(t, 20*time.Second, "a message published on n2 is POSTed", func() bool { return rcv.count("one") > 0 })
	until(t, 20*time.Second, "n1 has nothing in flight for the hook", func() bool {
		code, body := c.api(n1, "GET", "/v1/webhooks/"+h.ID, nil)
		var st struct{ Queued, Inflight int }
		return code == http.StatusOK && json.Unmarshal([]byte(body), &st) == nil && st.Queued+st.Inflight == 0
	})
	for _, n := range c.nodes {
		if got := c.hookNode(n, h.ID); got != "n1" {
			t.Fatalf("%s says the hook is delivered by %q, want n1", n.id, got)
		}
	}

	if err := n1.proc.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-n1.proc.done
	killed := time.Now()
	// Refused until the hook's session has moved: its copy could not be kept. Each attempt has
	// a payload of its own: a refused attempt may have been kept all the same (QoS 1 is at least
	// once), which is the publisher's duplicate, not the hook's.
	attempt, two := 0, ""
	until(t, 60*time.Second, "a message for the hook is accepted on n2", func() bool {
		attempt++
		payload := fmt.Sprintf("two-%d", attempt)
		if !publishQoS1(t, n2, "hk/2", payload) {
			return false
		}
		two = payload
		return true
	})
	t.Logf("accepted %s after the kill", time.Since(killed).Round(time.Millisecond))
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range c.nodes[1:] {
				_, st := c.api(n, "GET", "/v1/webhooks/"+h.ID, nil)
				_, ss := c.api(n, "GET", "/v1/admin/sessions/$webhook-"+h.ID, nil)
				t.Logf("%s: %s\n%s", n.id, st, ss)
			}
		}
	})
	took := until(t, 30*time.Second, "a survivor POSTs it", func() bool { return rcv.count(two) > 0 })
	t.Logf("POSTed by a survivor %s after the kill (%s after it was accepted)", time.Since(killed).Round(time.Millisecond), took.Round(time.Millisecond))
	mover := c.hookNode(n2, h.ID)
	if mover != "n2" && mover != "n3" || c.hookNode(n3, h.ID) != mover {
		t.Fatalf("after the kill: n2 says %q, n3 says %q", mover, c.hookNode(n3, h.ID))
	}

	c.start(n1, "")
	until(t, 60*time.Second, "n1 is live again", func() bool {
		st, ok := c.status(n1)
		return ok && st.Live && st.Leader != ""
	})
	until(t, 30*time.Second, "a message published on n1 is accepted", func() bool {
		return publishQoS1(t, n1, "hk/3", "three")
	})
	until(t, 30*time.Second, "and POSTed", func() bool { return rcv.count("three") > 0 })
	c.settle(t, n2)
	if got := c.hookNode(n1, h.ID); got != mover {
		t.Fatalf("the restarted n1 says the hook is delivered by %q, want %s", got, mover)
	}
	// "one" was acknowledged on n1 before the kill, but that acknowledgement may not have reached
	// the log yet: at least once across a move, so it may come twice. The messages published
	// after the kill come once, and the restarted n1 delivers none of them again.
	if n := rcv.count("one"); n > 1 {
		t.Logf("%q, acknowledged just before the kill, POSTed %d times", "one", n)
	}
	for _, b := range []string{two, "three"} {
		if n := rcv.count(b); n != 1 {
			t.Fatalf("%q POSTed %d times, want once", b, n)
		}
	}
	for i := 1; i < attempt; i++ {
		if n := rcv.count(fmt.Sprintf("two-%d", i)); n > 1 {
			t.Fatalf("refused attempt %d POSTed %d times, want at most once", i, n)
		}
	}
}
