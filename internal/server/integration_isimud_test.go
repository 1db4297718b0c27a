package server_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/config"
	"github.com/ternmq/tern/internal/httpapi"
)

func TestIsimudTopicIsInjective(t *testing.T) {
	seen := map[string][2]string{}
	for _, pair := range [][2]string{{"a/b", "c"}, {"a", "b/c"}, {"a%2Fb", "c"}, {"", "x"}, {"%00", "x"}, {"+", "#"}, {"a", ""}} {
		tp := httpapi.IsimudTopic(pair[0], pair[1])
		if other, dup := seen[tp]; dup {
			t.Fatalf("%q and %q both map to %q", pair, other, tp)
		}
		seen[tp] = pair
	}
}

// TestIsimudPub replays isimud's publisher examples: the body is checked before the credentials.
func TestIsimudPub(t *testing.T) {
	srv := startServer(t)
	if err := srv.Auth.PutUser(auth.User{Name: "alice", Grants: grants(t, "publish:isimud/%u/#")}, []byte("secret")); err != nil {
		t.Fatal(err)
	}
	url := "http://" + srv.Addr("http") + "/pub"
	json := "application/json"
	for _, c := range []struct {
		name, ctype, body, creds string
		status                   int
		errBody                  string
	}{
		{"not JSON content type", "text/plain", `{"topic":"t","data":"d"}`, "alice:secret", 415, ""},
		{"syntax error", json, `{"topic":`, "alice:secret", 400, ""},
		{"data not a string", json, `{"topic":"t","data":{"x":1}}`, "alice:secret", 422, ""},
		{"no credentials", json, `{"topic":"t","data":"d"}`, "", 400, `{"error":"Missing credentials"}`},
		{"wrong password", json, `{"topic":"t","data":"d"}`, "alice:nope", 401, `{"error":"Wrong credentials"}`},
		{"another publisher's name", json, `{"topic":"t","data":"d"}`, "bob:secret", 401, `{"error":"Wrong credentials"}`},
		{"published, no subscribers", json, `{"topic":"t","data":"d","extra":1}`, "alice:secret", 200, ""},
	} {
		hdr := []string{"Content-Type", c.ctype}
		if c.creds != "" {
			hdr = append(hdr, "basic", c.creds)
		}
		resp, body := httpDo(t, "POST", url, c.body, hdr...)
		if resp.StatusCode != c.status || (c.errBody != "" && body != c.errBody) || (c.status == 200 && body != "") {
			t.Errorf("%s: %d %q, want %d %q", c.name, resp.StatusCode, body, c.status, c.errBody)
		}
	}
}

// TestIsimudSubscribeAcrossFaces: a /sub WebSocket gets an isimud publish right after its first
// subscribe frame, and an MQTT publish to the mapped topic too; an MQTT subscriber sees the
// isimud publish.
func TestIsimudSubscribeAcrossFaces(t *testing.T) {
	srv := startServer(t)
	base := "http://" + srv.Addr("http")
	mq := v5(t, srv, "mq")
	mq.sub("isimud/#", 0)
	ws := dialIsimud(t, "ws://"+srv.Addr("http")+"/sub", "")
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := ws.Write(ctx, websocket.MessageText, []byte(`{"publisher":"alice","topic":"news"}`)); err != nil {
		t.Fatal(err)
	}
	waitSubscriptions(t, srv, 2)
	resp, _ := httpDo(t, "POST", base+"/pub", `{"topic":"news","data":"hello"}`, "Content-Type", "application/json", "basic", "alice:any")
	if resp.StatusCode != 200 {
		t.Fatalf("publish: %d", resp.StatusCode)
	}
	httpDo(t, "POST", base+"/pub", `{"topic":"other","data":"not for you"}`, "Content-Type", "application/json", "basic", "alice:any")
	mq.pub(httpapi.IsimudTopic("alice", "news"), 0, "from mqtt")
	for _, want := range []string{"hello", "from mqtt"} {
		typ, data, err := ws.Read(ctx)
		if err != nil || typ != websocket.MessageText || string(data) != want {
			t.Fatalf("frame %v %q %v, want text %q", typ, data, err, want)
		}
	}
	mq.expect("isimud/alice/news", "hello")
}

func dialIsimud(t *testing.T, url, bearer string) *websocket.Conn {
	t.Helper()
	c, err := tryIsimud(url, bearer)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

func tryIsimud(url, bearer string) (*websocket.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	h := http.Header{}
	if bearer != "" {
		h.Set("Authorization", "Bearer "+bearer)
	}
	c, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: h})
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil && resp != nil {
		return nil, &statusError{resp.StatusCode}
	}
	return c, err
}

type statusError struct{ status int }

func (e *statusError) Error() string { return http.StatusText(e.status) }

// TestIsimudAuthURL: with an auth URL in bearer style (isimud's AUTH_URL), /sub needs a Bearer
// token the URL accepts: none is 400, a refused one 401, a URL that is down 500.
func TestIsimudAuthURL(t *testing.T) {
	u := newAuthURL(t, func(_ map[string]any, r *http.Request) (int, any) {
		if r.Header.Get("Authorization") == "Bearer let-me-in" {
			return 200, map[string]string{}
		}
		return 403, map[string]string{}
	})
	srv := startServer(t, func(c *config.Config) {
		c.Auth.URL, c.Auth.URLStyle = u.srv.URL, "bearer"
		c.Auth.URLBearerGrants = []string{"subscribe:isimud/#"}
	})
	url := "ws://" + srv.Addr("http") + "/sub"
	for bearer, want := range map[string]int{"": 400, "nope": 401} {
		if _, err := tryIsimud(url, bearer); err == nil || err.(*statusError).status != want {
			t.Errorf("bearer %q: %v, want %d", bearer, err, want)
		}
	}
	ws := dialIsimud(t, url, "let-me-in")
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	_ = ws.Write(ctx, websocket.MessageText, []byte(`{"publisher":"p","topic":"t"}`))
	waitSubscriptions(t, srv, 1)

	down := startServer(t, func(c *config.Config) {
		c.Auth.URL, c.Auth.URLStyle, c.Auth.URLTimeout = "http://127.0.0.1:1/auth", "bearer", 2*time.Second
	})
	if _, err := tryIsimud("ws://"+down.Addr("http")+"/sub", "let-me-in"); err == nil || err.(*statusError).status != 500 {
		t.Fatalf("auth URL down: %v, want 500", err)
	}
}
