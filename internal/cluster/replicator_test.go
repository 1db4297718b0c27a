package cluster

import (
	"context"
	"encoding/binary"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/ternmq/tern/internal/store"
)

// fakeSend is one batch the replicator sent, answered by the test.
type fakeSend struct {
	tag byte // the batch's one op byte
	w   *pendingWrite
}

// pipeRig is a replicator whose sends and writes the test answers: every op a batch of its own.
type pipeRig struct {
	p     *replicator
	sends chan fakeSend
	mu    sync.Mutex
	wrote []byte               // tags written again (replay), in order
	fail  func(tag byte) error // what a write again answers (nil: committed)
	order []byte               // tags in the order their tickets completed
	ts    map[byte]*store.Ticket
}

func newPipeRig(t *testing.T) *pipeRig {
	n := &Node{cfg: Config{NodeID: "n2", MaxFrame: 1 << 20, WriteTimeout: waitTimeout}}
	r := &pipeRig{p: newReplicator(n), sends: make(chan fakeSend, 64), ts: map[byte]*store.Ticket{}}
	r.p.limit = 1
	r.p.send = func(cmd []byte, _ time.Duration) *pendingWrite {
		w := &pendingWrite{done: make(chan struct{})}
		r.sends <- fakeSend{tag: cmd[len(cmd)-1], w: w}
		return w
	}
	r.p.write = func(_ context.Context, cmd []byte) (uint64, error) {
		tag := cmd[len(cmd)-1]
		r.mu.Lock()
		r.wrote = append(r.wrote, tag)
		fail := r.fail
		r.mu.Unlock()
		if fail != nil {
			if err := fail(tag); err != nil {
				return 0, err
			}
		}
		return uint64(100 + tag), nil
	}
	r.p.start()
	t.Cleanup(r.p.close)
	return r
}

// add adds an op tagged tag and keeps its batch's ticket.
func (r *pipeRig) add(t *testing.T, tag byte) {
	t.Helper()
	if err := r.p.add(func(b []byte) []byte { return append(b, tag) }); err != nil {
		t.Fatal(err)
	}
	r.p.mu.Lock()
	var tk *store.Ticket
	if k := len(r.p.queue); k > 0 {
		tk = r.p.queue[k-1].t
	} else {
		tk = r.p.running[len(r.p.running)-1].t
	}
	r.p.mu.Unlock()
	r.ts[tag] = tk
	tk.Then(func(error) {
		r.mu.Lock()
		r.order = append(r.order, tag)
		r.mu.Unlock()
	})
}

func (r *pipeRig) sent(t *testing.T) fakeSend {
	t.Helper()
	select {
	case s := <-r.sends:
		return s
	case <-time.After(waitTimeout):
		t.Fatal("the replicator sent nothing")
		return fakeSend{}
	}
}

func waitTicket(t *testing.T, tk *store.Ticket) error {
	t.Helper()
	done := make(chan error, 1)
	tk.Then(func(err error) { done <- err })
	select {
	case err := <-done:
		return err
	case <-time.After(waitTimeout):
		t.Fatal("a ticket did not complete")
		return nil
	}
}

