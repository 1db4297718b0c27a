package auth

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestBackoffGrowsAndClears(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.Backoff = BackoffConfig{Failures: 3, Window: time.Minute, Base: time.Second, Max: 8 * time.Second}
	})
	e.addUser(t, "alice", "pw", nil)
	fail := func() error { _, err := e.login("alice", "bad"); return err }
	for i := range 3 {
		if err := fail(); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("failure %d: %v", i+1, err)
		}
	}
	// Refused now even with the right password, without checking it.
	if _, err := e.login("alice", "pw"); !errors.Is(err, ErrBackoff) {
		t.Fatalf("after 3 failures: %v", err)
	}
	// Another address is not affected.
	if _, err := e.auth(Credentials{Username: "alice", Password: []byte("pw"), RemoteAddr: "198.51.100.7:1"}); err != nil {
		t.Fatalf("other address: %v", err)
	}
	// Each failure after the limit doubles the refusal, up to Max.
	for _, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second} {
		e.clock.Add(want - time.Millisecond)
		if _, err := e.login("alice", "pw"); !errors.Is(err, ErrBackoff) {
			t.Fatalf("%v into a %v refusal: %v", want-time.Millisecond, want, err)
		}
		e.clock.Add(time.Millisecond)
		if err := fail(); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("after a %v refusal: %v", want, err)
		}
	}
	// A success clears the address.
	e.clock.Add(8 * time.Second)
	if _, err := e.login("alice", "pw"); err != nil {
		t.Fatal(err)
	}
	if err := fail(); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("first failure after success: %v", err)
	}
	if _, err := e.login("alice", "pw"); err != nil {
		t.Fatalf("one failure after a success blocked: %v", err)
	}
	if n := e.a.Stats().Backoff.Load(); n != 6 {
		t.Errorf("back-off refusals counted %d, want 6", n)
	}
}

func TestBackoffWindow(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.Backoff = BackoffConfig{Failures: 2, Window: time.Minute, Base: 10 * time.Minute}
	})
	e.addUser(t, "alice", "pw", nil)
	_, _ = e.login("alice", "bad")
	e.clock.Add(time.Minute + time.Second) // quiet longer than the window: forgotten
	_, _ = e.login("alice", "bad")
	if _, err := e.login("alice", "pw"); err != nil {
		t.Fatalf("failures a window apart blocked: %v", err)
	}
	// A refusal longer than the window does not reset the count: the quiet time starts when
	// the refusal ends.
	_, _ = e.login("alice", "bad")
	_, _ = e.login("alice", "bad")
	e.clock.Add(10 * time.Minute)
	_, _ = e.login("alice", "bad")
	if _, err := e.login("alice", "pw"); !errors.Is(err, ErrBackoff) {
		t.Fatalf("count reset by a long refusal: %v", err)
	}
}

func TestBackoffTableBounded(t *testing.T) {
	b := newBackoff(BackoffConfig{Failures: 1, MaxAddresses: 2}.withDefaults())
	now := newClock().Now()
	b.fail("a", now)
	b.fail("b", now)
	b.fail("c", now) // forgets "a", the least recently failing
	if b.tab.Len() != 2 {
		t.Fatalf("table holds %d", b.tab.Len())
	}
	if blocked, _ := b.blocked("a", now); blocked {
		t.Error("evicted address still blocked")
	}
	for _, k := range []string{"b", "c"} {
		if blocked, _ := b.blocked(k, now); !blocked {
			t.Errorf("%s not blocked", k)
		}
	}
	off := newBackoff(BackoffConfig{Failures: -1}.withDefaults())
	off.fail("a", now)
	if blocked, _ := off.blocked("a", now); blocked {
		t.Error("disabled back-off blocked")
	}
}

func TestAddressKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1:1234":                "192.0.2.1",
		"192.0.2.1":                     "192.0.2.1",
		"[2001:db8:1:2:3::4]:80":        "2001:db8:1:2::/64",
		"[2001:db8:1:2:ffff::9%eth0]:1": "2001:db8:1:2::/64",
		"[::ffff:192.0.2.1]:5":          "192.0.2.1",
		"/run/tern.sock":                "/run/tern.sock",
		"@":                             "@",
	} {
		if got := addressKey(in); got != want {
			t.Errorf("addressKey(%q) = %q, want %q", in, got, want)
		}
	}
	// Two addresses of one /64 share a back-off entry.
	e := newEnv(t, func(c *Config) { c.Backoff = BackoffConfig{Failures: 1} })
	e.addUser(t, "alice", "pw", nil)
	_, _ = e.auth(Credentials{Username: "alice", Password: []byte("x"), RemoteAddr: "[2001:db8::1]:1"})
	if _, err := e.auth(Credentials{Username: "alice", Password: []byte("pw"), RemoteAddr: "[2001:db8::2]:2"}); !errors.Is(err, ErrBackoff) {
		t.Fatalf("neighbour in the /64: %v", err)
	}
}

