package cluster

import (
	"context"
	"errors"
	"fmt"

	"github.com/hashicorp/raft"
)

// Removing a node that is gone for good (`tern cluster remove <id>`), asked of any live member.
// A node that can still leave does so itself (Leave); Remove is for one that never will. Once
// the node is out of the configuration the leader gives its sessions to the live nodes
// (adoptOrphans: an owner that is not a member).

// Errors Remove can end with besides ErrNoLeader.
var (
	// ErrNotMember: the cluster has no node of that id.
	ErrNotMember = errors.New("cluster: no such member")
	// ErrRemoveRefused: removing the node would cost what force must confirm (it is reachable,
	// or the rest would have no majority), or can never be done (this node, the last voter).
	ErrRemoveRefused = errors.New("cluster: removal refused")
)

// Remove takes node id out of the cluster's membership. Without force it refuses a node whose
// link from here is up (make it leave instead) and a removal after which fewer than a majority
// of the remaining voters would be reachable from here. It returns once this node has applied
// the new membership.
func (n *Node) Remove(ctx context.Context, id string, force bool) error {
	if id == n.cfg.NodeID {
		return fmt.Errorf("%w: %s is this node: make it leave instead", ErrRemoveRefused, id)
	}
	found, voters, live := false, 0, 0
	for _, s := range n.members() {
		sid := string(s.ID)
		if sid == id {
			found = true
			continue
		}
		if s.Suffrage == raft.Voter {
			voters++
			if sid == n.cfg.NodeID || n.links.up(sid) != nil {
				live++
			}
		}
	}
	switch {
	case !found:
		return fmt.Errorf("%w: %s", ErrNotMember, id)
	case voters == 0:
		return fmt.Errorf("%w: %s is the last voter", ErrRemoveRefused, id)
	case force:
	case n.links.up(id) != nil:
		return fmt.Errorf("%w: %s is reachable: make it leave (tern cluster leave), or force the removal", ErrRemoveRefused, id)
	case live <= voters/2:
		return fmt.Errorf("%w: only %d of the %d voters left would be reachable from here, not a majority; force the removal to go on",
			ErrRemoveRefused, live, voters)
	}
	for {
		change := n.leaderChange()
		var idx uint64
		var err error
		if n.IsLeader() {
			idx, err = n.removeServer(id)
			if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
				err = errRetry
			}
		} else if _, lid := n.r.LeaderWithID(); lid != "" {
			idx, err = n.links.forwardRemove(ctx, string(lid), id)
		} else {
			err = errRetry
		}
		if err == nil {
			n.log.Warn("cluster: node removed from the membership", "node", id, "forced", force)
			return n.waitApplied(ctx, idx)
		}
		if !errors.Is(err, errRetry) {
			return err
		}
		if !awaitLeader(ctx, change) {
			return ErrNoLeader
		}
	}
}

// forwardRemove asks the leader to remove node id (a fLeave for another node) and returns the
// index of the new membership.
func (l *links) forwardRemove(ctx context.Context, leader, id string) (uint64, error) {
	o, err := l.leaderLink(leader)
	if err != nil {
		return 0, err
	}
	f, err := o.request(ctx, func(b []byte, req uint64) []byte { return appendLeave(b, req, id) })
	if err != nil {
		return 0, err
	}
	return f.Index, replyErr(f)
}