// Several batches are on their way at once, and tickets complete in order even when later
// answers come first.
func TestReplicatorPipelinesInOrder(t *testing.T) {
	r := newPipeRig(t)
	for tag := byte(1); tag <= 3; tag++ {
		r.add(t, tag)
	}
	s1, s2, s3 := r.sent(t), r.sent(t), r.sent(t)
	if s1.tag != 1 || s2.tag != 2 || s3.tag != 3 {
		t.Fatalf("sent %d %d %d, want 1 2 3", s1.tag, s2.tag, s3.tag)
	}
	s3.w.finish(3, nil)
	s2.w.finish(2, nil)
	if r.ts[2].Done() || r.ts[3].Done() {
		t.Fatal("a later batch's ticket completed before an earlier one's")
	}
	s1.w.finish(1, nil)
	for tag := byte(1); tag <= 3; tag++ {
		if err := waitTicket(t, r.ts[tag]); err != nil {
			t.Fatalf("batch %d: %v", tag, err)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if string(r.order) != "\x01\x02\x03" || len(r.wrote) != 0 {
		t.Fatalf("tickets completed in order %v, written again %v", r.order, r.wrote)
	}
}

// A batch that fails without reaching the log is sent again with every batch after it, in
// order, even those the log already has (it may have them before the one that failed).
func TestReplicatorReplaysFromTheFailedBatch(t *testing.T) {
	r := newPipeRig(t)
	for tag := byte(1); tag <= 3; tag++ {
		r.add(t, tag)
	}
	s1, s2, s3 := r.sent(t), r.sent(t), r.sent(t)
	s2.w.finish(2, nil)
	s3.w.finish(3, nil)
	s1.w.finish(0, errRetry)
	for tag := byte(1); tag <= 3; tag++ {
		if err := waitTicket(t, r.ts[tag]); err != nil {
			t.Fatalf("batch %d: %v", tag, err)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if string(r.wrote) != "\x01\x02\x03" {
		t.Fatalf("written again: %v, want 1 2 3", r.wrote)
	}
	if string(r.order) != "\x01\x02\x03" {
		t.Fatalf("tickets completed in order %v", r.order)
	}
}

// When a batch cannot be committed, it and every batch after it fail, and none after it is
// sent again: nothing after a lost op is acknowledged.
func TestReplicatorFailsEveryBatchAfterALostOne(t *testing.T) {
	r := newPipeRig(t)
	r.fail = func(tag byte) error {
		if tag == 1 {
			return ErrNoLeader
		}
		return nil
	}
	for tag := byte(1); tag <= 3; tag++ {
		r.add(t, tag)
	}
	s1, s2, s3 := r.sent(t), r.sent(t), r.sent(t)
	s3.w.finish(3, nil)
	s1.w.finish(0, errRetry)
	s2.w.finish(2, nil)
	for tag := byte(1); tag <= 3; tag++ {
		if err := waitTicket(t, r.ts[tag]); err == nil {
			t.Fatalf("batch %d succeeded after batch 1 was lost", tag)
		}
	}
	r.mu.Lock()
	if string(r.wrote) != "\x01" {
		t.Fatalf("written again: %v, want only 1", r.wrote)
	}
	r.mu.Unlock()
	// The replicator carries on with new batches.
	r.add(t, 4)
	s4 := r.sent(t)
	s4.w.finish(4, nil)
	if err := waitTicket(t, r.ts[4]); err != nil {
		t.Fatalf("batch 4: %v", err)
	}
}

// A batch the log has, with an error its apply met (the session moved), fails alone: the
// batches after it were applied after it, so nothing is sent again.
func TestReplicatorAppliedErrorDoesNotReplay(t *testing.T) {
	r := newPipeRig(t)
	r.add(t, 1)
	r.add(t, 2)
	s1, s2 := r.sent(t), r.sent(t)
	s1.w.finish(1, errMoved)
	s2.w.finish(2, nil)
	if err := waitTicket(t, r.ts[1]); !errors.Is(err, errMoved) {
		t.Fatalf("batch 1: %v, want errMoved", err)
	}
	if err := waitTicket(t, r.ts[2]); err != nil {
		t.Fatalf("batch 2: %v", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.wrote) != 0 {
		t.Fatalf("written again: %v", r.wrote)
	}
}

// Many batches of one follower on their way at once reach the log in the order they were
// made: the leader hands a link's writes to raft in the order it reads them.
func TestReplicatorOrderInTheLog(t *testing.T) {
	tc := newTCluster(t)
	tc.brokers = true
	n1, n2, _ := tc.three()
	eventually(t, "n2 follows n1", func() bool { return n1.IsLeader() && n2.Leader() == "n1" })
	rep := n2.replica.rep
	rep.mu.Lock()
	rep.limit = 1 // every op a batch of its own
	rep.mu.Unlock()
	const count = 2000
	for i := 1; i <= count; i++ {
		err := rep.add(func(b []byte) []byte {
			b = appendOpHead(b, opQDel, "order", 1)
			return binary.AppendUvarint(b, uint64(i))
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// The ops are refused (no such session), but they are in the log, in some order.
	if tk := rep.sync(); tk != nil {
		_ = waitTicket(t, tk)
	}
	first, _ := n1.store.FirstIndex()
	last, _ := n1.store.LastIndex()
	var seen []uint64
	for i := first; i <= last; i++ {
		var l raft.Log
		if err := n1.store.GetLog(i, &l); err != nil || l.Type != raft.LogCommand || len(l.Data) == 0 || l.Data[0] != cmdOps {
			continue
		}
		c, err := decodeCommand(l.Data)
		if err != nil || c.Node != "n2" {
			continue
		}
		for _, o := range c.Ops {
			if o.Client == "order" {
				seen = append(seen, o.N)
			}
		}
	}
	if len(seen) < count {
		t.Fatalf("the log has %d of %d ops", len(seen), count)
	}
	for i := 1; i < len(seen); i++ {
		if seen[i] <= seen[i-1] {
			t.Fatalf("op %d (seq %d) after seq %d in the log", i, seen[i], seen[i-1])
		}
	}
}
