package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/mailbox"
)

// mailboxCluster starts three nodes, each with a mailbox service over the replicated records,
// woken by the records' change hook as server.Start wires it.
func mailboxCluster(t *testing.T, tc *tcluster) (nodes []*tnode, boxes map[string]*mailbox.Service) {
	t.Helper()
	var mu sync.Mutex
	boxes = map[string]*mailbox.Service{}
	tc.opened = func(n *tnode) {
		s := mailbox.New(n.Records(), mailbox.Config{})
		n.WatchRecords(s.RecordsChanged)
		mu.Lock()
		boxes[n.id] = s
		mu.Unlock()
	}
	n1, n2, n3 := tc.three()
	eventually(t, "n1 leads", n1.IsLeader)
	return []*tnode{n1, n2, n3}, boxes
}

// A message pushed through n1 is read, answered and removed through n2; the reply wakes a
// sender waiting on n1; ids allocated through different nodes stay unique and increasing.
func TestMailboxAcrossNodes(t *testing.T) {
	tc := newTCluster(t)
	_, m := mailboxCluster(t, tc)
	if err := m["n2"].Open("bob"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "n1 sees bob's mailbox", func() bool { ok, _ := m["n1"].Exists("bob"); return ok })
	id, err := m["n1"].Push("alice", "bob", []byte("ping"), true)
	if err != nil {
		t.Fatal(err)
	}
	// The front on n2 waits (woken by the replicated push) rather than polling.
	got, _, err := m["n2"].Front(ctx(t), "bob", waitTimeout, true)
	if err != nil || got.ID != id || string(got.Body) != "ping" || got.From != "alice" {
		t.Fatalf("front on n2: %+v %v (pushed id %d)", got, err, id)
	}
	replied := make(chan error, 1)
	var reply []byte
	go func() {
		var err error
		reply, _, err = m["n1"].WaitForReply(ctx(t), "alice", "bob", id, waitTimeout, true)
		replied <- err
	}()
	if err := m["n2"].Reply("bob", id, []byte("pong")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-replied:
		if err != nil || string(reply) != "pong" {
			t.Fatalf("reply on n1: %q %v", reply, err)
		}
	case <-ctx(t).Done():
		t.Fatal("the sender on n1 was not woken by the reply made on n2")
	}
	eventually(t, "the collected message is gone on n2", func() bool {
		_, err := m["n2"].Get("bob", id)
		return errors.Is(err, mailbox.ErrNotFound)
	})
	last := id
	for i, via := range []string{"n3", "n2", "n1", "n3"} {
		next, err := m[via].Push("carol", "bob", []byte{byte(i)}, false)
		if err != nil {
			t.Fatal(err)
		}
		if next <= last {
			t.Fatalf("push %d through %s got id %d after %d", i, via, next, last)
		}
		last = next
	}
}

// A long poll on n2 is woken by a push made on n1.
func TestMailboxLongPollWokenAcrossNodes(t *testing.T) {
	tc := newTCluster(t)
	_, m := mailboxCluster(t, tc)
	if err := m["n2"].Open("bob"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "n1 sees bob's mailbox", func() bool { ok, _ := m["n1"].Exists("bob"); return ok })
	type res struct {
		m   mailbox.Message
		err error
	}
	done := make(chan res, 1)
	go func() {
		msg, _, err := m["n2"].Front(ctx(t), "bob", waitTimeout, true)
		done <- res{msg, err}
	}()
	if _, err := m["n1"].Push("alice", "bob", []byte("wake"), false); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		if r.err != nil || string(r.m.Body) != "wake" {
			t.Fatalf("long poll on n2: %+v %v", r.m, r.err)
		}
	case <-time.After(waitTimeout + 5*time.Second):
		t.Fatal("the long poll on n2 never returned")
	}
}

// A pushed message survives the node it was pushed through: closed, n2 and n3 still serve it,
// and remove it.
func TestMailboxSurvivesNode(t *testing.T) {
	tc := newTCluster(t)
	nodes, m := mailboxCluster(t, tc)
	if err := m["n1"].Open("bob"); err != nil {
		t.Fatal(err)
	}
	id, err := m["n1"].Push("alice", "bob", []byte("kept"), false)
	if err != nil {
		t.Fatal(err)
	}
	if err := nodes[0].Close(); err != nil {
		t.Fatal(err)
	}
	tc.isolate(nodes[0], false)
	for _, via := range []string{"n2", "n3"} {
		eventually(t, via+" has the message", func() bool {
			got, err := m[via].Get("bob", id)
			return err == nil && string(got.Body) == "kept"
		})
	}
	if err := m["n3"].Remove("bob", id); err != nil {
		t.Fatalf("remove on n3 after n1 closed: %v", err)
	}
	eventually(t, "removed on n2", func() bool {
		_, err := m["n2"].Get("bob", id)
		return errors.Is(err, mailbox.ErrNotFound)
	})
}

