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

// TestMQGo replays mq-go's README flow against tern: connect a sender and a receiver (with and
// without the trailing slash, the README's trailing commas included), send, and the receiver's
// URL gets the raw text by POST; a message sent before any receiver waits for one; disconnect.
func TestMQGo(t *testing.T) {
	type post struct{ ctype, body string }
	got := make(chan post, 10)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- post{r.Header.Get("Content-Type"), string(b)}
	}))
	defer recv.Close()
	srv := startServer(t, func(c *config.Config) { c.Webhooks.AllowPrivate = true })
	base := "http://" + srv.Addr("http")
	expect := func(method, path, body, want string) {
		t.Helper()
		resp, got := httpDo(t, method, base+path, body)
		if resp.StatusCode != 200 || got != want || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
			t.Fatalf("%s %s: %d %q (%s), want 200 %q", method, path, resp.StatusCode, got, resp.Header.Get("Content-Type"), want)
		}
	}
	expect("POST", "/connect", `{"ClientURL": "svc.domain.tld/mqg", "mode": "send",}`, "{'id': 1}\n")
	expect("POST", "/connect/", `{"ClientURL": "x", "mode": "listen"}`, "") // bad mode: 200, empty
	// Sent before any receiver: kept until one connects.
	expect("POST", "/send/", `{"id": 1, "body": "early",}`, `{"status": "Message enqueued", "id": 1}`+"\n")
	expect("POST", "/connect/", `{"ClientURL": "`+recv.URL+`", "Mode": "receive"}`, "{'id': 2}\n")
	expect("POST", "/send", `{"id": 1, "body": "Here is the message body."}`, `{"status": "Message enqueued", "id": 1}`+"\n")
	// Trailing commas are accepted; commas and brackets inside a string are the body's own.
	expect("POST", "/send", `{"id": 1, "body": "a,}b, ]c", /* JWCC */ }`, `{"status": "Message enqueued", "id": 1}`+"\n")
	for _, want := range []string{"early", "Here is the message body.", "a,}b, ]c"} {
		select {
		case p := <-got:
			if p.body != want || p.ctype != "text/plain" {
				t.Fatalf("receiver got %+v, want %q as text/plain", p, want)
			}
		case <-time.After(waitTimeout):
			t.Fatalf("receiver did not get %q", want)
		}
	}
	expect("POST", "/disconnect/", `{"id": 2}`, `{"status":"Disconnected.", "id": 2}`+"\n")
	expect("POST", "/disconnect", `{"id": 2}`, `{"status":"Error: no such connection.", "id": 2}`+"\n")
	// Ids are never reused.
	expect("POST", "/connect", `{"ClientURL": "a", "Mode": "send"}`, "{'id': 3}\n")
}
