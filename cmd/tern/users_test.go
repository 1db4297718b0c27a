package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/ternmq/tern/internal/config"
	"github.com/ternmq/tern/internal/server/servertest"
)

// TestUserGrantTokenOffline manages users on a data directory, then serves it and checks a client
// can sign in with what was made.
func TestUserGrantTokenOffline(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	must := func(stdin string, args ...string) string {
		t.Helper()
		out, stderr, err := run(t, stdin, append(args, "--data-dir", dir)...)
		if err != nil {
			t.Fatalf("tern %v: %v (%s)", args, err, stderr)
		}
		return out
	}
	must("rootpw\n", "user", "add", "root", "--grant", "admin:#", "--password-stdin")
	must("", "user", "add", "alice", "--grant", "publish:users/%u/#", "--password", "alicepw")
	if _, _, err := run(t, "", "user", "add", "alice", "--password", "x", "--data-dir", dir); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("adding alice twice: %v", err)
	}
	if _, _, err := run(t, "\n", "user", "add", "bob", "--password-stdin", "--data-dir", dir); err == nil {
		t.Fatal("an empty password was accepted")
	}
	if _, _, err := run(t, "", "grant", "add", "--user", "alice", "frobnicate:#", "--data-dir", dir); err == nil {
		t.Fatal("a bad grant was accepted")
	}
	must("", "grant", "add", "--user", "alice", "subscribe:users/%u/#", "retain:users/alice/s")
	must("", "grant", "del", "--user", "alice", "retain:users/alice/s")
	if out := must("", "grant", "list", "--user", "alice"); out != "publish:users/%u/#\nsubscribe:users/%u/#\n" {
		t.Fatalf("grant list = %q", out)
	}
	must("newpw\n", "user", "passwd", "alice", "--password-stdin")
	tok := strings.TrimSpace(must("", "token", "create", "--user", "alice", "--grant", "subscribe:users/alice/#", "--ttl", "1h"))
	if !strings.HasPrefix(tok, "tern_") || strings.Contains(tok, "\n") {
		t.Fatalf("token output %q: the secret alone", tok)
	}
	list := must("", "token", "list", "--user", "alice")
	if strings.Contains(list, tok) || !strings.Contains(list, "subscribe:users/alice/#") {
		t.Fatalf("token list %q: no secrets, the grants", list)
	}
	if out := must("", "user", "list"); !strings.Contains(out, "alice  argon2id") || !strings.Contains(out, "admin:#") {
		t.Fatalf("user list %q", out)
	}

	srv := servertest.Start(t, func(c *config.Config) { c.DataDir = dir })
	url := "mqtt://" + srv.Addr("mqtt")
	if _, stderr, err := run(t, "", "pub", "--url", url, "-u", "alice", "-P", "alicepw", "-t", "users/alice/x", "-m", "x"); err == nil {
		t.Fatalf("the old password still works (%s)", stderr)
	}
	if _, stderr, err := run(t, "", "pub", "--url", url, "-u", "alice", "-P", "newpw", "-q", "1", "-t", "users/alice/x", "-m", "x"); err != nil {
		t.Fatalf("alice: %v %s", err, stderr)
	}
	if _, _, err := run(t, "", "pub", "--url", url, "-P", tok, "-q", "1", "-t", "users/alice/x", "-m", "x"); err == nil {
		t.Fatal("a subscribe-only token published")
	}
	// The server holds the directory: offline management says so and points to --server.
	if _, _, err := run(t, "", "user", "list", "--data-dir", dir); err == nil || !strings.Contains(err.Error(), "--server") {
		t.Fatalf("locked data dir: %v", err)
	}

	// The same through the admin API.
	api := "http://" + srv.Addr("http")
	if _, _, err := run(t, "", "user", "list", "--server", api); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("no admin credentials: %v", err)
	}
	if _, _, err := run(t, "", "user", "list", "--server", api, "--admin-user", "alice", "--admin-password", "newpw"); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("alice, without admin, listing users: %v", err)
	}
	t.Setenv("TERN_ADMIN_PASSWORD", "rootpw")
	remote := func(args ...string) string {
		t.Helper()
		out, stderr, err := run(t, "", append(args, "--server", api, "--admin-user", "root")...)
		if err != nil {
			t.Fatalf("tern %v: %v (%s)", args, err, stderr)
		}
		return out
	}
	remote("user", "add", "carol", "--grant", "subscribe:#", "--password", "carolpw")
	remote("grant", "add", "--user", "carol", "publish:c/#")
	if out := remote("user", "list"); !strings.Contains(out, "carol") {
		t.Fatalf("remote list %q", out)
	}
	if _, stderr, err := run(t, "", "pub", "--url", url, "-u", "carol", "-P", "carolpw", "-q", "1", "-t", "c/1", "-m", "x"); err != nil {
		t.Fatalf("carol, added on the running server: %v %s", err, stderr)
	}
	id := strings.Fields(strings.Split(remote("token", "list", "--user", "alice"), "\n")[1])[0]
	remote("token", "revoke", id)
	if out := remote("token", "list", "--user", "alice"); strings.Contains(out, id) {
		t.Fatalf("revoked token still listed: %q", out)
	}
	remote("user", "del", "carol")
	if _, _, err := run(t, "", "pub", "--url", url, "-u", "carol", "-P", "carolpw", "-t", "c/1", "-m", "x"); err == nil {
		t.Fatal("a deleted user signed in")
	}
}
