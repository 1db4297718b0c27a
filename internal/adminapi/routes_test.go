package adminapi_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/adminapi"
	"github.com/ternmq/tern/internal/auth"
)

// withRoot sets up the API with an administrator "root" and returns its client.
func withRoot(t *testing.T) (*auth.Authenticator, string, client) {
	t.Helper()
	a, url := setup(t)
	root := client{t: t, url: url, user: "root", pw: "rootpw"}
	(client{t: t, url: url}).want(http.StatusOK, "PUT", "/v1/admin/users/root", map[string]any{"password": "rootpw", "grants": []string{"admin:#"}})
	return a, url, root
}

func decodeInto[T any](t *testing.T, body string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("answer %s: %v", body, err)
	}
	return v
}

func TestUsersAndGroupsRoutes(t *testing.T) {
	a, _, root := withRoot(t)
	root.want(http.StatusOK, "PUT", "/v1/admin/users/dev-1", map[string]any{"groups": []string{"ops"}, "grants": []string{"publish:dev/%u/#"}})
	users := decodeInto[[]auth.User](t, root.want(http.StatusOK, "GET", "/v1/admin/users", nil))
	if len(users) != 2 || users[0].Name != "dev-1" || users[0].PasswordScheme != "" || users[1].Name != "root" ||
		users[1].PasswordScheme != "argon2id" {
		t.Fatalf("users %+v", users)
	}
	if u := decodeInto[auth.User](t, root.want(http.StatusOK, "GET", "/v1/admin/users/dev-1", nil)); len(u.Groups) != 1 || len(u.Grants) != 1 {
		t.Fatalf("dev-1 %+v", u)
	}
	// A PUT replaces groups and grants and keeps the password when none is given.
	root.want(http.StatusOK, "PUT", "/v1/admin/users/root", map[string]any{"grants": []string{"admin:#", "subscribe:#"}})
	root.want(http.StatusOK, "GET", "/v1/admin/users/root", nil)

	// Setting a password keeps groups and grants; the old password stops working.
	root.want(http.StatusNoContent, "POST", "/v1/admin/users/dev-1/password", map[string]any{"password": "devpw"})
	if u, _ := a.User("dev-1"); u.PasswordScheme != "argon2id" || len(u.Grants) != 1 || len(u.Groups) != 1 {
		t.Fatalf("after a password change %+v", u)
	}
	root.want(http.StatusBadRequest, "POST", "/v1/admin/users/dev-1/password", map[string]any{"password": ""})
	root.want(http.StatusNotFound, "POST", "/v1/admin/users/nobody/password", map[string]any{"password": "x"})
	root.want(http.StatusBadRequest, "PUT", "/v1/admin/users/bad%2Fname", map[string]any{})
	root.want(http.StatusBadRequest, "PUT", "/v1/admin/users/x", map[string]any{"password": ""})

	// Groups.
	if b := root.want(http.StatusOK, "GET", "/v1/admin/groups", nil); b != "[]\n" {
		t.Fatalf("no groups yet: %q", b)
	}
	root.want(http.StatusOK, "PUT", "/v1/admin/groups/ops", map[string]any{"grants": []string{"subscribe:$SYS/#"}})
	root.want(http.StatusBadRequest, "PUT", "/v1/admin/groups/ops", map[string]any{"grants": []string{"subscribe:a/#/b"}})
	groups := decodeInto[[]auth.Group](t, root.want(http.StatusOK, "GET", "/v1/admin/groups", nil))
	if len(groups) != 1 || groups[0].Name != "ops" || groups[0].Grants[0].String() != "subscribe:$SYS/#" {
		t.Fatalf("groups %+v", groups)
	}
	root.want(http.StatusNoContent, "DELETE", "/v1/admin/groups/ops", nil)
	root.want(http.StatusNotFound, "DELETE", "/v1/admin/groups/ops", nil)

	root.want(http.StatusNoContent, "DELETE", "/v1/admin/users/dev-1", nil)
	root.want(http.StatusNotFound, "GET", "/v1/admin/users/dev-1", nil)
	root.want(http.StatusNotFound, "PATCH", "/v1/admin/users/root", nil)
}

