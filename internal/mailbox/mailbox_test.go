package mailbox

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/store/memstore"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newService() (*Service, *clock) {
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	return New(memstore.NewRecords(), Config{TTL: time.Hour, Clock: c.now}), c
}

func TestIDsNeverReused(t *testing.T) {
	s, _ := newService()
	if _, err := s.Push("alice", "bob", []byte("x"), false); !errors.Is(err, ErrNoMailbox) {
		t.Fatalf("push before bob's first read: %v", err)
	}
	if err := s.Open("bob"); err != nil {
		t.Fatal(err)
	}
	a, _ := s.Push("alice", "bob", []byte("1"), false)
	b, _ := s.Push("alice", "bob", []byte("2"), false)
	if err := s.Remove("bob", b); err != nil {
		t.Fatal(err)
	}
	c, _ := s.Push("alice", "bob", []byte("3"), false)
	if a != 1 || b != 2 || c != 3 {
		t.Fatalf("ids %d %d %d: the removed highest id must not come back", a, b, c)
	}
}

func TestFrontOrderRemoveAndExpiry(t *testing.T) {
	s, clk := newService()
	_ = s.Open("bob")
	s.Push("alice", "bob", []byte("old"), false)
	clk.add(30 * time.Minute)
	s.Push("alice", "bob", []byte("replyable"), true)
	s.Push("alice", "bob", []byte("new"), false)
	ctx := context.Background()
	m, removed, err := s.Front(ctx, "bob", 0, true)
	if err != nil || string(m.Body) != "old" || !removed {
		t.Fatalf("front: %q removed=%v %v", m.Body, removed, err)
	}
	// A message that wants a reply is not removed by removeAfterRead.
	m, removed, _ = s.Front(ctx, "bob", 0, true)
	if string(m.Body) != "replyable" || removed {
		t.Fatalf("front: %q removed=%v", m.Body, removed)
	}
	clk.add(31 * time.Minute) // "replyable" and "new" are 31 minutes old; TTL is an hour
	if m, _, _ = s.Front(ctx, "bob", 0, false); string(m.Body) != "replyable" {
		t.Fatalf("front: %q", m.Body)
	}
	clk.add(30 * time.Minute) // now both expired
	if _, _, err := s.Front(ctx, "bob", 0, false); !errors.Is(err, ErrEmpty) {
		t.Fatalf("after expiry: %v", err)
	}
	if _, err := s.Get("bob", 2); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get expired: %v", err)
	}
}

func TestReplyFlowAndWaits(t *testing.T) {
	s, _ := newService()
	_ = s.Open("bob")
	ctx := context.Background()
	// A long-poll wakes on a push.
	got := make(chan string, 1)
	go func() {
		m, _, err := s.Front(ctx, "bob", 10*time.Second, false)
		if err != nil {
			got <- err.Error()
			return
		}
		got <- string(m.Body)
	}()
	id, _ := s.Push("alice", "bob", []byte("question"), true)
	if g := <-got; g != "question" {
		t.Fatalf("long-poll got %q", g)
	}
	if _, _, err := s.Front(ctx, "carol", 10*time.Millisecond, false); !errors.Is(err, ErrTimedOut) {
		t.Fatalf("empty long-poll: %v", err)
	}
	// Only the sender may wait for the reply; a waiter wakes when it comes.
	if _, _, err := s.WaitForReply(ctx, "mallory", "bob", id, time.Second, true); !errors.Is(err, ErrNotFound) {
		t.Fatalf("another sender waiting: %v", err)
	}
	done := make(chan error, 1)
	var reply []byte
	var removed bool
	go func() {
		var err error
		reply, removed, err = s.WaitForReply(ctx, "alice", "bob", id, 10*time.Second, true)
		done <- err
	}()
	if err := s.Reply("bob", id, []byte("answer")); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil || string(reply) != "answer" || !removed {
		t.Fatalf("wait for reply: %q removed=%v %v", reply, removed, err)
	}
	if err := s.Reply("bob", id, []byte("again")); !errors.Is(err, ErrNotReplyable) {
		t.Fatalf("reply to a collected message: %v", err)
	}
	plain, _ := s.Push("alice", "bob", []byte("no reply wanted"), false)
	if err := s.Reply("bob", plain, []byte("x")); !errors.Is(err, ErrNotReplyable) {
		t.Fatalf("reply to a message not wanting one: %v", err)
	}
	if _, _, err := s.WaitForReply(ctx, "alice", "bob", plain, 10*time.Millisecond, true); !errors.Is(err, ErrTimedOut) {
		t.Fatalf("waiting for a reply that never comes: %v", err)
	}
}

func TestNames(t *testing.T) {
	for name, ok := range map[string]bool{"bob": true, "b0b": true, "Bob": false, "b.b": false, "": false, "a-b": false} {
		if ValidName(name) != ok {
			t.Errorf("ValidName(%q) = %v", name, !ok)
		}
	}
	s, _ := newService()
	if err := s.Open("Bob"); !errors.Is(err, ErrBadName) {
		t.Fatalf("open Bob: %v", err)
	}
}

// scanHook is a records store that runs after once, after the first scan of a mailbox's
// messages: the moment between a reader finding its front and removing it.
type scanHook struct {
	*memstore.Records
	after func()
	once  sync.Once
}

func (h *scanHook) Scan(ns string, fn func(string, []byte) error) error {
	err := h.Records.Scan(ns, fn)
	if ns == msgNS("bob") {
		h.once.Do(h.after)
	}
	return err
}

// Two readers that remove what they read never get one message both: a reader whose front was
// removed by another between its read and its removal looks again and gets the next one.
func TestFrontRemoveTakenByAnotherReader(t *testing.T) {
	h := &scanHook{Records: memstore.NewRecords()}
	s := New(h, Config{})
	if err := s.Open("bob"); err != nil {
		t.Fatal(err)
	}
	first, _ := s.Push("alice", "bob", []byte("1"), false)
	second, _ := s.Push("alice", "bob", []byte("2"), false)
	h.after = func() {
		if err := s.Remove("bob", first); err != nil { // the other reader
			t.Errorf("the other reader's removal: %v", err)
		}
	}
	m, removed, err := s.Front(context.Background(), "bob", 0, true)
	if err != nil || m.ID != second || !removed {
		t.Fatalf("front after the other reader took %d: id %d removed %v %v, want %d removed", first, m.ID, removed, err, second)
	}
	if _, _, err := s.Front(context.Background(), "bob", 0, true); !errors.Is(err, ErrEmpty) {
		t.Fatalf("after both were taken: %v, want ErrEmpty", err)
	}
}
