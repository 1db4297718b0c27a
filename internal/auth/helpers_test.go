package auth

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/store/memstore"
)

// cheapArgon keeps tests fast; the default parameters are exercised where they matter.
var cheapArgon = Argon2Params{Memory: 64, Time: 1, Threads: 1}

// fakeClock is moved by hand, so expiry, back-off and caching are tested without waiting.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// logBuffer collects log output for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) count(substr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.buf.String(), substr)
}

type env struct {
	t     testing.TB
	a     *Authenticator
	st    *memstore.Records
	clock *fakeClock
	logs  *logBuffer
}

// newEnv builds an Authenticator with a fake clock and cheap hashing; mod adjusts the config.
func newEnv(t testing.TB, mod func(*Config)) *env {
	t.Helper()
	e := &env{t: t, st: memstore.NewRecords(), clock: newClock(), logs: &logBuffer{}}
	cfg := Config{Argon2: cheapArgon, Clock: e.clock.Now}
	if mod != nil {
		mod(&cfg)
	}
	log := slog.New(slog.NewTextHandler(e.logs, nil))
	a, err := New(cfg, e.st, log)
	if err != nil {
		t.Fatal(err)
	}
	e.a = a
	return e
}

func (e *env) addUser(t testing.TB, name, pw string, groups []string, grants ...string) {
	t.Helper()
	var p []byte
	if pw != "" {
		p = []byte(pw)
	}
	if err := e.a.PutUser(User{Name: name, Groups: groups, Grants: mustGrants(t, grants...)}, p); err != nil {
		t.Fatal(err)
	}
}

func (e *env) login(name, pw string) (*Principal, error) {
	return e.a.Authenticate(testCtx(e.t), Credentials{Face: "mqtt", ClientID: "c1", Username: name, Password: []byte(pw), RemoteAddr: "192.0.2.1:4000"})
}

// testCtx bounds every call that could block, so a bug shows as a failure, not a hung test.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func (e *env) auth(c Credentials) (*Principal, error) {
	if c.RemoteAddr == "" {
		c.RemoteAddr = "192.0.2.1:4000"
	}
	return e.a.Authenticate(testCtx(e.t), c)
}

// eachMatcher runs test with every principal matched by walking its grants (listed.go), then
// with every principal compiled into automata (match.go), whatever its number of grants.
func eachMatcher(t *testing.T, test func(t *testing.T)) {
	t.Helper()
	saved := maxListed
	t.Cleanup(func() { maxListed = saved })
	for _, mode := range []struct {
		name  string
		limit int
	}{{"listed", 1 << 30}, {"automata", -1}} {
		maxListed = mode.limit
		t.Run(mode.name, test)
	}
}

// listedACL is the walked grant list of filters for action a.
func listedACL(a Action, filters []string) *acl {
	c := &acl{listed: true}
	for _, f := range filters {
		c.grants = append(c.grants, Grant{Action: a, Filter: f})
	}
	return c
}
