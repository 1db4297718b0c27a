package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/store/memstore"
)

func TestOpenMode(t *testing.T) {
	e := newEnv(t, nil)
	if !e.a.Open() {
		t.Fatal("empty authenticator is not open")
	}
	p, err := e.auth(Credentials{Username: "whoever", Password: []byte("x"), ClientID: "c"})
	if err != nil || !p.Unrestricted() || p.Source != SourceOpen || p.Identity != "" {
		t.Fatalf("open mode login = %+v, %v", p, err)
	}
	if !p.Allow(Admin, "$SYS/x") || !p.AllowFilter(Subscribe, "#") {
		t.Fatal("open principal refused something")
	}
	// Clients without an identity share one principal: an idle connection does not pay for its own.
	if q, err := e.auth(Credentials{ClientID: "d"}); err != nil || q != p {
		t.Fatalf("a second open login got principal %p, the first %p (err %v)", q, p, err)
	}
	// A certificate's identity is the client's own.
	c, err := e.auth(Credentials{CertIdentity: "dev1", ClientID: "e"})
	if err != nil || c == p || c.Identity != "dev1" || c.ClientID != "e" || !c.Unrestricted() || c.Source != SourceOpen {
		t.Fatalf("open login with a certificate = %+v, %v", c, err)
	}
	// Groups alone configure nothing anybody could sign in with.
	if err := e.a.PutGroup(Group{Name: "g", Grants: mustGrants(t, "publish:a")}); err != nil || !e.a.Open() {
		t.Fatalf("a group closed the authenticator (err %v)", err)
	}
	e.addUser(t, "alice", "pw", nil)
	if e.a.Open() {
		t.Fatal("still open with a user")
	}
	if err := e.a.DeleteUser("alice"); err != nil {
		t.Fatal(err)
	}
	if e.a.Open() {
		t.Fatal("deleting the last user reopened the authenticator")
	}
	if _, err := e.auth(Credentials{}); !errors.Is(err, ErrNotAuthorized) {
		t.Fatalf("anonymous after closing: %v", err)
	}

	// A store that already holds a user, or a configured URL or anonymous access, is not open.
	e2, err := New(Config{Argon2: cheapArgon}, e.st, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !e2.Open() {
		t.Fatal("store without users or tokens is not open") // alice was deleted
	}
	if _, _, err := e2.CreateToken("nobody", nil, 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("token for a missing user: %v", err)
	}
	for _, cfg := range []Config{{AllowAnonymous: true}, {URL: URLConfig{URL: "http://127.0.0.1:1/auth"}}} {
		cfg.Argon2 = cheapArgon
		a, err := New(cfg, NewMemStore(), nil)
		if err != nil || a.Open() {
			t.Fatalf("config %+v: open=%v err=%v", cfg, a != nil && a.Open(), err)
		}
	}
	st := NewMemStore()
	_ = st.Put(nsUsers, "x", []byte(`{"name":"x"}`))
	if a, _ := New(Config{}, st, nil); a.Open() {
		t.Fatal("store with a user is open")
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	bad := []Config{
		{DefaultGrants: []Grant{{Action: Publish, Filter: "a/#/b"}}},
		{AnonymousGrants: []Grant{{Action: numActions, Filter: "a"}}},
		{Argon2: Argon2Params{Memory: 2 << 20}},
		{Argon2: Argon2Params{SaltLen: 4}},
		{URL: URLConfig{URL: "ftp://x/y"}},
		{URL: URLConfig{URL: "http://x/y", Style: "xml"}},
		{URL: URLConfig{URL: "http://x/y", BearerGrants: []Grant{{Action: Publish, Filter: ""}}}},
	}
	for _, cfg := range bad {
		if _, err := New(cfg, NewMemStore(), nil); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
	if _, err := New(Config{}, nil, nil); err == nil {
		t.Error("New with a nil store succeeded")
	}
}

func TestPasswordLogin(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Backoff.Failures = -1 })
	e.addUser(t, "alice", "s3cret", nil, "publish:sensors/%u/#", "subscribe:cmd/%c/#")
	p, err := e.login("alice", "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	if p.Identity != "alice" || p.Source != SourcePassword || p.ClientID != "c1" || p.Unrestricted() {
		t.Fatalf("principal = %+v", p)
	}
	if !p.Allow(Publish, "sensors/alice/t") || p.Allow(Publish, "sensors/bob/t") {
		t.Errorf("%%u not substituted")
	}
	if !p.AllowFilter(Subscribe, "cmd/c1/+") || p.AllowFilter(Subscribe, "cmd/c2/+") {
		t.Errorf("%%c not substituted")
	}

	if _, err := e.login("alice", "wrong"); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("wrong password: %v", err)
	}
	if _, err := e.login("mallory", "s3cret"); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("unknown user: %v", err)
	}
	if _, err := e.login("alice", ""); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("empty password: %v", err)
	}
	// Passwords are bytes, compared exactly.
	if _, err := e.login("alice", "S3cret"); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("case-changed password: %v", err)
	}
	s := e.a.Stats()
	if s.Accepted.Load() != 1 || s.WrongPassword.Load() != 3 || s.UnknownUser.Load() != 1 {
		t.Errorf("stats accepted=%d wrong=%d unknown=%d", s.Accepted.Load(), s.WrongPassword.Load(), s.UnknownUser.Load())
	}

	// A user without a password signs in by certificate or token only.
	e.addUser(t, "device", "", nil, "publish:x")
	if _, err := e.login("device", "anything"); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("password-less user: %v", err)
	}
	// Updating a user without a password keeps the old one.
	if err := e.a.PutUser(User{Name: "alice", Grants: mustGrants(t, "publish:new")}, nil); err != nil {
		t.Fatal(err)
	}
	p, err = e.login("alice", "s3cret")
	if err != nil || !p.Allow(Publish, "new") || p.Allow(Publish, "sensors/alice/t") {
		t.Fatalf("after update: %v, new=%v", err, p != nil && p.Allow(Publish, "new"))
	}
}

