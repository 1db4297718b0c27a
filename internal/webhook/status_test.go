package webhook

import (
	"strings"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/auth"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestStatusAndRetryNow: a hook whose endpoint failed shows the failure and waits out a long
// backoff; RetryNow ends the wait and the message arrives.
func TestStatusAndRetryNow(t *testing.T) {
	b, st, cfg := setup(t)
	cfg.BackoffBase, cfg.BackoffMax = time.Hour, time.Hour
	r := newReceiver(t, "", func(n int, _ string) bool { return n == 1 })
	m, _ := New(b, st, cfg, nil)
	defer m.Close()
	alice := auth.Unrestricted("alice")
	h, err := m.Create(alice, Hook{Filter: "jobs/#", URL: r.srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	publish(t, b, "jobs/a", "x")
	status := func() HookStatus { return m.Status(alice)[0] }
	waitFor(t, "the hook to wait for a retry", func() bool { return status().State == "retrying" })
	s := status()
	if s.ID != h.ID || s.Failures != 1 || s.Attempts != 1 || !strings.Contains(s.LastError, "500") || s.Inflight != 1 ||
		s.Lag < 0 || s.Secret != "" {
		t.Fatalf("status %+v", s)
	}
	if lag, ok := m.Lags()[h.ID]; !ok || lag < s.Lag {
		t.Fatalf("lags %v, status lag %v", m.Lags(), s.Lag)
	}
	bob, _ := auth.NewPrincipal("bob", "", nil)
	if err := m.RetryNow(bob, h.ID); err == nil {
		t.Fatal("another identity retried alice's hook")
	}
	if err := m.RetryNow(alice, h.ID); err != nil {
		t.Fatal(err)
	}
	if got := r.wait(t, 1); got[0] != "x" {
		t.Fatalf("received %v", got)
	}
	waitFor(t, "the hook to be ok", func() bool { s := status(); return s.State == "ok" && s.Delivered == 1 && s.Inflight == 0 })
}

// TestStatusRecentDeadLetters: what a hook gave up on is listed, at most maxRecentDeadLetters.
func TestStatusRecentDeadLetters(t *testing.T) {
	b, st, cfg := setup(t)
	r := newReceiver(t, "", func(int, string) bool { return true })
	m, _ := New(b, st, cfg, nil)
	defer m.Close()
	alice := auth.Unrestricted("alice")
	if _, err := m.Create(alice, Hook{Filter: "jobs/#", URL: r.srv.URL, MaxAttempts: 1}); err != nil {
		t.Fatal(err)
	}
	for range maxRecentDeadLetters + 3 {
		publish(t, b, "jobs/<b>", "y")
	}
	waitFor(t, "every message to be given up on", func() bool { return m.Status(alice)[0].DeadLetters == maxRecentDeadLetters+3 })
	s := m.Status(alice)[0]
	if len(s.Recent) != maxRecentDeadLetters || s.Recent[0].Topic != "jobs/<b>" || s.Recent[0].Attempts != 1 || s.State != "failing" {
		t.Fatalf("status %+v", s)
	}
}
