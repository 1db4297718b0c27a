package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/adminapi"
	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/certs"
	"github.com/ternmq/tern/internal/store/pebblestore"
)

const ulwmqFixture = "../../internal/auth/testdata/small.db" // alice/hunter2, bob/pw

// ulwmqWALFixture is a users.db in WAL mode whose 119 users are all in users.db-wal beside it
// (w001/wpw1 ... w120/wpw120 but w002, w003/changed).
const ulwmqWALFixture = "../../internal/auth/testdata/wal.db"

// terner runs tern commands with fixed extra arguments (the target) and fails the test on error.
type terner struct {
	t     *testing.T
	extra []string
}

func (r terner) ok(stdin string, args ...string) (stdout, stderr string) {
	r.t.Helper()
	out, errOut, err := run(r.t, stdin, append(args, r.extra...)...)
	if err != nil {
		r.t.Fatalf("tern %v: %v (%s)", args, err, errOut)
	}
	return out, errOut
}

// fails runs a command that must fail with an error containing every one of want.
func (r terner) fails(want []string, args ...string) error {
	r.t.Helper()
	_, _, err := run(r.t, "", append(args, r.extra...)...)
	if err == nil {
		r.t.Fatalf("tern %v succeeded", args)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			r.t.Fatalf("tern %v: %q does not say %q", args, err, w)
		}
	}
	return err
}

