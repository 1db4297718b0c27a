package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// The replicator keeps several batches of ops on their way to the log at once (replicator.go).
// sendWrite is its way there: it starts a write and returns at once, and writes started one
// after another by one goroutine reach the log in that order, because each step keeps the order
// it was given: raft.Apply on the leader queues in call order, and a forwarded write goes over
// the one link to the leader, whose reader hands the writes it reads to raft in the order read
// (inbound.go, serveWrite). Unlike Write, a pending write is not retried (a retry could overtake
// a later write) and its end is the leader's answer, not this node's apply: the ops are on a
// majority's disks once the leader has committed them, which is all the ticket promises.

// pendingWrite is a write on its way to the log: done is closed once idx and err are set.
// applied reports whether the log has the command (idx is its index), even if it met an error.
type pendingWrite struct {
	done chan struct{}
	idx  uint64
	err  error
}

func (w *pendingWrite) finish(idx uint64, err error) {
	w.idx, w.err = idx, err
	close(w.done)
}

func (w *pendingWrite) applied() bool { return w.idx > 0 }

// sendWrite starts committing cmd; the answer comes within timeout.
func (n *Node) sendWrite(cmd []byte, timeout time.Duration) *pendingWrite {
	w := &pendingWrite{done: make(chan struct{})}
	if n.isClosed() {
		w.finish(0, ErrClosed)
		return w
	}
	if n.r.State() == raft.Leader {
		f := n.r.Apply(cmd, timeout)
		go func() { w.finish(applyResult(f)) }()
		return w
	}
	_, id := n.r.LeaderWithID()
	if id == "" {
		w.finish(0, errRetry)
		return w
	}
	o, err := n.links.leaderLink(string(id))
	if err != nil {
		w.finish(0, err)
		return w
	}
	rid, ch, err := o.sendRequest(func(b []byte, rid uint64) []byte { return appendWrite(b, rid, cmd) })
	if err != nil {
		w.finish(0, err)
		return w
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		f, err := o.await(ctx, rid, ch)
		if err != nil {
			w.finish(0, err)
			return
		}
		w.finish(f.Index, replyErr(f))
	}()
	return w
}

// applyResult waits for a command applied on the leader: its index and the error it met (the
// state machine's answer included). The index is 0 when the command may not be in the log.
func applyResult(f raft.ApplyFuture) (uint64, error) {
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrEnqueueTimeout) {
			return 0, ErrNoLeader
		}
		if errors.Is(err, raft.ErrRaftShutdown) {
			return 0, ErrClosed
		}
		return 0, fmt.Errorf("cluster: %w", err)
	}
	if e, ok := f.Response().(error); ok && e != nil {
		return f.Index(), e
	}
	return f.Index(), nil
}
