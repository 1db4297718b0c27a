package auth

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestTokenLifecycle(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Backoff.Failures = -1 })
	e.addUser(t, "alice", "pw", nil, "publish:sensors/%u/#", "subscribe:cmd/%c/#", "call:svc/+")
	secret, info, err := e.a.CreateToken("alice", mustGrants(t, "publish:sensors/%u/temp"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(secret, TokenPrefix+info.ID+"_") || len(secret) < len(TokenPrefix)+16+1+43 {
		t.Fatalf("secret %q for id %q", secret, info.ID)
	}
	if !info.Expires.Equal(e.clock.Now().Add(time.Hour)) || info.User != "alice" {
		t.Fatalf("info = %+v", info)
	}
	// Only a digest is stored.
	raw, _, _ := e.st.Get(nsTokens, info.ID)
	if strings.Contains(string(raw), secret[len(TokenPrefix)+17:]) {
		t.Fatal("the secret is stored in the clear")
	}

	// Presented three ways: as a bearer token, and as an MQTT password with no user name or
	// with user name "token".
	for _, c := range []Credentials{
		{Token: secret, ClientID: "dev"},
		{Password: []byte(secret), ClientID: "dev"},
		{Username: "token", Password: []byte(secret), ClientID: "dev"},
	} {
		p, err := e.auth(c)
		if err != nil {
			t.Fatalf("%+v: %v", c, err)
		}
		if p.Identity != "alice" || p.Source != SourceToken || !p.Expires.Equal(info.Expires) {
			t.Fatalf("principal = %+v", p)
		}
		// The token's grants, not the user's.
		if !p.Allow(Publish, "sensors/alice/temp") || p.Allow(Publish, "sensors/alice/hum") || p.AllowFilter(Subscribe, "cmd/dev/#") {
			t.Fatal("token grants not applied")
		}
	}

	list, err := e.a.ListTokens("alice")
	if err != nil || len(list) != 1 || list[0].ID != info.ID {
		t.Fatalf("ListTokens = %+v, %v", list, err)
	}
	if l, _ := e.a.ListTokens("bob"); len(l) != 0 {
		t.Fatalf("bob's tokens = %+v", l)
	}

	if err := e.a.RevokeToken(info.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.auth(Credentials{Token: secret}); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("revoked token: %v", err)
	}
	if err := e.a.RevokeToken(info.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second revoke: %v", err)
	}
	if e.a.Stats().BadToken.Load() != 1 {
		t.Errorf("bad tokens counted %d", e.a.Stats().BadToken.Load())
	}
}

func TestTokenExpiry(t *testing.T) {
	e := newEnv(t, nil)
	e.addUser(t, "alice", "pw", nil, "publish:a")
	secret, info, err := e.a.CreateToken("alice", nil, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Add(time.Minute - time.Nanosecond)
	if _, err := e.auth(Credentials{Token: secret}); err != nil {
		t.Fatalf("token just before expiry: %v", err)
	}
	e.clock.Add(time.Nanosecond)
	if _, err := e.auth(Credentials{Token: secret}); !errors.Is(err, ErrBadCredentials) || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired token: %v", err)
	}
	if e.a.Stats().ExpiredToken.Load() != 1 {
		t.Error("expiry not counted")
	}
	if _, ok, _ := e.st.Get(nsTokens, info.ID); ok {
		t.Error("expired token kept after use")
	}
	// ttl 0: no expiry.
	secret, info, err = e.a.CreateToken("alice", nil, 0)
	if err != nil || !info.Expires.IsZero() {
		t.Fatal(info, err)
	}
	e.clock.Add(100 * 365 * 24 * time.Hour)
	if _, err := e.auth(Credentials{Token: secret}); err != nil {
		t.Fatalf("token without expiry: %v", err)
	}
	if _, _, err := e.a.CreateToken("alice", nil, -time.Second); err == nil {
		t.Error("negative ttl accepted")
	}
}

func TestTokenGrantsMustBeSubset(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.SuperGroup = "admins" })
	e.addUser(t, "alice", "pw", nil, "publish:sensors/%u/#", "publish:dev/%c", "subscribe:news/+", "publish:any/+")
	e.addUser(t, "root", "pw", []string{"admins"})
	ok := []string{
		"publish:sensors/%u/#", "publish:sensors/alice/x", "publish:sensors/%u/+/y",
		"publish:dev/%c", "subscribe:news/+", "subscribe:news/x", "publish:any/%c", "publish:any/%u",
	}
	bad := []string{
		"publish:sensors/#", "publish:sensors/bob/x", "publish:dev/+", "publish:dev/fixed",
		"subscribe:news/#", "retain:sensors/%u/#", "publish:%c",
	}
	for _, g := range ok {
		if _, _, err := e.a.CreateToken("alice", mustGrants(t, g), 0); err != nil {
			t.Errorf("token grant %s refused: %v", g, err)
		}
	}
	for _, g := range bad {
		if _, _, err := e.a.CreateToken("alice", mustGrants(t, g), 0); err == nil {
			t.Errorf("token grant %s accepted", g)
		}
	}
	if _, _, err := e.a.CreateToken("alice", []Grant{{Action: Publish, Filter: "a/#/b"}}, 0); err == nil {
		t.Error("invalid grant accepted")
	}
	// A superuser may hand out anything, '$' topics included.
	secret, _, err := e.a.CreateToken("root", mustGrants(t, "admin:$SYS/#"), 0)
	if err != nil {
		t.Fatal(err)
	}
	p, err := e.auth(Credentials{Token: secret})
	if err != nil || p.Unrestricted() || !p.Allow(Admin, "$SYS/x") || p.Allow(Publish, "x") {
		t.Fatalf("superuser token = %+v, %v", p, err)
	}
	// Without grants a superuser's token is as unrestricted as the superuser.
	secret, _, _ = e.a.CreateToken("root", nil, 0)
	if p, _ := e.auth(Credentials{Token: secret}); !p.Unrestricted() {
		t.Fatal("superuser token without grants is restricted")
	}
}