// manage runs the flows both modes share; check signs in against the target's authenticator.
func manage(t *testing.T, tern terner, check func(user, pw string) error) {
	t.Helper()
	tern.ok("carolpw\n", "user", "add", "carol", "--password-stdin", "--group", "staff", "--grant", "publish:c/%u/#")
	tern.ok("", "user", "add", "dev-1", "--grant", "publish:dev/%u/#") // certificate or token only
	tern.fails([]string{"exists"}, "user", "add", "carol")
	tern.fails([]string{"empty password"}, "user", "add", "erin", "--password", "")
	tern.fails([]string{"shout"}, "user", "add", "erin", "--grant", "shout:x")
	tern.fails([]string{"none of the others can be"}, "user", "add", "erin", "--password", "x", "--password-stdin")
	out, _ := tern.ok("", "user", "list")
	if row(out, "carol") != "carol argon2id staff publish:c/%u/#" || row(out, "dev-1") != "dev-1 - - publish:dev/%u/#" {
		t.Fatalf("user list:\n%s", out)
	}
	if err := check("carol", "carolpw"); err != nil {
		t.Fatalf("carol with her first password: %v", err)
	}
	tern.ok("carol-new\r\n", "user", "passwd", "carol", "--password-stdin")
	if check("carol", "carolpw") == nil || check("carol", "carol-new") != nil {
		t.Fatal("after passwd: the old password must fail and the new one work")
	}
	if err := tern.fails([]string{"nobody"}, "user", "passwd", "nobody", "--password", "x"); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("passwd of an unknown user: %v is not ErrNotFound", err)
	}
	tern.fails([]string{"give --password-stdin or --password"}, "user", "passwd", "carol")

	// Grants of a user and of a group.
	tern.ok("", "grant", "add", "--user", "carol", "subscribe:c/#", "retain:c/carol/s", "subscribe:c/#", "deny:subscribe:c/secret")
	tern.ok("", "grant", "del", "--user", "carol", "retain:c/carol/s")
	if out, _ := tern.ok("", "grant", "list", "--user", "carol"); out != "publish:c/%u/#\nsubscribe:c/#\ndeny:subscribe:c/secret\n" {
		t.Fatalf("grant list = %q", out)
	}
	tern.fails([]string{"deny:action:filter"}, "grant", "add", "--user", "carol", "deny:subscribe")
	tern.fails([]string{"give --user or --group"}, "grant", "list")
	tern.fails([]string{"not found"}, "grant", "add", "--group", "staff", "subscribe:x")
	if out, _ := tern.ok("", "group", "list"); !strings.HasPrefix(out, "no groups") {
		t.Fatalf("group list with none = %q", out)
	}
	if _, errOut := tern.ok("", "user", "add", "gina", "--group", "nosuch", "--password", "pw"); !strings.Contains(errOut, `group "nosuch" does not exist`) {
		t.Fatalf("adding a user to a missing group did not warn: %q", errOut)
	}
	tern.ok("", "user", "del", "gina")
	tern.ok("", "group", "add", "staff", "subscribe:staff/#")
	tern.ok("", "grant", "add", "--group", "staff", "publish:staff/%u")
	if out, _ := tern.ok("", "group", "list"); out != "NAME   GRANTS\nstaff  subscribe:staff/# publish:staff/%u\n" {
		t.Fatalf("group list = %q", out)
	}
	if out, _ := tern.ok("", "grant", "list", "--group", "staff"); out != "subscribe:staff/#\npublish:staff/%u\n" {
		t.Fatalf("group grants = %q", out)
	}
	tern.ok("", "group", "del", "staff")
	tern.fails([]string{"not found"}, "group", "del", "staff")

	// Tokens: the secret alone on stdout, details on stderr; listed without the secret.
	tok, details := tern.ok("", "token", "create", "--user", "carol", "--grant", "subscribe:c/x", "--ttl", "2h")
	tok = strings.TrimSuffix(tok, "\n")
	if !strings.HasPrefix(tok, auth.TokenPrefix) || strings.ContainsAny(tok, " \n") || !strings.Contains(details, "for carol") {
		t.Fatalf("token create printed %q and %q", tok, details)
	}
	if err := check("", tok); err != nil {
		t.Fatalf("the new token: %v", err)
	}
	tern.fails([]string{"exceeds"}, "token", "create", "--user", "carol", "--grant", "publish:elsewhere")
	tern.fails([]string{"exceeds"}, "token", "create", "--user", "carol", "--grant", "subscribe:c/secret") // denied to carol
	tern.fails([]string{"--ttl"}, "token", "create", "--user", "carol", "--ttl", "tomorrow")
	tern.fails([]string{"give --user"}, "token", "create")
	list, _ := tern.ok("", "token", "list", "--user", "carol")
	lines := strings.Split(strings.TrimSpace(list), "\n")
	if len(lines) != 2 || strings.Contains(list, tok) || !strings.Contains(lines[1], "subscribe:c/x") {
		t.Fatalf("token list:\n%s", list)
	}
	id := strings.Fields(lines[1])[0]
	tern.ok("", "token", "revoke", id)
	if check("", tok) == nil {
		t.Fatal("a revoked token still signs in")
	}
	tern.fails([]string{"not found"}, "token", "revoke", id)
	if out, _ := tern.ok("", "token", "list"); strings.Contains(out, id) {
		t.Fatalf("revoked token listed:\n%s", out)
	}

	// uLightWMQ's users, with their old passwords.
	if out, _ := tern.ok("", "user", "import-ulwmq", ulwmqFixture, "--group", "legacy"); out != "imported 2 users, skipped 0\n" {
		t.Fatalf("import printed %q", out)
	}
	if err := check("alice", "hunter2"); err != nil {
		t.Fatalf("imported alice: %v", err)
	}
	// A WAL-mode database is read with its WAL, also when it goes to a server.
	out, errOut := tern.ok("", "user", "import-ulwmq", ulwmqWALFixture)
	if out != "imported 119 users, skipped 0\n" || !strings.Contains(errOut, "committed frames of "+ulwmqWALFixture+"-wal") {
		t.Fatalf("WAL import printed %q and %q", out, errOut)
	}
	if err := check("w003", "changed"); err != nil {
		t.Fatalf("a user from the WAL: %v", err)
	}
	// alice's sign-in re-hashed her password with argon2id; bob has not signed in yet.
	if out, _ := tern.ok("", "user", "list"); row(out, "bob") != "bob sha256 legacy -" || row(out, "alice") != "alice argon2id legacy -" {
		t.Fatalf("user list after the import:\n%s", out)
	}

	tern.ok("", "user", "del", "dev-1")
	tern.fails([]string{"not found"}, "user", "del", "dev-1")
}