func TestStoredHashFormat(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Argon2 = Argon2Params{} }) // the defaults, once
	e.addUser(t, "alice", "pw", nil)
	rec, ok, err := e.a.getUser("alice")
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	if !strings.HasPrefix(rec.Hash, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("hash = %q", rec.Hash)
	}
	h, err := parsePHC(rec.Hash)
	if err != nil || len(h.salt) != 16 || len(h.hash) != 32 || h.String() != rec.Hash {
		t.Fatalf("parse: %+v %v", h, err)
	}
	if _, err := e.login("alice", "pw"); err != nil {
		t.Fatal(err)
	}
	users, err := e.a.Users()
	if err != nil || len(users) != 1 || users[0].PasswordScheme != "argon2id" {
		t.Fatalf("Users() = %+v, %v", users, err)
	}
}

func TestUserValidation(t *testing.T) {
	e := newEnv(t, nil)
	for _, u := range []User{
		{Name: ""}, {Name: "token"}, {Name: "a/b"}, {Name: "a+"}, {Name: "#"}, {Name: "tab\t"},
		{Name: strings.Repeat("x", 257)}, {Name: "\xff"},
		{Name: "ok", Groups: []string{"bad/group"}},
		{Name: "ok", Grants: []Grant{{Action: Publish, Filter: "a/#/b"}}},
	} {
		if err := e.a.PutUser(u, []byte("pw")); err == nil {
			t.Errorf("PutUser(%q) succeeded", u.Name)
		}
	}
	if err := e.a.PutUser(User{Name: "ok"}, []byte{}); err == nil {
		t.Error("empty password accepted")
	}
	if err := e.a.PutGroup(Group{Name: "g/h"}); err == nil {
		t.Error("bad group name accepted")
	}
	if err := e.a.PutGroup(Group{Name: "g", Grants: []Grant{{Action: Publish, Filter: ""}}}); err == nil {
		t.Error("bad group grant accepted")
	}
	if err := e.a.DeleteUser("nobody"); !errors.Is(err, ErrNotFound) {
		t.Errorf("DeleteUser(nobody) = %v", err)
	}
	if err := e.a.DeleteGroup("nobody"); !errors.Is(err, ErrNotFound) {
		t.Errorf("DeleteGroup(nobody) = %v", err)
	}
	if err := e.a.SetPasswordHash("nobody", legacyPrefix+strings.Repeat("0", 64)); !errors.Is(err, ErrNotFound) {
		t.Errorf("SetPasswordHash(nobody) = %v", err)
	}
}

