package cluster

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/ternmq/tern/internal/broker"
)

// The node's side of the session directory (sessions.go): claims and forgets for the core
// (broker.SessionDirectory), taking up its own sessions when it starts (cmdNodeUp), and, on the
// leader, handing the sessions of nodes that are gone to the others (cmdAdopt).

var _ broker.SessionDirectory = (*Node)(nil)

// adoptAfter is how long a node's link must have been down before the leader gives its sessions
// to the other nodes. Meanwhile a QoS 1/2 message for them is refused (its publisher tries again)
// rather than acknowledged with no copy kept (route.go). Longer than a link's silence timeout,
// so a link that only hiccups does not move sessions.
const adoptAfter = 3 * time.Second

// leaderWait is the longest a write waits for a leader to appear before it is refused: a node in
// a minority says no after this, not after the whole write timeout.
const leaderWait = 2 * time.Second

// ErrNotLive: the node has not taken up its sessions yet (it has not reached a majority since it
// started), so it cannot take a client's session.
var ErrNotLive = errors.New("cluster: this node has not reached the cluster yet")

// Claim implements broker.SessionDirectory.
func (n *Node) Claim(ctx context.Context, client, identity string, clean, exclusive bool) error {
	if err := n.waitLive(ctx); err != nil {
		return err
	}
	var flags byte
	if clean {
		flags |= claimClean
	}
	if exclusive {
		flags |= claimExclusive
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.WriteTimeout)
	defer cancel()
	_, err := n.Write(ctx, encodeClaim(client, n.cfg.NodeID, n.fsm.inc, identity, flags))
	if err != nil && err.Error() == broker.ErrClientIDInUse.Error() {
		return broker.ErrClientIDInUse
	}
	return err
}

// Forget implements broker.SessionDirectory.
func (n *Node) Forget(client string) {
	e, ok := n.fsm.dir.get(client)
	if !ok || e.owner != n.cfg.NodeID || n.replica == nil {
		return
	}
	err := n.replica.rep.add(func(b []byte) []byte { return appendOpHead(b, opForget, client, e.last) })
	if err != nil {
		n.log.Debug("cluster: a session that ended stays in the directory", "client", client, "err", err)
	}
}

// waitLive waits (a little) until this node holds its sessions.
func (n *Node) waitLive(ctx context.Context) error {
	select {
	case <-n.fsm.liveCh:
		return nil
	default:
	}
	t := time.NewTimer(leaderWait)
	defer t.Stop()
	select {
	case <-n.fsm.liveCh:
		return nil
	case <-ctx.Done():
		return ErrNotLive
	case <-t.C:
		return ErrNotLive
	}
}

// Live reports whether the node holds its sessions (it reached the cluster since it started).
func (n *Node) Live() bool { return n.fsm.live.Load() }

// nodeUp commits this node's cmdNodeUp: once applied, its core holds its sessions.
func (n *Node) nodeUp(ctx context.Context) error {
	if _, err := n.startWrite(ctx, encodeNodeUp(n.cfg.NodeID, n.fsm.inc)); err != nil {
		return err
	}
	select {
	case <-n.fsm.liveCh:
		n.log.Info("cluster: sessions taken up", "node", n.cfg.NodeID, "directory", n.fsm.dir.size())
		return nil
	case <-ctx.Done():
		return ErrNotLive
	}
}

// comeUp retries nodeUp until it succeeds or the node closes (a restarted node that cannot reach
// a majority yet).
func (n *Node) comeUp() {
	backoff := 200 * time.Millisecond
	for !n.isClosed() {
		ctx, cancel := context.WithTimeout(context.Background(), n.cfg.WriteTimeout)
		err := n.nodeUp(ctx)
		cancel()
		if err == nil {
			return
		}
		n.log.Info("cluster: waiting for a majority to take up this node's sessions", "err", err)
		select {
		case <-time.After(backoff):
		case <-n.stopObs:
			return
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// adoptOrphans, on the leader, gives the sessions of nodes that left, or whose links have been
// down for adoptAfter, to the nodes it reaches (itself included). Called once a second.
func (n *Node) adoptOrphans() {
	if !n.IsLeader() || !n.fsm.live.Load() || !n.adopting.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer n.adopting.Store(false)
		self := n.cfg.NodeID
		members := map[string]bool{}
		to := []string{self}
		for _, s := range n.members() {
			id := string(s.ID)
			members[id] = true
			if id != self && n.links.up(id) != nil {
				to = append(to, id)
			}
		}
		slices.Sort(to)
		for owner := range n.fsm.dir.owners() {
			if owner == self || members[owner] && n.links.downFor(owner) < adoptAfter {
				continue
			}
			n.log.Warn("cluster: giving the sessions of an unreachable node to the others", "node", owner, "to", to)
			ctx, cancel := context.WithTimeout(context.Background(), n.cfg.WriteTimeout)
			_, err := n.Write(ctx, encodeAdopt(owner, to))
			cancel()
			if err != nil {
				n.log.Warn("cluster: handing sessions over failed", "node", owner, "err", err)
				return
			}
		}
	}()
}
