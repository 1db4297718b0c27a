package cluster

import (
	"context"
	"errors"

	"github.com/hashicorp/raft"
)

// A read index lets a node read its own copy of the replicated state and still see every write
// committed anywhere before the read began, without a log entry (Raft's thesis, 6.4): the leader
// notes its commit index, shows with a round of heartbeats that it still leads, and the reader
// waits until it has applied that far. A quiet follower has, so its read costs one round trip
// to the leader; committing a no-op through the leader instead costs an fsync on a majority and,
// on a follower, the leader's next AppendEntries to learn the commit (about CommitTimeout).

// errNoReadIndex: the leader cannot name a read index cheaply (its commit index is not yet of
// its own term, or the entries before it are compacted); the reader commits a no-op instead.
var errNoReadIndex = errors.New("cluster: no read index here yet")

// maxReadIndexWalk bounds the walk back from the commit index over entries the state machine
// never sees (raft's own no-op at the start of a term, barriers).
const maxReadIndexWalk = 16

// readIndex is the leader's read index, as an index waitApplied can wait for: the last command
// or membership change at or before the commit index (the state machine applies only those, so
// its applied index never reaches a no-op of raft's own).
func (n *Node) readIndex() (uint64, error) {
	ci, term := n.r.CommitIndex(), n.r.CurrentTerm()
	if err := n.r.VerifyLeader().Error(); err != nil {
		return 0, errRetry // not the leader (any more)
	}
	var l raft.Log
	// A new leader learns which entries its predecessor committed only by committing one of
	// its own term; until then its commit index may be behind what clients were told.
	if err := n.store.GetLog(ci, &l); err != nil || l.Term != term {
		return 0, errNoReadIndex
	}
	for i := ci; i > 0 && ci-i < maxReadIndexWalk; i-- {
		if i != ci {
			if err := n.store.GetLog(i, &l); err != nil {
				return 0, errNoReadIndex
			}
		}
		if l.Type == raft.LogCommand || l.Type == raft.LogConfiguration {
			return i, nil
		}
	}
	return 0, errNoReadIndex
}

// Sync returns once this node has applied every write committed anywhere before the call, so
// that a read of its records after it sees them (Records.Sync). Without a leader it waits for
// one for leaderWait at most and then fails with ErrNoLeader, as Write does.
func (n *Node) Sync(ctx context.Context) error {
	var idx uint64
	err := n.throughLeader(ctx, func(leader string) (err error) {
		if leader == "" {
			idx, err = n.readIndex()
		} else {
			idx, err = n.links.forwardRead(ctx, leader)
		}
		return err
	})
	switch {
	case err == nil:
		return n.waitApplied(ctx, idx)
	case errors.Is(err, errNoReadIndex):
		_, err := n.Write(ctx, []byte{cmdNoop})
		return err
	}
	return err
}

// forwardRead asks the leader for its read index.
func (l *links) forwardRead(ctx context.Context, leader string) (uint64, error) {
	o, err := l.leaderLink(leader)
	if err != nil {
		return 0, err
	}
	f, err := o.request(ctx, func(b []byte, id uint64) []byte { return appendRead(b, id) })
	if err != nil {
		return 0, err
	}
	return f.Index, replyErr(f)
}

// serveRead answers a node's fRead with this leader's read index (on a goroutine of its own:
// the heartbeat round takes a round trip to a majority).
func (in *inLink) serveRead(f frame) {
	if !in.l.n.IsLeader() {
		in.notLeader(f.Seq)
		return
	}
	idx, err := in.l.n.readIndex()
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	in.send(func(b []byte) []byte { return appendReply(b, f.Seq, idx, "", msg) })
}
