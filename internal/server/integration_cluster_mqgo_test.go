package server_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/config"
)

// An mq-go receiver registered on one cluster node gets, once, a message sent through another
// node, and the registration's webhook is listed on both.
func TestClusterMQGoAcrossNodes(t *testing.T) {
	got := make(chan string, 10)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- string(b)
	}))
	defer recv.Close()
	link1 := freeTCP(t)
	n1 := startServer(t, func(c *config.Config) {
		c.DataDir = t.TempDir()
		c.Webhooks.AllowPrivate = true
		c.Cluster = config.Cluster{NodeID: "m1", Listen: link1, Replicas: 3}
	})
	n2 := startServer(t, func(c *config.Config) {
		c.DataDir = t.TempDir()
		c.Webhooks.AllowPrivate = true
		c.Cluster = config.Cluster{NodeID: "m2", Listen: freeTCP(t), Join: []string{link1}, Replicas: 3}
	})
	base1, base2 := "http://"+n1.Addr("http"), "http://"+n2.Addr("http")
	if resp, body := httpDo(t, "POST", base1+"/connect", `{"ClientURL": "`+recv.URL+`", "Mode": "receive"}`); resp.StatusCode != 200 {
		t.Fatalf("connect on m1: %d %s", resp.StatusCode, body)
	}
	eventually(t, waitTimeout, "m2 listing m1's receiver", func() bool {
		_, body := httpDo(t, "GET", base2+"/v1/webhooks", "")
		return strings.Contains(body, `"node":"m1"`)
	})
	// The receiver's interest reaches m2 asynchronously; sends before that reach no receiver, so send until one arrives, then check the next arrives exactly once.
	probe := time.NewTicker(100 * time.Millisecond)
	defer probe.Stop()
	limit := time.After(waitTimeout)
	for arrived := false; !arrived; {
		httpDo(t, "POST", base2+"/send", `{"id": 1, "body": "probe"}`)
		select {
		case <-got:
			arrived = true
		case <-probe.C:
		case <-limit:
			t.Fatal("a message sent on m2 never reached m1's receiver")
		}
	}
	httpDo(t, "POST", base2+"/send", `{"id": 1, "body": "hello"}`)
	httpDo(t, "POST", base2+"/send", `{"id": 1, "body": "after"}`)
	var bodies []string
	for !strings.Contains(strings.Join(bodies, "|"), "after") {
		select {
		case b := <-got:
			bodies = append(bodies, b)
		case <-time.After(waitTimeout):
			t.Fatalf("got %q, want hello then after", bodies)
		}
	}
	n := 0
	for _, b := range bodies {
		if b == "hello" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("hello POSTed %d times (%q)", n, bodies)
	}
}