// row returns the line of a table whose first column is key, its columns joined by one space.
func row(table, key string) string {
	for line := range strings.Lines(table) {
		if f := strings.Fields(line); len(f) > 0 && f[0] == key {
			return strings.Join(f, " ")
		}
	}
	return ""
}

// checkOffline signs in against a data directory, opened the way the commands open it.
func checkOffline(t *testing.T, dir string) func(user, pw string) error {
	return func(user, pw string) error {
		st, err := pebblestore.Open(dir, pebblestore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		a, err := auth.New(auth.Config{}, st.Records(), nil)
		if err != nil {
			t.Fatal(err)
		}
		return signIn(t, a, user, pw)
	}
}

func signIn(t *testing.T, a *auth.Authenticator, user, pw string) error {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, err := a.Authenticate(ctx, auth.Credentials{Face: "test", Username: user, Password: []byte(pw)})
	return err
}

func TestAdminOffline(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	tern := terner{t: t, extra: []string{"--data-dir", dir}}
	manage(t, tern, checkOffline(t, dir))
	tern.fails([]string{"--admin-user needs --server", dir}, "user", "list", "--admin-user", "root")
}

// TestAdminOfflineLocked: a data directory held by another process (a running tern) is refused
// with a message naming it and pointing to --server.
func TestAdminOfflineLocked(t *testing.T) {
	dir := t.TempDir()
	holder := exec.Command(os.Args[0], "-test.run=^TestHoldDataDir$")
	holder.Env = append(os.Environ(), "TERN_TEST_HOLD_DIR="+dir)
	stdin, err := holder.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := holder.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	holder.Stderr = os.Stderr
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close() // tells the holder to let go
		if err := holder.Wait(); err != nil {
			t.Errorf("holder: %v", err)
		}
	}()
	held := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		held <- line
	}()
	select {
	case line := <-held:
		if line != "held\n" {
			t.Fatalf("holder said %q", line)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the holder process did not open the directory")
	}
	tern := terner{t: t, extra: []string{"--data-dir", dir}}
	tern.fails([]string{"data directory " + dir + " is locked", "--server"}, "user", "list")
}