// A node cut off from the majority refuses a push instead of acknowledging it.
func TestMailboxMinorityRefusesPush(t *testing.T) {
	tc := newTCluster(t)
	tc.writeTimeout = 30 * time.Second
	nodes, m := mailboxCluster(t, tc)
	if err := m["n1"].Open("bob"); err != nil {
		t.Fatal(err)
	}
	tc.isolate(nodes[0], false)
	_, err := m["n1"].Push("alice", "bob", []byte("lost"), false)
	if !errors.Is(err, ErrNoLeader) {
		t.Fatalf("a push in the minority: %v, want ErrNoLeader", err)
	}
	// The majority may still be electing a leader in n1's place (n2 then reads "no leader
	// reachable"); once it has one, the mailbox must be empty there.
	var msg mailbox.Message
	eventually(t, "the majority to have a leader again", func() bool {
		c, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		msg, _, err = m["n2"].Front(c, "bob", 0, false)
		return !errors.Is(err, ErrNoLeader)
	})
	if !errors.Is(err, mailbox.ErrEmpty) {
		t.Fatalf("the refused push reached n2: %+v %v", msg, err)
	}
}

// Pushes made at once through all three nodes get distinct ids: the log allocates them.
func TestMailboxIDsUniqueAcrossNodes(t *testing.T) {
	tc := newTCluster(t)
	_, m := mailboxCluster(t, tc)
	if err := m["n1"].Open("bob"); err != nil {
		t.Fatal(err)
	}
	for _, via := range []string{"n2", "n3"} {
		eventually(t, via+" sees bob's mailbox", func() bool { ok, _ := m[via].Exists("bob"); return ok })
	}
	const each = 5
	var mu sync.Mutex
	seen := map[uint64]string{}
	var wg sync.WaitGroup
	errs := make(chan error, 3*each)
	for _, via := range []string{"n1", "n2", "n3"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var last uint64
			for i := range each {
				id, err := m[via].Push(via, "bob", []byte{byte(i)}, false)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				if other, dup := seen[id]; dup || id <= last {
					errs <- fmt.Errorf("%s got id %d (last %d, also given to %q)", via, id, last, other)
				}
				seen[id] = via
				mu.Unlock()
				last = id
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

var holds atomic.Int64

// holdApply stops n applying the log: it applies a record written through via, then waits
// inside that apply until release is called. Writes committed meanwhile by the other two nodes
// are in n's log but not in its records.
func holdApply(t *testing.T, n, via *tnode) (release func()) {
	t.Helper()
	ns := fmt.Sprintf("hold/%s/%d", t.Name(), holds.Add(1))
	held, free := make(chan struct{}), make(chan struct{})
	var once sync.Once
	n.WatchRecords(func(got string) {
		if got == ns {
			close(held)
			<-free
		}
	})
	if err := via.Records().Put(ns, "k", []byte{1}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-held:
	case <-ctx(t).Done():
		t.Fatalf("%s never applied the hold record", n.id)
	}
	release = func() { once.Do(func() { close(free) }) }
	t.Cleanup(release)
	return release
}

// A node whose copy lags the log serves no stale mailbox: a message removed through n1 is not
// read again through n3, and a message answered through n1 is not answered again through n3,
// while n3 has not applied those writes. Each operation on n3 must wait for n3 to catch up
// (it is seen waiting, then n3 is let go); a read of n3's copy as it stands fails the test.
func TestMailboxReadsOnALaggingNode(t *testing.T) {
	tc := newTCluster(t)
	nodes, m := mailboxCluster(t, tc)
	n1, n3 := nodes[0], nodes[2]
	if err := m["n1"].Open("bob"); err != nil {
		t.Fatal(err)
	}
	plain, err := m["n1"].Push("alice", "bob", []byte("read once"), false)
	if err != nil {
		t.Fatal(err)
	}
	asking, err := m["n1"].Push("alice", "bob", []byte("answer once"), true)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "n3 has both messages", func() bool {
		_, err := m["n3"].Get("bob", asking)
		return err == nil
	})

	// waitsThenRuns runs op on n3, which must be seen waiting for n3's apply before it returns.
	waitsThenRuns := func(release func(), what string, op func() error) error {
		t.Helper()
		waiting := make(chan struct{})
		var once sync.Once
		w := func() { once.Do(func() { close(waiting) }) }
		n3.fsm.waiting.Store(&w)
		defer n3.fsm.waiting.Store(nil)
		done := make(chan error, 1)
		go func() { done <- op() }()
		select {
		case err := <-done:
			t.Fatalf("%s on n3 answered from its lagging copy: %v", what, err)
		case <-waiting:
		case <-ctx(t).Done():
			t.Fatalf("%s on n3 neither answered nor waited", what)
		}
		release()
		select {
		case err := <-done:
			return err
		case <-ctx(t).Done():
			t.Fatalf("%s on n3 never answered after n3 caught up", what)
		}
		return nil
	}

	release := holdApply(t, n3, n1)
	if err := m["n1"].Remove("bob", plain); err != nil {
		t.Fatal(err)
	}
	var front mailbox.Message
	err = waitsThenRuns(release, "a front read", func() error {
		var err error
		front, _, err = m["n3"].Front(ctx(t), "bob", 0, true)
		return err
	})
	if err != nil || front.ID != asking {
		t.Fatalf("front on n3 after %d was removed through n1: %+v %v, want %d", plain, front, err, asking)
	}

	release = holdApply(t, n3, n1)
	if err := m["n1"].Reply("bob", asking, []byte("first")); err != nil {
		t.Fatal(err)
	}
	err = waitsThenRuns(release, "a reply", func() error { return m["n3"].Reply("bob", asking, []byte("second")) })
	if !errors.Is(err, mailbox.ErrNotReplyable) {
		t.Fatalf("a second reply through n3: %v, want ErrNotReplyable", err)
	}
	reply, _, err := m["n1"].WaitForReply(ctx(t), "alice", "bob", asking, waitTimeout, false)
	if err != nil || string(reply) != "first" {
		t.Fatalf("the reply kept: %q %v, want \"first\"", reply, err)
	}
}

// A swap changes a record only while it holds the value read, decided in the log: through the
// leader and through a follower (whose loss crosses the link as an error), for a put and a
// delete, and a record that is gone counts as changed.
func TestRecordsSwap(t *testing.T) {
	tc := newTCluster(t)
	n1, n2, _ := tc.three()
	eventually(t, "n1 leads", n1.IsLeader)
	if err := n1.Records().Put("r", "k", []byte("v1")); err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		via      *tnode
		old, new string
		del      bool
		want     bool
		after    string // "" when the record should be gone
	}{
		{n2, "v1", "v2", false, true, "v2"},
		{n1, "v1", "v3", false, false, "v2"}, // read before n2's swap
		{n2, "v1", "", true, false, "v2"},
		{n1, "v2", "v3", false, true, "v3"},
		{n2, "v3", "", true, true, ""},
		{n1, "v3", "v4", false, false, ""}, // gone
		{n2, "v3", "", true, false, ""},
	} {
		done, err := step.via.Records().Swap("r", "k", []byte(step.old), []byte(step.new), step.del)
		if err != nil || done != step.want {
			t.Fatalf("swap %q -> %q (delete %v) through %s: %v %v, want %v", step.old, step.new, step.del, step.via.id, done, err, step.want)
		}
		if err := step.via.Records().Sync(ctx(t)); err != nil {
			t.Fatal(err)
		}
		for _, n := range []*tnode{n1, n2} {
			if err := n.Records().Sync(ctx(t)); err != nil {
				t.Fatal(err)
			}
			v, ok, err := n.Records().Get("r", "k")
			if err != nil || string(v) != step.after || ok != (step.after != "") {
				t.Fatalf("after swap %q -> %q: %s holds %q (%v) %v, want %q", step.old, step.new, n.id, v, ok, err, step.after)
			}
		}
	}
}

// Readers that remove what they read, one on each node at once, get every message exactly
// once; two nodes answering one message at once, exactly one succeeds.
func TestMailboxConcurrentReadersAcrossNodes(t *testing.T) {
	tc := newTCluster(t)
	_, m := mailboxCluster(t, tc)
	if err := m["n1"].Open("bob"); err != nil {
		t.Fatal(err)
	}
	const total = 24
	pushed := map[uint64]bool{}
	for i := range total {
		id, err := m["n1"].Push("alice", "bob", []byte{byte(i)}, false)
		if err != nil {
			t.Fatal(err)
		}
		pushed[id] = true
	}
	var mu sync.Mutex
	got := map[uint64]string{}
	var wg sync.WaitGroup
	for _, via := range []string{"n1", "n2", "n3"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				msg, removed, err := m[via].Front(ctx(t), "bob", 0, true)
				if errors.Is(err, mailbox.ErrEmpty) {
					return
				}
				if err != nil || !removed {
					t.Errorf("front through %s: %+v removed %v %v", via, msg, removed, err)
					return
				}
				mu.Lock()
				if other, dup := got[msg.ID]; dup {
					t.Errorf("message %d read through %s and %s", msg.ID, other, via)
				}
				got[msg.ID] = via
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(got) != total {
		t.Fatalf("%d of %d messages read", len(got), total)
	}
	for id := range pushed {
		if _, ok := got[id]; !ok {
			t.Fatalf("message %d never read", id)
		}
	}

	asking, err := m["n1"].Push("alice", "bob", []byte("?"), true)
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 2)
	for _, via := range []string{"n2", "n3"} {
		go func() { errs <- m[via].Reply("bob", asking, []byte(via)) }()
	}
	var ok, refused int
	for range 2 {
		switch err := <-errs; {
		case err == nil:
			ok++
		case errors.Is(err, mailbox.ErrNotReplyable):
			refused++
		default:
			t.Fatal(err)
		}
	}
	if ok != 1 || refused != 1 {
		t.Fatalf("two replies at once: %d succeeded, %d refused, want 1 and 1", ok, refused)
	}
}