func TestTokenFollowsUser(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Backoff.Failures = -1 })
	e.addUser(t, "alice", "pw", nil, "publish:a/#", "publish:b/#")
	narrow, _, err := e.a.CreateToken("alice", mustGrants(t, "publish:a/x", "publish:b/%c"), 0)
	if err != nil {
		t.Fatal(err)
	}
	full, _, err := e.a.CreateToken("alice", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := e.auth(Credentials{Token: narrow, ClientID: "d1"})
	if !p.Allow(Publish, "a/x") || !p.Allow(Publish, "b/d1") || p.Allow(Publish, "b/d2") {
		t.Fatal("narrow token wrong")
	}
	// Narrowing the user drops the token grants no longer covered, at the next use.
	e.addUser(t, "alice", "", nil, "publish:b/#")
	p, _ = e.auth(Credentials{Token: narrow, ClientID: "d1"})
	if p.Allow(Publish, "a/x") || !p.Allow(Publish, "b/d1") {
		t.Fatal("narrowed user's token not narrowed")
	}
	p, _ = e.auth(Credentials{Token: full})
	if p.Allow(Publish, "a/x") || !p.Allow(Publish, "b/y") {
		t.Fatal("token without grants does not follow the user")
	}
	// Deleting the user revokes its tokens.
	if err := e.a.DeleteUser("alice"); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{narrow, full} {
		if _, err := e.auth(Credentials{Token: s}); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("token of a deleted user: %v", err)
		}
	}
	if l, _ := e.a.ListTokens(""); len(l) != 0 {
		t.Fatalf("tokens left after DeleteUser: %+v", l)
	}
}

func TestTokenUserRemovedBehindOurBack(t *testing.T) {
	e := newEnv(t, nil)
	e.addUser(t, "alice", "pw", nil, "publish:a")
	secret, _, _ := e.a.CreateToken("alice", nil, 0)
	_ = e.st.Delete(nsUsers, "alice") // as a store edited elsewhere would
	if _, err := e.auth(Credentials{Token: secret}); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("token of a vanished user: %v", err)
	}
}