func TestGrantsRefuseActions(t *testing.T) {
	e := newEnv(t, nil)
	e.addUser(t, "bob", "pw", nil, "publish:data/%u/#", "subscribe:data/+/status", "call:svc/echo")
	p, err := e.login("bob", "pw")
	if err != nil {
		t.Fatal(err)
	}
	refused := []struct {
		a Action
		s string
	}{
		{Publish, "data/alice/x"}, {Publish, "other"},
		{Subscribe, "data/#"}, {Subscribe, "data/+/+"}, {Subscribe, "#"},
		{Retain, "data/bob/x"}, // publishing there is allowed, retaining is not
		{Call, "svc/other"}, {Serve, "svc/echo"}, {Push, "data/bob"}, {Query, "data/bob"},
		{Route, "data/bob"}, {Admin, "data/bob"},
	}
	for _, r := range refused {
		if p.Allow(r.a, r.s) || p.AllowFilter(r.a, r.s) {
			t.Errorf("%v %q allowed", r.a, r.s)
		}
	}
	if !p.Allow(Publish, "data/bob/x") || !p.AllowFilter(Subscribe, "data/+/status") || !p.Allow(Call, "svc/echo") {
		t.Error("granted action refused")
	}
}

func TestGroupsAndSuperGroup(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.SuperGroup = "admins"
		c.DefaultGrants = mustGrants(t, "push:inbox/%u")
	})
	if err := e.a.PutGroup(Group{Name: "readers", Grants: mustGrants(t, "subscribe:news/#")}); err != nil {
		t.Fatal(err)
	}
	e.addUser(t, "carol", "pw", []string{"readers", "later"}, "publish:carol")
	e.addUser(t, "root", "pw", []string{"admins"})
	p, err := e.login("carol", "pw")
	if err != nil {
		t.Fatal(err)
	}
	if !p.AllowFilter(Subscribe, "news/#") || !p.Allow(Publish, "carol") || !p.Allow(Push, "inbox/carol") {
		t.Error("user, group or default grant missing")
	}
	if p.Allow(Push, "inbox/root") || p.AllowFilter(Subscribe, "sports/#") {
		t.Error("grant leaked")
	}
	if strings.Join(p.Groups, ",") != "readers,later" {
		t.Errorf("groups = %v", p.Groups)
	}
	// A group created after the user is referenced counts at the next login; a deleted one stops.
	if err := e.a.PutGroup(Group{Name: "later", Grants: mustGrants(t, "publish:later/#")}); err != nil {
		t.Fatal(err)
	}
	if err := e.a.DeleteGroup("readers"); err != nil {
		t.Fatal(err)
	}
	p, _ = e.login("carol", "pw")
	if !p.Allow(Publish, "later/x") || p.AllowFilter(Subscribe, "news/#") {
		t.Error("group changes not applied")
	}
	gs, err := e.a.Groups()
	if err != nil || len(gs) != 1 || gs[0].Name != "later" {
		t.Errorf("Groups() = %v, %v", gs, err)
	}
	root, err := e.login("root", "pw")
	if err != nil || !root.Unrestricted() || !root.Allow(Admin, "$SYS/broker") {
		t.Fatalf("superuser = %+v, %v", root, err)
	}
}

