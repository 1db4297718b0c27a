package server_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/config"
	"github.com/ternmq/tern/internal/server"
)

// threeNodes starts a cluster of three terns (n2 and n3 joining n1) in open mode; opts adjust
// every configuration first.
func threeNodes(t *testing.T, opts ...func(*config.Config)) []*server.Server {
	t.Helper()
	first := freeTCP(t)
	node := func(id, listen string, join []string) *server.Server {
		return startServer(t, append(opts[:len(opts):len(opts)], func(c *config.Config) {
			c.DataDir = t.TempDir()
			c.Cluster = config.Cluster{NodeID: id, Listen: listen, Join: join, Replicas: 3}
		})...)
	}
	s1 := node("n1", first, nil)
	s2 := node("n2", freeTCP(t), []string{first})
	s3 := node("n3", freeTCP(t), []string{first})
	return []*server.Server{s1, s2, s3}
}

// Through the HTTP API: bob's long poll on n2 is woken by alice's push on n1; bob replies on n2,
// alice collects the reply on n1; a second message outlives n1 and is read and removed on n3.
func TestClusterMailboxAcrossNodes(t *testing.T) {
	nodes := threeNodes(t)
	base := func(i int) string { return "http://" + nodes[i].Addr("http") }
	// bob's first read opens his mailbox (empty); the push on n1 needs it applied there.
	if resp, _ := httpDo(t, "GET", base(1)+"/v1/mbox", "", "basic", "bob:x"); resp.StatusCode != 404 {
		t.Fatalf("first read: %d", resp.StatusCode)
	}
	deadline := time.Now().Add(waitTimeout)
	for ok := false; !ok; ok, _ = nodes[0].Mailboxes.Exists("bob") {
		if time.Now().After(deadline) {
			t.Fatal("bob's mailbox, opened on n2, never reached n1")
		}
		// Applied on n1 within a commit; a status request paces the check without a sleep.
		if resp, _ := httpDo(t, "GET", base(0)+"/v1/cluster", ""); resp.StatusCode != 200 {
			t.Fatal("n1 status")
		}
	}
	polled := make(chan string, 1)
	go func() {
		ctxResp, body := httpDo(t, "GET", base(1)+"/v1/mbox?wait=4s", "", "basic", "bob:x")
		if ctxResp.StatusCode != 200 {
			body = "status " + ctxResp.Status + " " + body
		}
		polled <- body
	}()
	resp, body := httpDo(t, "POST", base(0)+"/v1/mbox/bob?reply=1", "question", "basic", "alice:x")
	if resp.StatusCode != 200 {
		t.Fatalf("push on n1: %d %s", resp.StatusCode, body)
	}
	var pushed struct{ ID string }
	_ = json.Unmarshal([]byte(body), &pushed)
	got := <-polled
	if !strings.Contains(got, `"from":"alice"`) || !strings.Contains(got, pushed.ID) {
		t.Fatalf("long poll on n2: %s (pushed %s)", got, body)
	}
	if resp, body := httpDo(t, "POST", base(1)+"/v1/mbox/messages/"+pushed.ID+"/reply", "answer", "basic", "bob:x"); resp.StatusCode != 204 {
		t.Fatalf("reply on n2: %d %s", resp.StatusCode, body)
	}
	resp, body = httpDo(t, "GET", base(0)+"/v1/mbox/bob/replies/"+pushed.ID+"?wait=4s&remove=1", "", "basic", "alice:x")
	if resp.StatusCode != 200 || !strings.Contains(body, `"removed":true`) {
		t.Fatalf("reply collected on n1: %d %s", resp.StatusCode, body)
	}
	resp, body = httpDo(t, "POST", base(0)+"/v1/mbox/bob", "kept", "basic", "alice:x")
	if resp.StatusCode != 200 {
		t.Fatalf("second push on n1: %d %s", resp.StatusCode, body)
	}
	_ = json.Unmarshal([]byte(body), &pushed)
	_ = nodes[0].Close()
	// n1 was probably the leader: the survivors elect another, which takes raft's election
	// timeout and longer on a loaded machine. Until then a read or a removal is answered with an
	// error a client retries (each attempt waits: a write for a leader, a read for its wait);
	// what must hold is that the message outlives n1.
	deadline = time.Now().Add(30 * time.Second)
	retry := func(what string, want int, try func() (int, string)) string {
		for {
			code, body := try()
			if code == want {
				return body
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s on n3 after n1 closed: %d %s", what, code, body)
			}
		}
	}
	body = retry("read", 200, func() (int, string) {
		resp, body := httpDo(t, "GET", base(2)+"/v1/mbox?wait=4s", "", "basic", "bob:x")
		return resp.StatusCode, body
	})
	if !strings.Contains(body, `"from":"alice"`) || !strings.Contains(body, pushed.ID) {
		t.Fatalf("read on n3 after n1 closed: %s (pushed %s)", body, pushed.ID)
	}
	retry("remove", 204, func() (int, string) {
		resp, body := httpDo(t, "DELETE", base(2)+"/v1/mbox/messages/"+pushed.ID, "", "basic", "bob:x")
		return resp.StatusCode, body
	})
}