func TestGrantsRoutes(t *testing.T) {
	_, url, root := withRoot(t)
	root.want(http.StatusOK, "PUT", "/v1/admin/users/alice", map[string]any{"grants": []string{"admin:groups/team"}, "password": "alicepw"})
	root.want(http.StatusOK, "PUT", "/v1/admin/groups/team", map[string]any{})
	root.want(http.StatusOK, "PUT", "/v1/admin/groups/other", map[string]any{})

	got := decodeInto[[]auth.Grant](t, root.want(http.StatusOK, "POST", "/v1/admin/grants", map[string]any{"user": "alice", "grants": []string{"publish:a/#"}}))
	if len(got) != 2 || got[0].String() != "admin:groups/team" || got[1].String() != "publish:a/#" {
		t.Fatalf("after adding: %v", got)
	}
	if b := root.want(http.StatusOK, "GET", "/v1/admin/grants?user=alice", nil); !strings.Contains(b, `"filter":"a/#"`) {
		t.Fatalf("listed %s", b)
	}
	if b := root.want(http.StatusOK, "GET", "/v1/admin/grants?group=team", nil); b != "[]\n" {
		t.Fatalf("empty group listed %q", b)
	}
	root.want(http.StatusBadRequest, "GET", "/v1/admin/grants", nil)
	root.want(http.StatusBadRequest, "GET", "/v1/admin/grants?user=alice&group=team", nil)
	root.want(http.StatusNotFound, "GET", "/v1/admin/grants?user=nobody", nil)
	root.want(http.StatusNotFound, "GET", "/v1/admin/grants?group=nogroup", nil)
	root.want(http.StatusNotFound, "POST", "/v1/admin/grants", map[string]any{"group": "nogroup", "grants": []string{"publish:a"}})
	root.want(http.StatusNotFound, "DELETE", "/v1/admin/grants", map[string]any{"user": "nobody", "grants": []string{"publish:a"}})
	if b := root.want(http.StatusBadRequest, "POST", "/v1/admin/grants", map[string]any{"user": "alice", "grants": []string{"publish:a", "shout:b"}}); !strings.Contains(b, "shout") {
		t.Fatalf("a bad grant must be named: %s", b)
	}
	root.want(http.StatusBadRequest, "POST", "/v1/admin/grants", map[string]any{"grants": []string{"publish:a"}})

	// admin on groups/team lets alice edit that group's grants and no other's, nor her own.
	alice := client{t: t, url: url, user: "alice", pw: "alicepw"}
	alice.want(http.StatusOK, "POST", "/v1/admin/grants", map[string]any{"group": "team", "grants": []string{"subscribe:team/#"}})
	alice.want(http.StatusOK, "GET", "/v1/admin/grants?group=team", nil)
	alice.want(http.StatusForbidden, "POST", "/v1/admin/grants", map[string]any{"group": "other", "grants": []string{"subscribe:#"}})
	alice.want(http.StatusForbidden, "POST", "/v1/admin/grants", map[string]any{"user": "alice", "grants": []string{"admin:#"}})
	alice.want(http.StatusForbidden, "GET", "/v1/admin/grants?user=alice", nil)
	alice.want(http.StatusForbidden, "GET", "/v1/admin/groups", nil)
	(client{t: t, url: url}).want(http.StatusUnauthorized, "POST", "/v1/admin/grants", map[string]any{"group": "team", "grants": []string{}})

	got = decodeInto[[]auth.Grant](t, root.want(http.StatusOK, "DELETE", "/v1/admin/grants", map[string]any{"group": "team", "grants": []string{"subscribe:team/#"}}))
	if len(got) != 0 {
		t.Fatalf("after removing: %v", got)
	}
}