func TestRefusalLogRateLimited(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.Backoff.Failures = -1
		c.LogInterval = time.Minute
	})
	e.addUser(t, "alice", "pw", nil)
	for i := range 5 {
		_, _ = e.login("alice", fmt.Sprint("bad", i))
	}
	_, _ = e.login("nobody", "x")
	if n := e.logs.count("cause=\"wrong password\""); n != 1 {
		t.Fatalf("wrong-password lines = %d, want 1\n%s", n, e.logs.buf.String())
	}
	if n := e.logs.count("cause=\"unknown user\""); n != 1 {
		t.Fatalf("unknown-user lines = %d, want 1 (causes are limited separately)", n)
	}
	e.clock.Add(time.Minute)
	_, _ = e.login("alice", "bad")
	if n := e.logs.count("cause=\"wrong password\""); n != 2 {
		t.Fatalf("after the interval: %d lines", n)
	}
	if e.logs.count("suppressed=4") != 1 {
		t.Errorf("suppressed count missing:\n%s", e.logs.buf.String())
	}
}

// TestVerifiedCache: bounded, least recently used forgotten first, an entry counts until its
// TTL has passed on the Authenticator's clock, and a negative TTL remembers nothing.
func TestVerifiedCache(t *testing.T) {
	now := newClock().Now()
	v := newVerifiedCache(time.Minute, 2)
	v.add("a", now)
	v.add("b", now)
	v.recent("a", now) // "b" is now the least recently used
	v.add("c", now)
	if v.recent("b", now) {
		t.Error("b not evicted")
	}
	if !v.recent("a", now) || !v.recent("c", now) || v.tab.Len() != 2 {
		t.Error("a or c lost")
	}
	if !v.recent("a", now.Add(time.Minute)) || v.recent("a", now.Add(time.Minute+1)) {
		t.Error("TTL not applied on the given clock")
	}
	if v.tab.Len() != 1 {
		t.Errorf("an expired entry is kept: %d", v.tab.Len())
	}
	off := newVerifiedCache(-1, 2)
	off.add("a", now)
	if off.recent("a", now) {
		t.Error("a disabled cache remembered")
	}
	one := newLRU[int](0)
	one.Add("x", 1)
	one.Add("y", 2)
	if one.Len() != 1 {
		t.Errorf("a size below one holds %d", one.Len())
	}
}

func TestMemStore(t *testing.T) {
	s := NewMemStore()
	v := []byte("v1")
	if err := s.Put("ns", "k", v); err != nil {
		t.Fatal(err)
	}
	v[0] = 'X' // the store keeps its own copy
	got, ok, err := s.Get("ns", "k")
	if err != nil || !ok || string(got) != "v1" {
		t.Fatalf("Get = %q %v %v", got, ok, err)
	}
	got[0] = 'Y'
	if again, _, _ := s.Get("ns", "k"); string(again) != "v1" {
		t.Fatal("Get returned the store's own slice")
	}
	_ = s.Put("ns", "empty", nil)
	if _, ok, _ := s.Get("ns", "empty"); !ok {
		t.Fatal("empty value reads as missing")
	}
	if _, ok, _ := s.Get("other", "k"); ok {
		t.Fatal("namespaces leak")
	}
	_ = s.Put("ns", "a", []byte("0"))
	var keys []string
	err = s.Scan("ns", func(k string, _ []byte) error {
		keys = append(keys, k)
		return s.Delete("ns", k) // writing during a scan is allowed
	})
	if err != nil || fmt.Sprint(keys) != "[a empty k]" {
		t.Fatalf("Scan = %v, %v", keys, err)
	}
	if _, ok, _ := s.Get("ns", "k"); ok {
		t.Fatal("Delete failed")
	}
	stop := errors.New("stop")
	_ = s.Put("ns", "x", nil)
	_ = s.Put("ns", "y", nil)
	n := 0
	if err := s.Scan("ns", func(string, []byte) error { n++; return stop }); err != stop || n != 1 {
		t.Fatalf("Scan did not stop: %v, %d", err, n)
	}
}