func TestCertificateIdentity(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.DefaultGrants = mustGrants(t, "push:inbox/%u")
		c.Backoff = BackoffConfig{Failures: 1}
	})
	e.addUser(t, "sensor1", "pw", nil, "publish:sensors/%u/#")
	// Lock the address out first: certificates are not subject to back-off.
	_, _ = e.login("sensor1", "bad")
	if _, err := e.login("sensor1", "pw"); !errors.Is(err, ErrBackoff) {
		t.Fatalf("expected back-off, got %v", err)
	}
	p, err := e.auth(Credentials{CertIdentity: "sensor1", Username: "sensor1", Password: []byte("wrong"), ClientID: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if p.Identity != "sensor1" || p.Source != SourceCertificate || !p.Allow(Publish, "sensors/sensor1/t") || !p.Allow(Push, "inbox/sensor1") {
		t.Fatalf("certificate principal = %+v", p)
	}
	// No user record: the CA vouches for the name; only the default grants apply.
	p, err = e.auth(Credentials{CertIdentity: "stranger"})
	if err != nil || p.Identity != "stranger" || !p.Allow(Push, "inbox/stranger") || p.Allow(Publish, "sensors/stranger/t") {
		t.Fatalf("stranger = %+v, %v", p, err)
	}
}

func TestAnonymous(t *testing.T) {
	e := newEnv(t, nil)
	e.addUser(t, "u", "pw", nil)
	if _, err := e.auth(Credentials{ClientID: "anon"}); !errors.Is(err, ErrNotAuthorized) {
		t.Fatalf("anonymous: %v", err)
	}
	if e.a.Stats().AnonymousRefused.Load() != 1 {
		t.Error("anonymous refusal not counted")
	}
	e = newEnv(t, func(c *Config) {
		c.AllowAnonymous = true
		c.AnonymousGrants = mustGrants(t, "subscribe:public/#", "publish:public/%c")
	})
	p, err := e.auth(Credentials{ClientID: "kiosk"})
	if err != nil || p.Source != SourceAnonymous || p.Identity != "" {
		t.Fatalf("anonymous = %+v, %v", p, err)
	}
	if !p.AllowFilter(Subscribe, "public/#") || !p.Allow(Publish, "public/kiosk") || p.Allow(Publish, "public/other") || p.Allow(Publish, "private") {
		t.Error("anonymous grants wrong")
	}
}

func TestLegacyImportUpgradedOnFirstLogin(t *testing.T) {
	e := newEnv(t, nil)
	// sha256("hunter2"); upper-case hex as uLightWMQ tolerates.
	in := "# exported from uLightWMQ\nalice|F52FBD32B2B3B86FF88EF6C490628285F482AF15DDCB29541F94BCF526A3F6C7|2020-01-01 00:00:00\n\nbob|zz\n"
	n, skipped, err := e.a.ImportULWMQ(strings.NewReader(in), "legacy")
	if err != nil || n != 1 || skipped != 1 {
		t.Fatalf("import = %d, %d, %v", n, skipped, err)
	}
	if e.a.Open() {
		t.Fatal("import left the authenticator open")
	}
	rec, _, _ := e.a.getUser("alice")
	if rec.Hash != legacyPrefix+"f52fbd32b2b3b86ff88ef6c490628285f482af15ddcb29541f94bcf526a3f6c7" || rec.Groups[0] != "legacy" {
		t.Fatalf("imported record = %+v", rec)
	}
	if users, _ := e.a.Users(); users[0].PasswordScheme != "sha256" {
		t.Fatalf("scheme = %q", users[0].PasswordScheme)
	}
	// A wrong password neither signs in nor upgrades.
	if _, err := e.login("alice", "hunter3"); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("wrong legacy password: %v", err)
	}
	if rec, _, _ := e.a.getUser("alice"); !strings.HasPrefix(rec.Hash, legacyPrefix) {
		t.Fatal("upgraded after a failed login")
	}
	p, err := e.login("alice", "hunter2")
	if err != nil || p.Identity != "alice" {
		t.Fatalf("legacy login: %v", err)
	}
	rec, _, _ = e.a.getUser("alice")
	if !strings.HasPrefix(rec.Hash, "$argon2id$") || rec.Groups[0] != "legacy" {
		t.Fatalf("not upgraded: %+v", rec)
	}
	if e.a.Stats().LegacyUpgraded.Load() != 1 {
		t.Error("upgrade not counted")
	}
	if _, err := e.login("alice", "hunter2"); err != nil {
		t.Fatalf("login after upgrade: %v", err)
	}
	if _, err := e.login("alice", "hunter3"); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("wrong password after upgrade: %v", err)
	}
	// Importing again does not overwrite the upgraded user.
	if n, skipped, _ := e.a.ImportULWMQ(strings.NewReader(in)); n != 0 || skipped != 2 {
		t.Fatalf("re-import = %d, %d", n, skipped)
	}
	if _, _, err := e.a.ImportULWMQ(strings.NewReader("no separator\n")); err == nil {
		t.Error("line without | accepted")
	}
	if _, _, err := e.a.ImportULWMQ(strings.NewReader(""), "bad/group"); err == nil {
		t.Error("bad group accepted")
	}
}

