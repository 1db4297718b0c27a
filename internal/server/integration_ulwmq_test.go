package server_test

import (
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/certs"
	"github.com/ternmq/tern/internal/config"
)

// ulClient sends uLightWMQ requests the way its README's curl commands do.
type ulClient struct {
	t    *testing.T
	base string
	hc   *http.Client
	user string // "name:password" for Basic, "" for a client certificate
}

type ulAnswer struct {
	status int
	body   string
	h      http.Header
}

func (c ulClient) do(path, body string) ulAnswer {
	c.t.Helper()
	req, _ := http.NewRequest("POST", c.base+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/octet-stream")
	if c.user != "" {
		u, p, _ := strings.Cut(c.user, ":")
		req.SetBasicAuth(u, p)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatalf("%s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return ulAnswer{resp.StatusCode, string(b), resp.Header}
}

func (c ulClient) want(path, body string, status int, wantBody string, headers ...string) ulAnswer {
	c.t.Helper()
	a := c.do(path, body)
	if a.status != status || (wantBody != "*" && a.body != wantBody) {
		c.t.Fatalf("%s: %d %q, want %d %q (X-ErrorMsg %q)", path, a.status, a.body, status, wantBody, a.h.Get("X-ErrorMsg"))
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if got := a.h.Get(headers[i]); got != headers[i+1] {
			c.t.Fatalf("%s: header %s = %q, want %q", path, headers[i], got, headers[i+1])
		}
	}
	return a
}

// replayULWMQ runs the README's request/reply flow and the documented error answers between
// alice and bob.
func replayULWMQ(t *testing.T, alice, bob ulClient) {
	// bob's mailbox exists only after his first read.
	alice.want("/push?dst=bob&reqReply=1", "hello", 404, "0", "X-ErrorMsg", "Destination Queue Not Found")
	bob.want("/front", "", 404, "", "X-ErrorMsg", "Empty Queue")
	a := alice.want("/push?dst=bob&reqReply=1", "hello bob", 200, "*")
	id := a.body
	f := bob.want("/front", "", 200, "hello bob", "X-From", "alice", "X-MsgId", id, "X-RequireReply", "1", "X-Removed", "0")
	if _, err := time.Parse("Mon, 02 Jan 2006 15:04:05 GMT", f.h.Get("X-Last-Modified")); err != nil {
		t.Fatalf("X-Last-Modified %q: %v", f.h.Get("X-Last-Modified"), err)
	}
	bob.want("/get?msgId="+id, "", 200, "hello bob", "X-MsgId", id)
	// Not answered yet: the sender's wait times out (the test server's wait is short).
	alice.want("/waitForReply?msgId="+id+"&dst=bob", "", 404, "", "X-Answered", "0", "X-TimedOut", "1", "X-Removed", "0")
	bob.want("/reply?msgId="+id, "hi alice", 200, "1")
	bob.want("/reply?msgId="+id, "again", 503, "0", "X-ErrorMsg", "Unable to reply the message")
	// Only the sender may collect it.
	bob.want("/waitForReply?msgId="+id+"&dst=bob", "", 404, "", "X-Answered", "0", "X-TimedOut", "0")
	alice.want("/waitForReply?msgId="+id+"&dst=bob", "", 200, "hi alice", "X-Answered", "1", "X-TimedOut", "0", "X-Removed", "1")
	bob.want("/get?msgId="+id, "", 404, "", "X-ErrorMsg", "Not Found")

	// removeAfterRead removes a message that wants no reply; ids are never reused.
	a2 := alice.want("/push?dst=bob", "fire and forget", 200, "*")
	if a2.body == id {
		t.Fatalf("message id %s reused", id)
	}
	bob.want("/front?removeAfterRead=1", "", 200, "fire and forget", "X-Removed", "1", "X-RequireReply", "0")
	bob.want("/front", "", 404, "", "X-ErrorMsg", "Empty Queue")
	a3 := alice.want("/push?dst=bob", "to remove", 200, "*")
	bob.want("/remove?msgId="+a3.body, "", 200, "1")
	bob.want("/remove?msgId="+a3.body, "", 404, "0", "X-ErrorMsg", "Message Remove Failed")
	// A long-poll returns when a message arrives.
	done := make(chan ulAnswer, 1)
	go func() { done <- bob.do("/front?wait=1&removeAfterRead=1", "") }()
	alice.want("/push?dst=bob", "late", 200, "*")
	select {
	case a := <-done:
		if a.status != 200 || a.body != "late" {
			t.Fatalf("long-poll: %d %q", a.status, a.body)
		}
	case <-time.After(waitTimeout):
		t.Fatal("long-poll did not return")
	}
}

func TestULWMQWithPasswords(t *testing.T) {
	srv := startServer(t, func(c *config.Config) { c.HTTP.MailboxWait = 200 * time.Millisecond })
	a := srv.Auth
	for _, u := range []string{"alice", "bob"} {
		if err := a.PutUser(auth.User{Name: u, Grants: grants(t, "push:mailbox/#")}, []byte(u+"pw")); err != nil {
			t.Fatal(err)
		}
	}
	base := "http://" + srv.Addr("http")
	hc := &http.Client{Timeout: waitTimeout}
	replayULWMQ(t, ulClient{t, base, hc, "alice:alicepw"}, ulClient{t, base, hc, "bob:bobpw"})
	(ulClient{t, base, hc, "alice:wrong"}).want("/front", "", 401, "0")
	if a := (ulClient{t, base, hc, "alice:wrong"}).do("/front", ""); a.h.Get("WWW-Authenticate") != "" {
		t.Fatal("uLightWMQ sends no WWW-Authenticate")
	}
	(ulClient{t, base, hc, ""}).want("/front", "", 401, "0")
}

func TestULWMQWithCertificates(t *testing.T) {
	p := newPKI(t)
	srv := startServer(t, func(c *config.Config) {
		c.Listen.HTTPS = "127.0.0.1:0"
		c.TLS = config.TLS{CertFile: p.srvCert, KeyFile: p.srvKey, ClientCAFile: filepath.Join(p.ca, certs.CACertFile), RequireClientCert: true}
		c.HTTP.MailboxWait = 200 * time.Millisecond
	})
	if err := srv.Auth.PutGroup(auth.Group{Name: "ulwmq", Grants: grants(t, "push:mailbox/#")}); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"alice", "bob"} {
		if err := srv.Auth.PutUser(auth.User{Name: u, Groups: []string{"ulwmq"}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	base := "https://" + srv.Addr("https")
	client := func(cn string) ulClient {
		return ulClient{t, base, &http.Client{Timeout: waitTimeout, Transport: &http.Transport{TLSClientConfig: p.tlsConfig(p.client(t, cn))}}, ""}
	}
	replayULWMQ(t, client("Alice"), client("BOB"))
	client("bad.name").want("/front", "", 406, "0")
	noCert := ulClient{t, base, &http.Client{Timeout: waitTimeout, Transport: &http.Transport{TLSClientConfig: p.tlsConfig()}}, ""}
	if _, err := noCert.hc.Get(base + "/front"); err == nil {
		t.Fatal("no client certificate on a listener that requires one")
	}
}

// TestNativeMailboxRoutes: the same mailbox through /v1/mbox, and an MQTT client receiving its
// mailbox on $mailbox/<identity>.
func TestNativeMailboxRoutes(t *testing.T) {
	srv := startServer(t)
	for _, u := range []string{"alice", "bob"} {
		if err := srv.Auth.PutUser(auth.User{Name: u, Grants: grants(t, "push:mailbox/#")}, []byte(u+"pw")); err != nil {
			t.Fatal(err)
		}
	}
	base := "http://" + srv.Addr("http")
	bobMQTT := loginV5(t, srv, "bob-phone", "bob", "bobpw")
	bobMQTT.sub("$mailbox/bob", 1) // every identity may subscribe to its own mailbox topic
	if resp, body := httpDo(t, "GET", base+"/v1/mbox", "", "basic", "bob:bobpw"); resp.StatusCode != 404 || !strings.Contains(body, "not_found") {
		t.Fatalf("empty mailbox: %d %s", resp.StatusCode, body)
	}
	resp, body := httpDo(t, "POST", base+"/v1/mbox/bob?reply=1", "question", "basic", "alice:alicepw")
	if resp.StatusCode != 200 || !strings.Contains(body, `"id":"1"`) {
		t.Fatalf("push: %d %s", resp.StatusCode, body)
	}
	if m := bobMQTT.expect("$mailbox/bob", "question"); m.Properties.User.Get("tern-sender") != "alice" || m.Properties.User.Get("tern-mailbox-id") != "1" {
		t.Fatalf("MQTT notification %+v", m.Properties.User)
	}
	resp, body = httpDo(t, "GET", base+"/v1/mbox?remove=1", "", "basic", "bob:bobpw")
	if resp.StatusCode != 200 || !strings.Contains(body, `"from":"alice"`) || !strings.Contains(body, `"wants_reply":true`) || strings.Contains(body, `"removed":true`) {
		t.Fatalf("front: %d %s", resp.StatusCode, body)
	}
	if resp, _ := httpDo(t, "POST", base+"/v1/mbox/messages/1/reply", "answer", "basic", "bob:bobpw"); resp.StatusCode != 204 {
		t.Fatalf("reply: %d", resp.StatusCode)
	}
	resp, body = httpDo(t, "GET", base+"/v1/mbox/bob/replies/1?remove=1", "", "basic", "alice:alicepw")
	if resp.StatusCode != 200 || !strings.Contains(body, `"reply":"YW5zd2Vy"`) || !strings.Contains(body, `"removed":true`) {
		t.Fatalf("collect: %d %s", resp.StatusCode, body)
	}
	if resp, _ := httpDo(t, "GET", base+"/v1/mbox/messages/1", "", "basic", "bob:bobpw"); resp.StatusCode != 404 {
		t.Fatalf("collected message still there: %d", resp.StatusCode)
	}
	if resp, _ := httpDo(t, "POST", base+"/v1/mbox/nobody", "x", "basic", "alice:alicepw"); resp.StatusCode != 404 {
		t.Fatalf("push to a mailbox never opened: %d", resp.StatusCode)
	}
}

// TestNativeMailboxInOpenMode: in open mode the native mailbox routes take the Basic user name as
// the mailbox, as uLightWMQ's routes do (they used to answer 406 "bad identity").
func TestNativeMailboxInOpenMode(t *testing.T) {
	srv := startServer(t)
	base := "http://" + srv.Addr("http")
	// The first call opens carol's mailbox (a mailbox exists once its owner used it).
	if resp, body := httpDo(t, "GET", base+"/v1/mbox", "", "basic", "carol:x"); resp.StatusCode != 404 || !strings.Contains(body, "not_found") {
		t.Fatalf("carol's empty mailbox: %d %s", resp.StatusCode, body)
	}
	if resp, body := httpDo(t, "POST", base+"/v1/mbox/carol", "hi", "basic", "dave:x"); resp.StatusCode != 200 {
		t.Fatalf("push: %d %s", resp.StatusCode, body)
	}
	if resp, body := httpDo(t, "GET", base+"/v1/mbox", "", "basic", "carol:x"); resp.StatusCode != 200 || !strings.Contains(body, `"from":"dave"`) {
		t.Fatalf("carol's mailbox: %d %s", resp.StatusCode, body)
	}
}
