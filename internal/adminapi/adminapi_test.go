package adminapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/adminapi"
	"github.com/ternmq/tern/internal/auth"
)

type client struct {
	t    *testing.T
	url  string
	user string
	pw   string
	tok  string
}

// do sends a request and returns the status, the body and the response.
func (c client) do(method, path string, body any) (int, string, *http.Response) {
	c.t.Helper()
	var rd *bytes.Reader
	switch b := body.(type) {
	case nil:
		rd = bytes.NewReader(nil)
	case string:
		rd = bytes.NewReader([]byte(b))
	default:
		raw, _ := json.Marshal(b)
		rd = bytes.NewReader(raw)
	}
	ctx, cancel := context.WithTimeout(c.t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, c.url+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if c.user != "" {
		req.SetBasicAuth(c.user, c.pw)
	}
	if c.tok != "" {
		req.Header.Set("Authorization", "Bearer "+c.tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	return resp.StatusCode, buf.String(), resp
}

func (c client) want(status int, method, path string, body any) string {
	c.t.Helper()
	got, b, _ := c.do(method, path, body)
	if got != status {
		c.t.Fatalf("%s %s: %d %s, want %d", method, path, got, b, status)
	}
	return b
}

func setup(t *testing.T) (*auth.Authenticator, string) {
	return setupWith(t, auth.NewMemStore(), nil)
}

// setupWith serves the admin API over an authenticator on st with cheap hashing; mod adjusts its
// configuration.
func setupWith(t *testing.T, st auth.Store, mod func(*auth.Config)) (*auth.Authenticator, string) {
	t.Helper()
	cfg := auth.Config{Argon2: auth.Argon2Params{Memory: 64, Time: 1, Threads: 1}}
	if mod != nil {
		mod(&cfg)
	}
	a, err := auth.New(cfg, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(adminapi.New(a, nil, nil))
	t.Cleanup(srv.Close)
	return a, srv.URL
}

func TestAdminAPI(t *testing.T) {
	a, url := setup(t)
	anon := client{t: t, url: url}
	// Open: nothing configured yet, so the first administrator can be created over the API.
	anon.want(http.StatusOK, "PUT", "/v1/admin/users/root", map[string]any{"password": "rootpw", "grants": []string{"admin:#"}})
	if a.Open() {
		t.Fatal("still open after the first user")
	}
	got, body, resp := anon.do("GET", "/v1/admin/users", nil)
	if got != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), "Basic") ||
		!strings.Contains(body, `"code":"unauthorized"`) {
		t.Fatalf("anonymous after the first user: %d %q %q", got, resp.Header.Get("WWW-Authenticate"), body)
	}
	root := client{t: t, url: url, user: "root", pw: "rootpw"}
	if got, _, _ := (client{t: t, url: url, user: "root", pw: "nope"}).do("GET", "/v1/admin/users", nil); got != http.StatusUnauthorized {
		t.Fatalf("wrong password: %d", got)
	}

	root.want(http.StatusOK, "PUT", "/v1/admin/users/alice", map[string]any{"password": "alicepw",
		"grants": []string{"publish:users/%u/#", "subscribe:users/%u/#", "admin:tokens/%u"}})
	if b := root.want(http.StatusOK, "GET", "/v1/admin/users/alice", nil); strings.Contains(b, "hash") || !strings.Contains(b, "argon2id") {
		t.Fatalf("user record %s: no hash may leave, the scheme should show", b)
	}
	root.want(http.StatusBadRequest, "PUT", "/v1/admin/users/bob", map[string]any{"grants": []string{"frobnicate:#"}})
	root.want(http.StatusBadRequest, "PUT", "/v1/admin/users/bob", `{"grants":`)
	root.want(http.StatusRequestEntityTooLarge, "PUT", "/v1/admin/users/bob", `{"grants":["`+strings.Repeat("a", 2<<20)+`"]}`)
	root.want(http.StatusNotFound, "GET", "/v1/admin/users/nobody", nil)
	root.want(http.StatusNotFound, "DELETE", "/v1/admin/users/nobody", nil)

	// Grants: add is idempotent, delete removes.
	root.want(http.StatusOK, "POST", "/v1/admin/grants", map[string]any{"user": "alice", "grants": []string{"retain:users/alice/s", "retain:users/alice/s"}})
	if b := root.want(http.StatusOK, "GET", "/v1/admin/grants?user=alice", nil); strings.Count(b, "retain") != 1 {
		t.Fatalf("grants %s", b)
	}
	root.want(http.StatusOK, "DELETE", "/v1/admin/grants", map[string]any{"user": "alice", "grants": []string{"retain:users/alice/s"}})
	root.want(http.StatusBadRequest, "POST", "/v1/admin/grants", map[string]any{"user": "alice", "group": "g", "grants": []string{}})
	root.want(http.StatusOK, "PUT", "/v1/admin/groups/ops", map[string]any{"grants": []string{"subscribe:$SYS/#"}})
	root.want(http.StatusOK, "POST", "/v1/admin/grants", map[string]any{"group": "ops", "grants": []string{"subscribe:logs/#"}})
	if b := root.want(http.StatusOK, "GET", "/v1/admin/grants?group=ops", nil); !strings.Contains(b, "logs/#") {
		t.Fatalf("group grants %s", b)
	}

	// Alice may manage her own tokens and nothing else.
	alice := client{t: t, url: url, user: "alice", pw: "alicepw"}
	alice.want(http.StatusForbidden, "GET", "/v1/admin/users", nil)
	alice.want(http.StatusForbidden, "POST", "/v1/admin/tokens", map[string]any{"user": "root"})
	alice.want(http.StatusBadRequest, "POST", "/v1/admin/tokens", map[string]any{"user": "alice", "ttl": "soon"})
	alice.want(http.StatusBadRequest, "POST", "/v1/admin/tokens", map[string]any{"user": "alice", "grants": []string{"publish:users/bob/#"}})
	var created adminapi.TokenCreated
	b := alice.want(http.StatusCreated, "POST", "/v1/admin/tokens", map[string]any{"user": "alice", "grants": []string{"subscribe:users/alice/#"}, "ttl": "1h"})
	if err := json.Unmarshal([]byte(b), &created); err != nil || !strings.HasPrefix(created.Token, auth.TokenPrefix) {
		t.Fatalf("token answer %s: %v", b, err)
	}
	alice.want(http.StatusOK, "GET", "/v1/admin/tokens?user=alice", nil)
	alice.want(http.StatusForbidden, "GET", "/v1/admin/tokens", nil)
	// The token works as a bearer credential, with its own (narrower) grants: no admin.
	(client{t: t, url: url, tok: created.Token}).want(http.StatusForbidden, "GET", "/v1/admin/tokens?user=alice", nil)
	rootTok := root.want(http.StatusCreated, "POST", "/v1/admin/tokens", map[string]any{"user": "root"})
	var rt adminapi.TokenCreated
	_ = json.Unmarshal([]byte(rootTok), &rt)
	alice.want(http.StatusForbidden, "DELETE", "/v1/admin/tokens/"+rt.Info.ID, nil)
	alice.want(http.StatusNoContent, "DELETE", "/v1/admin/tokens/"+created.Info.ID, nil)
	root.want(http.StatusNotFound, "DELETE", "/v1/admin/tokens/"+created.Info.ID, nil)
	(client{t: t, url: url, tok: rt.Token}).want(http.StatusOK, "GET", "/v1/admin/users", nil)

	root.want(http.StatusNoContent, "POST", "/v1/admin/users/alice/password", map[string]any{"password": "new"})
	alice.want(http.StatusUnauthorized, "GET", "/v1/admin/tokens?user=alice", nil)
	root.want(http.StatusNoContent, "DELETE", "/v1/admin/users/alice", nil)
	root.want(http.StatusNotFound, "GET", "/v1/admin/nothing", nil)
}