func TestTokensRoutes(t *testing.T) {
	a, url, root := withRoot(t)
	root.want(http.StatusOK, "PUT", "/v1/admin/users/alice", map[string]any{"password": "alicepw", "grants": []string{"admin:tokens/%u", "subscribe:a/#"}})
	root.want(http.StatusNotFound, "POST", "/v1/admin/tokens", map[string]any{"user": "nobody"})
	root.want(http.StatusBadRequest, "POST", "/v1/admin/tokens", map[string]any{})
	root.want(http.StatusBadRequest, "POST", "/v1/admin/tokens", map[string]any{"user": "alice", "ttl": "-1h"})
	created := decodeInto[adminapi.TokenCreated](t, root.want(http.StatusCreated, "POST", "/v1/admin/tokens",
		map[string]any{"user": "alice", "grants": []string{"subscribe:a/b"}, "ttl": "24h"}))
	if created.Info.User != "alice" || created.Info.Expires.Sub(created.Info.Created) != 24*time.Hour {
		t.Fatalf("created %+v", created.Info)
	}
	rootTok := decodeInto[adminapi.TokenCreated](t, root.want(http.StatusCreated, "POST", "/v1/admin/tokens", map[string]any{"user": "root"}))

	all := decodeInto[[]auth.TokenInfo](t, root.want(http.StatusOK, "GET", "/v1/admin/tokens", nil))
	if len(all) != 2 {
		t.Fatalf("all tokens %+v", all)
	}
	b := root.want(http.StatusOK, "GET", "/v1/admin/tokens?user=alice", nil)
	if mine := decodeInto[[]auth.TokenInfo](t, b); len(mine) != 1 || mine[0].ID != created.Info.ID || strings.Contains(b, created.Token) {
		t.Fatalf("alice's tokens %s: one, without its secret", b)
	}

	// Alice, with admin on tokens/alice only, sees her tokens and cannot learn which other ids exist.
	alice := client{t: t, url: url, user: "alice", pw: "alicepw"}
	alice.want(http.StatusOK, "GET", "/v1/admin/tokens?user=alice", nil)
	alice.want(http.StatusForbidden, "GET", "/v1/admin/tokens?user=root", nil)
	alice.want(http.StatusForbidden, "DELETE", "/v1/admin/tokens/"+rootTok.Info.ID, nil)
	alice.want(http.StatusForbidden, "DELETE", "/v1/admin/tokens/0000000000000000", nil)
	root.want(http.StatusNotFound, "DELETE", "/v1/admin/tokens/0000000000000000", nil)
	alice.want(http.StatusNoContent, "DELETE", "/v1/admin/tokens/"+created.Info.ID, nil)
	if ts, _ := a.ListTokens("alice"); len(ts) != 0 {
		t.Fatalf("revoked token still stored: %+v", ts)
	}
	(client{t: t, url: url, tok: created.Token}).want(http.StatusUnauthorized, "GET", "/v1/admin/tokens?user=alice", nil)
}

func TestImportRoute(t *testing.T) {
	a, url, root := withRoot(t)
	db, err := os.ReadFile("../auth/testdata/small.db")
	if err != nil {
		t.Fatal(err)
	}
	if b := root.want(http.StatusOK, "POST", "/v1/admin/import/ulwmq?group=legacy", string(db)); b != "{\"imported\":2,\"skipped\":0}\n" {
		t.Fatalf("import answered %q", b)
	}
	if u, err := a.User("alice"); err != nil || u.PasswordScheme != "sha256" || len(u.Groups) != 1 || u.Groups[0] != "legacy" {
		t.Fatalf("imported alice %+v %v", u, err)
	}
	// alice signs in with her uLightWMQ password; she has no admin grant, hence 403, not 401.
	(client{t: t, url: url, user: "alice", pw: "hunter2"}).want(http.StatusForbidden, "GET", "/v1/admin/users", nil)
	// Importing again skips users that exist.
	if b := root.want(http.StatusOK, "POST", "/v1/admin/import/ulwmq", string(db)); !strings.Contains(b, `"skipped":2`) {
		t.Fatalf("second import %s", b)
	}
	root.want(http.StatusBadRequest, "POST", "/v1/admin/import/ulwmq?group=a/b", string(db))
	root.want(http.StatusBadRequest, "POST", "/v1/admin/import/ulwmq", "SQLite format 3\x00 and then nothing")
	root.want(http.StatusRequestEntityTooLarge, "POST", "/v1/admin/import/ulwmq", strings.Repeat("x", 9<<20))
	// A WAL-mode database cannot bring its users.db-wal in one body: refused, saying what to do.
	walDB, err := os.ReadFile("../auth/testdata/wal.db")
	if err != nil {
		t.Fatal(err)
	}
	if b := root.want(http.StatusBadRequest, "POST", "/v1/admin/import/ulwmq", string(walDB)); !strings.Contains(b, `"ulwmq_wal_mode"`) || !strings.Contains(b, "VACUUM INTO") {
		t.Fatalf("WAL-mode import answered %s", b)
	}
	(client{t: t, url: url}).want(http.StatusUnauthorized, "POST", "/v1/admin/import/ulwmq", string(db))
}