func TestRehashWhenParametersChange(t *testing.T) {
	e := newEnv(t, nil)
	e.addUser(t, "alice", "pw", nil)
	stronger := Argon2Params{Memory: 128, Time: 2, Threads: 1}
	a2, err := New(Config{Argon2: stronger, Clock: e.clock.Now}, e.st, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a2.Authenticate(testCtx(t), Credentials{Username: "alice", Password: []byte("pw")}); err != nil {
		t.Fatal(err)
	}
	rec, _, _ := a2.getUser("alice")
	if h, err := parsePHC(rec.Hash); err != nil || h.params.Memory != 128 || h.params.Time != 2 {
		t.Fatalf("not re-hashed with the new parameters: %q", rec.Hash)
	}
}

func TestSetPasswordHash(t *testing.T) {
	e := newEnv(t, nil)
	e.addUser(t, "alice", "", nil)
	for _, bad := range []string{"", "plain", "$argon2id$v=19$m=64,t=1,p=1$x$y", legacyPrefix + "abc"} {
		if err := e.a.SetPasswordHash("alice", bad); err == nil {
			t.Errorf("SetPasswordHash(%q) accepted", bad)
		}
	}
	h, err := e.a.hasher.hash(testCtx(t), []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.a.SetPasswordHash("alice", h); err != nil {
		t.Fatal(err)
	}
	if _, err := e.login("alice", "pw"); err != nil {
		t.Fatalf("login with a set hash: %v", err)
	}
	// sha256("pw"), as a configuration file might carry it.
	if err := e.a.SetPasswordHash("alice", legacyPrefix+"30C952FAB122C3F9759F02A6D95C3758B246B4FEE239957B2D4FEE46E26170C4"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.login("alice", "pw"); err != nil {
		t.Fatalf("login with a legacy hash: %v", err)
	}
}

func TestHashingHonoursContext(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxConcurrentHashes = 1 })
	e.addUser(t, "alice", "pw", nil)
	e.a.hasher.sem <- struct{}{} // every hashing slot is taken
	defer func() { <-e.a.hasher.sem }()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	_, err := e.a.Authenticate(ctx, Credentials{Username: "alice", Password: []byte("pw")})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("blocked hashing: %v", err)
	}
}