// TestHoldDataDir is the other process of TestAdminOfflineLocked: it opens the store, says so,
// and holds it until its stdin closes.
func TestHoldDataDir(t *testing.T) {
	dir := os.Getenv("TERN_TEST_HOLD_DIR")
	if dir == "" {
		t.Skip("only run by TestAdminOfflineLocked")
	}
	st, err := pebblestore.Open(dir, pebblestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	fmt.Println("held")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n') // returns at EOF
}

// adminServer serves the admin API over an authenticator in memory.
func adminServer(t *testing.T) (*auth.Authenticator, string) {
	t.Helper()
	a, err := auth.New(auth.Config{Argon2: auth.Argon2Params{Memory: 64, Time: 1, Threads: 1}}, auth.NewMemStore(), nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(adminapi.New(a, nil, nil))
	t.Cleanup(srv.Close)
	return a, srv.URL
}

func TestAdminOnline(t *testing.T) {
	a, url := adminServer(t)
	t.Setenv("TERN_ADMIN_PASSWORD", "")
	t.Setenv("TERN_ADMIN_TOKEN", "")
	// Nothing configured yet: the first administrator needs no credentials.
	anon := terner{t: t, extra: []string{"--server", url}}
	anon.ok("rootpw\n", "user", "add", "root", "--grant", "admin:#", "--password-stdin")

	anon.fails([]string{"401", "--admin-user"}, "user", "list")
	wrong := terner{t: t, extra: []string{"--server", url, "--admin-user", "root", "--admin-password", "nope"}}
	wrong.fails([]string{"GET /v1/admin/users: 401 Unauthorized", "bad credentials", "--admin-password"}, "user", "list")
	anon.fails([]string{"--admin-user root needs a password", "TERN_ADMIN_PASSWORD"}, "user", "list", "--admin-user", "root")
	anon.fails([]string{"--admin-password needs --admin-user"}, "user", "list", "--admin-password", "x")
	anon.fails([]string{"not both"}, "user", "list", "--admin-user", "root", "--admin-token", "x")
	anon.fails([]string{"--cafile", "https"}, "user", "list", "--cacert", "x.pem")
	terner{t: t}.fails([]string{"--server", "http://host:port"}, "user", "list", "--server", "ftp://x")

	root := terner{t: t, extra: []string{"--server", url, "--admin-user", "root", "--admin-password", "rootpw"}}
	manage(t, root, func(user, pw string) error {
		if user == "" {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			_, err := a.Authenticate(ctx, auth.Credentials{Face: "test", Token: pw})
			return err
		}
		return signIn(t, a, user, pw)
	})

	// A user without admin is refused with a message that says so.
	root.ok("", "user", "add", "mallory", "--password", "mpw")
	terner{t: t, extra: []string{"--server", url, "--admin-user", "mallory", "--admin-password", "mpw"}}.
		fails([]string{"403", "admin on users", "lack"}, "user", "list")

	// Credentials from the environment: a password, then a token.
	t.Setenv("TERN_ADMIN_PASSWORD", "rootpw")
	terner{t: t, extra: []string{"--server", url + "/", "--admin-user", "root"}}.ok("", "user", "list")
	tok, _ := root.ok("", "token", "create", "--user", "root")
	t.Setenv("TERN_ADMIN_PASSWORD", "")
	t.Setenv("TERN_ADMIN_TOKEN", strings.TrimSpace(tok))
	if out, _ := anon.ok("", "group", "list"); !strings.HasPrefix(out, "no groups") {
		t.Fatalf("groups %q", out)
	}
}

// TestAdminOnlineTLS: an https server is trusted through --cafile, and a client certificate
// alone can be the admin credential.
func TestAdminOnlineTLS(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca")
	if err := certs.CreateCA(ca, "test CA", 0); err != nil {
		t.Fatal(err)
	}
	srvCert, srvKey, err := certs.Issue(ca, dir, "server", certs.IssueOptions{Server: true, Hosts: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	botCert, botKey, err := certs.Issue(ca, dir, "admin-bot", certs.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(ca, certs.CACertFile)
	stls, err := certs.NewServerTLS(certs.ServerTLSOptions{CertFile: srvCert, KeyFile: srvKey, ClientCAFile: caFile})
	if err != nil {
		t.Fatal(err)
	}
	a, err := auth.New(auth.Config{Argon2: auth.Argon2Params{Memory: 64, Time: 1, Threads: 1}}, auth.NewMemStore(), nil)
	if err != nil {
		t.Fatal(err)
	}
	grant, _ := auth.ParseGrant("admin:#")
	if err := a.PutUser(auth.User{Name: "admin-bot", Grants: []auth.Grant{grant}}, nil); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: adminapi.New(a, stls.Identity, nil), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: log.New(io.Discard, "", 0)} // the refused handshake below is expected
	go func() { _ = srv.Serve(tls.NewListener(ln, stls.Config())) }()
	t.Cleanup(func() { _ = srv.Close() })
	url := "https://" + ln.Addr().String()

	bot := terner{t: t, extra: []string{"--server", url, "--cafile", caFile, "--cert", botCert, "--key", botKey}}
	bot.ok("", "user", "add", "carol", "--password", "carolpw")
	if out, _ := bot.ok("", "user", "list"); !strings.Contains(out, "carol") {
		t.Fatalf("user list over mutual TLS:\n%s", out)
	}
	terner{t: t, extra: []string{"--server", url, "--cafile", caFile}}.fails([]string{"401"}, "user", "list")
	terner{t: t, extra: []string{"--server", url}}.fails([]string{"certificate"}, "user", "list")
	terner{t: t, extra: []string{"--server", url, "--cafile", caFile, "--cert", botCert}}.fails([]string{"--cert and --key together"}, "user", "list")
}