func TestBadBodies(t *testing.T) {
	_, _, root := withRoot(t)
	for name, body := range map[string]string{
		"not JSON":          `grants`,
		"truncated":         `{"grants":[`,
		"unknown field":     `{"grant":["publish:a"]}`,
		"wrong type":        `{"grants":"publish:a"}`,
		"two values":        `{} {}`,
		"trailing garbage":  `{}x`,
		"grants not a list": `{"grants":{}}`,
	} {
		t.Run(name, func(t *testing.T) {
			if b := root.want(http.StatusBadRequest, "PUT", "/v1/admin/users/bob", body); !strings.Contains(b, `"code":"bad_json"`) {
				t.Fatalf("%s", b)
			}
		})
	}
	big := `{"grants":["` + strings.Repeat("a", 1<<20) + `"]}`
	for _, path := range []string{"/v1/admin/users/bob", "/v1/admin/groups/g"} {
		if b := root.want(http.StatusRequestEntityTooLarge, "PUT", path, big); !strings.Contains(b, "body_too_large") {
			t.Fatalf("%s: %s", path, b)
		}
	}
	root.want(http.StatusRequestEntityTooLarge, "POST", "/v1/admin/grants", big)
	root.want(http.StatusRequestEntityTooLarge, "POST", "/v1/admin/tokens", big)
	root.want(http.StatusOK, "PUT", "/v1/admin/users/bob", "{}\n")
}

// failingReads is a store whose reads fail once broken is set.
type failingReads struct {
	auth.Store
	broken atomic.Bool
}

func (f *failingReads) Get(ns, key string) ([]byte, bool, error) {
	if f.broken.Load() {
		return nil, false, errors.New("disk gone")
	}
	return f.Store.Get(ns, key)
}

func TestAuthenticationRefusals(t *testing.T) {
	st := &failingReads{Store: auth.NewMemStore()}
	_, url := setupWith(t, st, func(c *auth.Config) {
		// An hour-long first refusal, so it cannot end between two requests.
		c.Backoff = auth.BackoffConfig{Failures: 1, Base: time.Hour, Max: time.Hour}
	})
	anon := client{t: t, url: url}
	anon.want(http.StatusOK, "PUT", "/v1/admin/users/root", map[string]any{"password": "rootpw", "grants": []string{"admin:#"}})
	root := client{t: t, url: url, user: "root", pw: "rootpw"}
	root.want(http.StatusOK, "GET", "/v1/admin/users", nil)

	st.broken.Store(true)
	if b := root.want(http.StatusServiceUnavailable, "GET", "/v1/admin/users", nil); !strings.Contains(b, "auth_unavailable") {
		t.Fatalf("store down: %s", b)
	}
	st.broken.Store(false)

	(client{t: t, url: url, user: "root", pw: "wrong"}).want(http.StatusUnauthorized, "GET", "/v1/admin/users", nil)
	for _, r := range []struct {
		method, path string
		body         any
	}{
		{"GET", "/v1/admin/users", nil},
		{"POST", "/v1/admin/grants", map[string]any{"user": "root", "grants": []string{}}},
		{"POST", "/v1/admin/tokens", map[string]any{"user": "root"}},
	} {
		status, body, resp := root.do(r.method, r.path, r.body)
		if status != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, "too_many_attempts") {
			t.Fatalf("%s %s after a failure: %d %q %s", r.method, r.path, status, resp.Header.Get("Retry-After"), body)
		}
	}
}