func TestCorruptRecords(t *testing.T) {
	e := newEnv(t, nil)
	e.addUser(t, "alice", "pw", nil)
	_ = e.st.Put(nsUsers, "alice", []byte("{not json"))
	if _, err := e.login("alice", "pw"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("corrupt user record: %v", err)
	}
	if _, err := e.a.Users(); err == nil {
		t.Error("Users() read a corrupt record")
	}
	_ = e.st.Put(nsUsers, "bob", []byte(`{"name":"bob","hash":"$argon2id$garbage"}`))
	if _, err := e.login("bob", "pw"); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("unreadable hash: %v", err)
	}
	_ = e.st.Put(nsGroups, "g", []byte("["))
	if _, err := e.a.Groups(); err == nil {
		t.Error("Groups() read a corrupt record")
	}
	_ = e.st.Put(nsUsers, "carol", []byte(`{"name":"carol","groups":["g"]}`))
	if _, err := e.auth(Credentials{CertIdentity: "carol"}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("corrupt group: %v", err)
	}
}

// TestConcurrentLogins runs logins, legacy upgrades and administration at once, for the race
// detector.
func TestConcurrentLogins(t *testing.T) {
	e := newEnv(t, nil)
	var b strings.Builder
	for i := range 20 {
		// sha256("hunter2")
		fmt.Fprintf(&b, "u%d|f52fbd32b2b3b86ff88ef6c490628285f482af15ddcb29541f94bcf526a3f6c7\n", i)
	}
	if _, _, err := e.a.ImportULWMQ(strings.NewReader(b.String())); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := range 20 {
		for range 4 {
			wg.Go(func() {
				if _, err := e.login(fmt.Sprintf("u%d", i), "hunter2"); err != nil {
					errs <- err
				}
			})
		}
		wg.Go(func() {
			if err := e.a.PutUser(User{Name: fmt.Sprintf("u%d", i), Groups: []string{"g"}}, nil); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	users, _ := e.a.Users()
	for _, u := range users {
		if u.PasswordScheme != "argon2id" || len(u.Groups) != 1 {
			t.Errorf("user %+v: upgrade or update lost", u)
		}
	}
}

// failStore fails the operations a test switches on.
type failStore struct {
	*memstore.Records
	failGet, failPut, failScan bool
}

var errDisk = errors.New("disk on fire")

func (f *failStore) Get(ns, key string) ([]byte, bool, error) {
	if f.failGet {
		return nil, false, errDisk
	}
	return f.Records.Get(ns, key)
}

func (f *failStore) Put(ns, key string, v []byte) error {
	if f.failPut {
		return errDisk
	}
	return f.Records.Put(ns, key, v)
}

func (f *failStore) Scan(ns string, fn func(string, []byte) error) error {
	if f.failScan {
		return errDisk
	}
	return f.Records.Scan(ns, fn)
}

func TestStoreFailures(t *testing.T) {
	st := &failStore{Records: memstore.NewRecords()}
	st.failScan = true
	if _, err := New(Config{}, st, nil); !errors.Is(err, errDisk) {
		t.Fatalf("New over a failing store: %v", err)
	}
	st.failScan = false
	clock := newClock()
	a, err := New(Config{Argon2: cheapArgon, Clock: clock.Now}, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.PutUser(User{Name: "alice", Grants: mustGrants(t, "publish:a")}, []byte("pw")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.ImportULWMQ(strings.NewReader("bob|30c952fab122c3f9759f02a6d95c3758b246b4fee239957b2d4fee46e26170c4\n")); err != nil {
		t.Fatal(err)
	}
	login := func(name string) (*Principal, error) {
		return a.Authenticate(testCtx(t), Credentials{Username: name, Password: []byte("pw")})
	}

	// The legacy user signs in even when the upgraded hash cannot be stored; it is retried at
	// the next login.
	st.failPut = true
	if p, err := login("bob"); err != nil || p.Identity != "bob" {
		t.Fatalf("legacy login with a read-only store: %v", err)
	}
	if rec, _, _ := a.getUser("bob"); !strings.HasPrefix(rec.Hash, legacyPrefix) || a.Stats().LegacyUpgraded.Load() != 0 {
		t.Fatal("upgrade claimed without being stored")
	}
	if err := a.PutUser(User{Name: "carol"}, []byte("pw")); !errors.Is(err, errDisk) {
		t.Fatalf("PutUser on a failing store: %v", err)
	}
	if _, _, err := a.CreateToken("alice", nil, 0); !errors.Is(err, errDisk) {
		t.Fatalf("CreateToken on a failing store: %v", err)
	}
	st.failPut = false
	if _, err := login("bob"); err != nil || a.Stats().LegacyUpgraded.Load() != 1 {
		t.Fatalf("upgrade not retried: %v", err)
	}

	st.failGet = true
	for _, c := range []Credentials{
		{Username: "alice", Password: []byte("pw")},
		{CertIdentity: "alice"},
		{Token: TokenPrefix + "0123456789abcdef_" + strings.Repeat("A", 43)},
	} {
		c.RemoteAddr = "192.0.2.5:1"
		if _, err := a.Authenticate(testCtx(t), c); !errors.Is(err, ErrUnavailable) {
			t.Errorf("%+v on a failing store: %v", c, err)
		}
	}
	if err := a.DeleteUser("alice"); !errors.Is(err, errDisk) {
		t.Errorf("DeleteUser: %v", err)
	}
	if err := a.DeleteGroup("g"); !errors.Is(err, errDisk) {
		t.Errorf("DeleteGroup: %v", err)
	}
	if err := a.RevokeToken("x"); !errors.Is(err, errDisk) {
		t.Errorf("RevokeToken: %v", err)
	}
	if err := a.SetPasswordHash("alice", legacyPrefix+strings.Repeat("0", 64)); !errors.Is(err, errDisk) {
		t.Errorf("SetPasswordHash: %v", err)
	}
	if a.backoff.tab.Len() != 0 {
		t.Error("store failures counted towards back-off")
	}
}

func TestVerifiedPasswordsAreRemembered(t *testing.T) {
	e := newEnv(t, nil)
	if err := e.a.PutUser(User{Name: "alice"}, []byte("pw")); err != nil {
		t.Fatal(err)
	}
	login := func(pw string) error {
		_, err := e.auth(Credentials{Username: "alice", Password: []byte(pw), ClientID: "c"})
		return err
	}
	if err := login("pw"); err != nil {
		t.Fatal(err)
	}
	hashes := e.a.hasher.count.Load()
	for range 3 {
		if err := login("pw"); err != nil {
			t.Fatal(err)
		}
	}
	if got := e.a.hasher.count.Load(); got != hashes {
		t.Fatalf("%d more hashes for a remembered password", got-hashes)
	}
	if err := login("wrong"); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("a wrong password after a right one: %v", err)
	}
	// A new password makes the remembered one useless.
	if err := e.a.PutUser(User{Name: "alice"}, []byte("new")); err != nil {
		t.Fatal(err)
	}
	if err := login("pw"); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("the old password after a change: %v", err)
	}
	e.clock.Add(2 * time.Minute)
	before := e.a.hasher.count.Load()
	if err := login("new"); err != nil {
		t.Fatal(err)
	}
	if err := login("new"); err != nil || e.a.hasher.count.Load() != before+1 {
		t.Fatalf("expected one hash for the new password, got %d", e.a.hasher.count.Load()-before)
	}
}

// A user written into the store by somebody else (a replicated store) ends open mode once the
// authenticator is told.
func TestRecordsChangedEndsOpenMode(t *testing.T) {
	st := NewMemStore()
	a, err := New(Config{}, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !a.Open() {
		t.Fatal("not open without users")
	}
	_ = st.Put(nsGroups, "g", []byte(`{"name":"g"}`))
	a.RecordsChanged(nsGroups)
	if !a.Open() {
		t.Fatal("a group ended open mode")
	}
	_ = st.Put(nsUsers, "bob", []byte(`{"name":"bob"}`))
	a.RecordsChanged(nsUsers)
	if a.Open() {
		t.Fatal("still open after a user appeared")
	}
}