func TestBadTokens(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Backoff.Failures = -1 })
	e.addUser(t, "alice", "pw", nil, "publish:a")
	secret, info, _ := e.a.CreateToken("alice", nil, 0)
	forged := secret[:len(secret)-1] + string(rune('A'+(secret[len(secret)-1]-'A'+1)%26))
	for _, tok := range []string{
		"tern_", "tern_zz", TokenPrefix + "0123456789abcdef_short",
		TokenPrefix + "0123456789abcdeg_" + strings.Repeat("A", 43), // id not hex
		TokenPrefix + "0123456789abcdef_" + strings.Repeat("A", 43), // unknown id
		forged, // right id, wrong secret
		"not-a-tern-token",
	} {
		if _, err := e.auth(Credentials{Token: tok}); !errors.Is(err, ErrBadCredentials) {
			t.Errorf("token %q: %v", tok, err)
		}
	}
	if _, err := e.auth(Credentials{Token: secret}); err != nil {
		t.Fatalf("the real token stopped working: %v", err)
	}
	_ = e.st.Put(nsTokens, info.ID, []byte("{"))
	if _, err := e.auth(Credentials{Token: secret}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("corrupt token record: %v", err)
	}
	if _, err := e.a.ListTokens(""); err == nil {
		t.Error("ListTokens read a corrupt record")
	}
}

func TestEditGrants(t *testing.T) {
	e := newEnv(t, nil)
	if err := e.a.PutUser(User{Name: "alice", Grants: mustGrants(t, "publish:a")}, []byte("pw")); err != nil {
		t.Fatal(err)
	}
	got, err := e.a.EditGrants(true, "alice", mustGrants(t, "publish:a", "subscribe:b/#"), true)
	if err != nil || len(got) != 2 {
		t.Fatalf("add: %v %v", got, err)
	}
	got, err = e.a.EditGrants(true, "alice", mustGrants(t, "publish:a", "publish:zzz"), false)
	if err != nil || len(got) != 1 || got[0].String() != "subscribe:b/#" {
		t.Fatalf("remove: %v %v", got, err)
	}
	if u, _ := e.a.User("alice"); len(u.Grants) != 1 || u.PasswordScheme != "argon2id" {
		t.Fatalf("stored user %+v", u)
	}
	if _, err := e.a.EditGrants(false, "nogroup", mustGrants(t, "publish:a"), true); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing group: %v", err)
	}
	if _, err := e.a.EditGrants(true, "alice", []Grant{{Action: Publish, Filter: "a/#/b"}}, true); err == nil {
		t.Fatal("bad grant accepted")
	}
}

func TestSetPassword(t *testing.T) {
	e := newEnv(t, nil)
	e.addUser(t, "alice", "old", []string{"ops"}, "publish:a")
	if err := e.a.SetPassword("alice", []byte("new")); err != nil {
		t.Fatal(err)
	}
	if _, err := e.login("alice", "old"); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("old password: %v", err)
	}
	if _, err := e.login("alice", "new"); err != nil {
		t.Fatalf("new password: %v", err)
	}
	if u, _ := e.a.User("alice"); len(u.Grants) != 1 || len(u.Groups) != 1 || u.PasswordScheme != "argon2id" {
		t.Fatalf("groups and grants must stay: %+v", u)
	}
	if err := e.a.SetPassword("nobody", []byte("x")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown user: %v", err)
	}
	if err := e.a.SetPassword("alice", nil); err == nil {
		t.Fatal("empty password accepted")
	}

	// Password changes racing grant edits lose none of the grants: each is one read-modify-write.
	const n = 16
	var wg sync.WaitGroup
	for i := range n {
		g := mustGrants(t, fmt.Sprintf("subscribe:s/%d", i))
		wg.Add(2)
		go func() {
			defer wg.Done()
			if _, err := e.a.EditGrants(true, "alice", g, true); err != nil {
				t.Error(err)
			}
		}()
		go func() {
			defer wg.Done()
			if err := e.a.SetPassword("alice", []byte(fmt.Sprint("pw", i))); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if u, _ := e.a.User("alice"); len(u.Grants) != n+1 {
		t.Fatalf("%d grants after racing password changes, want %d: %v", len(u.Grants), n+1, u.Grants)
	}
}
