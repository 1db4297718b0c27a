// Package cluster makes a tern one node of several that behave as one broker: they agree on
// membership, users, groups, tokens and retained messages through hashicorp/raft (fsm.go,
// records.go), and route each message once to every other node whose sessions want it (links.go,
// route.go). One listener serves both raft and the node links (transport.go).
package cluster

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"

	"github.com/ternmq/tern/internal/raftstore"
)

// Errors a write can end with.
var (
	// ErrNoLeader: no leader could be reached in time (a minority partition, an election), so
	// the write was not committed.
	ErrNoLeader = errors.New("cluster: no leader reachable, the write cannot be committed")
	// ErrClosed: the node is shutting down or has left.
	ErrClosed = errors.New("cluster: node closed")
)

// Config describes one node.
type Config struct {
	NodeID string
	// Listen is where raft and node links are served; Advertise what the other nodes dial
	// (default Listen).
	Listen, Advertise string
	// Join lists addresses of nodes to ask for membership when this node has no state yet.
	Join []string
	// Dir holds raft's database and snapshots (<data-dir>/raft).
	Dir string
	// ServerTLS and ClientTLS, both set or both nil, make every node link and raft connection
	// mutual TLS; a peer's certificate identity is its node id.
	ServerTLS, ClientTLS *tls.Config
	// TLS, when set, is node link TLS read again on ReloadTLS (SIGHUP); it replaces ServerTLS
	// and ClientTLS.
	TLS *NodeTLS
	// Identity names a peer from its verified certificate.
	Identity func(tls.ConnectionState) string
	// MaxFrame bounds one frame on a node link (a message with its properties).
	MaxFrame int
	// WriteTimeout bounds a replicated write (Records.Put, a retained message) and
	// JoinTimeout how long a new node tries to join before Start fails.
	WriteTimeout, JoinTimeout time.Duration
	// Seed, when this node starts a new cluster, gives its first state: the records and
	// retained messages the data directory already had (a single node becoming a cluster).
	Seed func() ([]Record, error)
	Log  *slog.Logger

	// Tests: Transport replaces raft's network transport (raft.InmemTransport), LinkAddr maps
	// a raft address to its node's link address, and Tune adjusts raft's configuration.
	Transport raft.Transport
	Listener  net.Listener
	LinkAddr  func(raft.ServerAddress) string
	Tune      func(*raft.Config)
}

func (c *Config) defaults() {
	c.Advertise = cmp.Or(c.Advertise, c.Listen)
	if c.MaxFrame <= 0 {
		c.MaxFrame = 16 << 20
	}
	c.WriteTimeout = cmp.Or(c.WriteTimeout, 10*time.Second)
	c.JoinTimeout = cmp.Or(c.JoinTimeout, 2*time.Minute)
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
}

// Timing sized for a loaded 2-core machine (docs/decisions.md): a follower that hears nothing
// from its leader for 1-2 s starts a pre-vote, a candidate waits 2.5 s, and a leader that cannot
// reach a majority for 1 s steps down, so a minority stops acknowledging writes within about a
// second and a new leader takes over in about 3-5 s.
const (
	heartbeatTimeout = time.Second
	electionTimeout  = 2500 * time.Millisecond
	leaderLease      = time.Second
)

// commitTimeout is how long raft's leader waits, when no new entry comes, before it sends each
// follower an AppendEntries anyway (raft's default is 50 ms, staggered up to twice that). A
// follower learns that an entry is committed only from the next AppendEntries, so a write a
// follower forwards and then applies itself (a session claim at CONNECT, a record) waited that
// long when nothing followed it: a persistent CONNECT on a follower took ~80 ms, ~6 ms on the
// leader. 10 ms makes it ~20 ms, for an empty AppendEntries per follower every 10-20 ms while
// idle (measured in docs/decisions.md). It is not the heartbeat: elections do not depend on it.
const commitTimeout = 10 * time.Millisecond

// raftConfig is raft's configuration for node id, before Config.Tune.
func raftConfig(id string) *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(id)
	rc.HeartbeatTimeout = heartbeatTimeout
	rc.ElectionTimeout = electionTimeout
	rc.LeaderLeaseTimeout = leaderLease
	rc.CommitTimeout = commitTimeout
	rc.NoSnapshotRestoreOnStart = true
	// Writes queue for the leader's loop (up to MaxAppendEntries) instead of each waiting for
	// it, so the commands that arrive during one log write go to disk together in the next, and
	// a link's reader hands its writes over in order without waiting (inbound.go, serveWrite).
	rc.BatchApplyCh = true
	return rc
}

// Node is this tern's membership in the cluster.
type Node struct {
	cfg   Config
	log   *slog.Logger
	store *raftstore.Store
	db    *pebble.DB
	fsm   *fsm
	snaps raft.SnapshotStore
	r     *raft.Raft
	trans raft.Transport
	mux   *mux
	links *links
	// replica is the core's store when the node keeps sessions (SessionStore); adopting is set
	// while the leader hands sessions of unreachable nodes over (adopt.go).
	replica  *Replica
	adopting atomic.Bool
	// boot is the bootstrap vote of a node without raft state (bootstrap.go).
	boot bootState

	// leaderTick is closed and replaced when the leader changes (observer).
	mu         sync.Mutex
	leaderTick chan struct{}
	closed     bool
	left       chan struct{}
	closeOnce  sync.Once
	stopObs    chan struct{}
}

// Open opens the node's raft database; its replicated records (Records) can be read at once,
// as this node last knew them. Start joins the cluster.
func Open(cfg Config) (*Node, error) {
	cfg.defaults()
	if err := forgetLeft(cfg); err != nil {
		return nil, err
	}
	st, err := raftstore.Open(filepath.Join(cfg.Dir, "log"), raftstore.Options{Log: cfg.Log})
	if err != nil {
		return nil, err
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(filepath.Join(cfg.Dir, "snapshots"), 2, newHCLog(cfg.Log, "raft-snapshots"))
	if err != nil {
		_ = st.Close()
		return nil, fmt.Errorf("cluster: snapshots: %w", err)
	}
	n := &Node{cfg: cfg, log: cfg.Log, store: st, db: st.DB(), snaps: snaps,
		leaderTick: make(chan struct{}), left: make(chan struct{}), stopObs: make(chan struct{})}
	if n.fsm, err = newFSM(st.DB(), cfg.Log, cfg.NodeID); err != nil {
		_ = st.Close()
		return nil, err
	}
	return n, nil
}

// WatchRecords adds fn to those told the namespace of each record a committed write set or
// deleted (from raft's apply goroutine: fn must not block). It may be called at any time, Start
// included.
func (n *Node) WatchRecords(fn func(ns string)) {
	for {
		old := n.fsm.watchers.Load()
		var ws []func(string)
		if old != nil {
			ws = append(ws, *old...)
		}
		ws = append(ws, fn)
		if n.fsm.watchers.CompareAndSwap(old, &ws) {
			return
		}
	}
}

// HasState reports whether this node already belongs to a cluster (it has raft state).
func (n *Node) HasState() (bool, error) {
	return raft.HasExistingState(n.store, n.store, n.snaps)
}

// Start starts raft over the listener and the node links, delivering into core and routing for
// it (the caller also hands the node to the core: broker.SetCluster). A node with raft state
// takes up where it was; one without bootstraps a new cluster when Join is empty, or asks the
// Join addresses for membership, retrying with backoff for up to JoinTimeout, and then waits
// until it has applied the cluster's state.
func (n *Node) Start(core Core, deliver Deliverer) error {
	n.fsm.core = core
	if n.replica != nil {
		n.replica.core, _ = core.(SessionCore)
		n.replica.rep.start()
	}
	existing, err := n.HasState()
	if err != nil {
		return err
	}
	if !existing {
		n.boot.init(n.cfg.NodeID, n.cfg.Advertise, n.cfg.Join)
	}
	n.links = newLinks(n, deliver)
	if n.cfg.Transport != nil {
		n.trans = n.cfg.Transport
		n.mux, err = listen(n, nil)
	} else {
		var layer *streamLayer
		n.mux, err = listen(n, &layer)
		if err == nil {
			n.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
				Stream: layer, MaxPool: 3, Timeout: 10 * time.Second, Logger: newHCLog(n.log, "raft-net")})
		}
	}
	if err != nil {
		return err
	}
	rc := raftConfig(n.cfg.NodeID)
	rc.Logger = newHCLog(n.log, "raft")
	if n.cfg.Tune != nil {
		n.cfg.Tune(rc)
	}
	if snaps, _ := n.snaps.List(); len(snaps) > 0 {
		// The state machine has at least what the last snapshot had (it was synced first).
		n.fsm.setApplied(snaps[0].Index)
	}
	n.r, err = raft.NewRaft(rc, n.fsm, n.store, n.store, n.snaps, n.trans)
	if err != nil {
		n.mux.close()
		return fmt.Errorf("cluster: %w", err)
	}
	n.mux.open()
	n.watchLeader()
	n.links.start()
	switch {
	case existing:
		n.log.Info("cluster: resuming", "node", n.cfg.NodeID)
		// The node takes up its sessions once it reaches a majority, whenever that is.
		go n.comeUp()
		return nil
	case len(n.cfg.Join) == 0:
		err = n.bootstrap()
	default:
		err = n.join()
	}
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.JoinTimeout)
	defer cancel()
	return n.nodeUp(ctx)
}

// bootstrap starts a new cluster of this node alone and commits its seed state.
func (n *Node) bootstrap() error {
	n.log.Info("cluster: starting a new cluster", "node", n.cfg.NodeID, "address", n.cfg.Advertise)
	err := n.r.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{ID: raft.ServerID(n.cfg.NodeID),
		Address: n.raftAddr()}}}).Error()
	if err != nil {
		return fmt.Errorf("cluster: bootstrap: %w", err)
	}
	var seed []byte
	if n.cfg.Seed != nil {
		recs, err := n.cfg.Seed()
		if err != nil {
			return fmt.Errorf("cluster: reading the seed state: %w", err)
		}
		var ret = n.fsm.core.RetainedAll()
		if len(recs) > 0 || len(ret) > 0 {
			seed = append([]byte{cmdSeed}, appendState(nil, state{Records: recs, Retained: ret})...)
			n.log.Info("cluster: the new cluster starts with this node's state", "records", len(recs), "retained", len(ret))
		}
	}
	if seed == nil {
		seed = []byte{cmdNoop}
	}
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.JoinTimeout)
	defer cancel()
	_, err = n.startWrite(ctx, seed)
	return err
}

// startWrite is Write for a node starting (its seed, its catch-up, its sessions taken up): a
// cluster just formed may take longer than leaderWait to show this node its leader on a
// loaded machine, so no leader is waited out until ctx ends rather than refused.
func (n *Node) startWrite(ctx context.Context, cmd []byte) (uint64, error) {
	for {
		idx, err := n.Write(ctx, cmd)
		if !errors.Is(err, ErrNoLeader) || ctx.Err() != nil {
			return idx, err
		}
	}
}

// raftAddr is the address raft knows this node by.
func (n *Node) raftAddr() raft.ServerAddress {
	if n.cfg.Transport != nil {
		return n.cfg.Transport.LocalAddr()
	}
	return raft.ServerAddress(n.cfg.Advertise)
}

// linkAddr is the link address of the node raft knows at a.
func (n *Node) linkAddr(a raft.ServerAddress) string {
	if n.cfg.LinkAddr != nil {
		return n.cfg.LinkAddr(a)
	}
	return string(a)
}

// join asks the Join addresses (and the leaders they name) to add this node, until one does or
// JoinTimeout passes, then waits until this node has applied everything committed before.
func (n *Node) join() error {
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.JoinTimeout)
	defer cancel()
	// A node joining has no say in the cluster's retained messages: what its store kept from
	// an earlier life would never be replaced by a log that does not mention it.
	old := n.fsm.core.RetainedAll()
	if len(old) > 0 {
		n.log.Warn("cluster: joining: dropping this node's own retained messages for the cluster's", "count", len(old))
		if err := n.fsm.core.ReplaceRetained(nil); err != nil {
			return err
		}
	}
	backoff := 200 * time.Millisecond
	targets := append([]string{}, n.cfg.Join...)
	for attempt := 0; ; attempt++ {
		addr := targets[attempt%len(targets)]
		leader, err := n.links.askJoin(ctx, addr)
		if err == nil {
			break
		}
		if leader != "" && leader != addr {
			// Not the leader: ask the one it names next.
			targets = append([]string{leader}, n.cfg.Join...)
			attempt = -1
			continue
		}
		n.boot.answer(err)
		if attempt%len(targets) != len(targets)-1 {
			continue // the rest of this pass first
		}
		if n.boot.elected() {
			// No cluster yet, and a majority of the listed nodes vote for this one (bootstrap.go).
			if len(old) > 0 {
				if err := n.fsm.core.ReplaceRetained(old); err != nil {
					return err
				}
			}
			return n.bootstrap()
		}
		n.log.Info("cluster: joining", "via", addr, "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: could not join through %v within %s: %w", n.cfg.Join, n.cfg.JoinTimeout, err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
	n.log.Info("cluster: joined; catching up", "node", n.cfg.NodeID)
	if _, err := n.startWrite(ctx, []byte{cmdNoop}); err != nil {
		return fmt.Errorf("cluster: joined but could not catch up: %w", err)
	}
	n.log.Info("cluster: caught up", "applied", n.AppliedIndex())
	return nil
}

// watchLeader keeps leaderTick fresh from raft's leader observations.
func (n *Node) watchLeader() {
	ch := make(chan raft.Observation, 16)
	obs := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	n.r.RegisterObserver(obs)
	go func() {
		defer n.r.DeregisterObserver(obs)
		for {
			select {
			case <-ch:
				n.mu.Lock()
				close(n.leaderTick)
				n.leaderTick = make(chan struct{})
				n.mu.Unlock()
				n.links.leaderChanged()
			case <-n.stopObs:
				return
			}
		}
	}()
}

func (n *Node) leaderChange() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.leaderTick
}

// awaitLeader waits for change (a leaderChange taken before the attempt that found no leader it
// could use), for at most 200 ms, since a leader's link may come up without a change; false when
// ctx ends first.
func awaitLeader(ctx context.Context, change <-chan struct{}) bool {
	select {
	case <-change:
	case <-time.After(200 * time.Millisecond):
	case <-ctx.Done():
		return false
	}
	return true
}

// Write commits a command through the leader: here when this node leads, else forwarded over
// the link to the leader. It returns the command's index once this node has applied it too.
//
// A write that finds no leader it can reach waits for one for leaderWait at most and is then
// refused (ErrNoLeader): a node in a minority says no within seconds, not after the whole
// write timeout.
func (n *Node) Write(ctx context.Context, cmd []byte) (uint64, error) {
	var idx uint64
	err := n.throughLeader(ctx, func(leader string) error {
		if leader == "" {
			i, err := n.applyLocal(ctx, cmd)
			if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
				return errAgain
			}
			idx = i
			return err
		}
		i, err := n.links.forwardWrite(ctx, leader, cmd)
		if err != nil {
			if errors.Is(err, errRetry) {
				n.log.Debug("cluster: forwarded write to retry", "leader", leader, "err", err)
			}
			return err
		}
		idx = i
		return n.waitApplied(ctx, i)
	})
	return idx, err
}

// errAgain is what a try of throughLeader returns when this node stopped leading under it: the
// next try goes to the next leader at once.
var errAgain = errors.New("cluster: no longer the leader")

// throughLeader calls try with the leader ("" when this node leads) until it returns anything
// but errRetry (not the leader, or its link is down) or errAgain. With no leader it can reach it
// waits for one (awaitLeader) for leaderWait at most, then gives up with ErrNoLeader.
func (n *Node) throughLeader(ctx context.Context, try func(leader string) error) error {
	var leaderless time.Time
	for {
		if n.isClosed() {
			return ErrClosed
		}
		change := n.leaderChange()
		err := errRetry
		if n.r.State() == raft.Leader {
			err = try("")
		} else if _, id := n.r.LeaderWithID(); id != "" {
			err = try(string(id))
		}
		switch {
		case errors.Is(err, errAgain):
			continue
		case !errors.Is(err, errRetry):
			return err
		}
		// No leader (or it moved, or its link is down): wait for the next one, or give up.
		if leaderless.IsZero() {
			leaderless = time.Now()
		} else if time.Since(leaderless) >= leaderWait {
			return ErrNoLeader
		}
		if !awaitLeader(ctx, change) {
			return ErrNoLeader
		}
	}
}

// applyLocal applies cmd as the leader and returns its index once applied here.
func (n *Node) applyLocal(ctx context.Context, cmd []byte) (uint64, error) {
	timeout := n.cfg.WriteTimeout
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	if timeout <= 0 {
		return 0, ErrNoLeader
	}
	return applyResult(n.r.Apply(cmd, timeout))
}

// waitApplied waits until this node's state machine has applied index i (raft's own applied
// index moves when an entry is handed to the state machine, before it is applied).
func (n *Node) waitApplied(ctx context.Context, i uint64) error {
	for {
		applied, tick := n.fsm.progress()
		if applied >= i {
			return nil
		}
		if h := n.fsm.waiting.Load(); h != nil {
			(*h)()
		}
		select {
		case <-tick:
		case <-ctx.Done():
			return fmt.Errorf("cluster: committed as %d but not yet applied on this node (at %d): %w", i, applied, ctx.Err())
		}
	}
}

// AppliedIndex is the last log index this node has applied.
func (n *Node) AppliedIndex() uint64 { return n.r.AppliedIndex() }

// IsLeader reports whether this node leads the cluster now.
func (n *Node) IsLeader() bool { return n.r != nil && n.r.State() == raft.Leader }

// Leader returns the current leader's node id ("" while there is none).
func (n *Node) Leader() string {
	_, id := n.r.LeaderWithID()
	return string(id)
}

// members returns the current configuration's servers.
func (n *Node) members() []raft.Server {
	f := n.r.GetConfiguration()
	if f.Error() != nil {
		return nil
	}
	return f.Configuration().Servers
}

// isMember reports whether id is in the configuration as this node knows it.
func (n *Node) isMember(id string) bool {
	for _, s := range n.members() {
		if string(s.ID) == id {
			return true
		}
	}
	return false
}

// addVoter adds (or re-addresses) a node; only the leader can.
func (n *Node) addVoter(id string, addr raft.ServerAddress) (uint64, error) {
	for _, s := range n.members() {
		if string(s.ID) == id && s.Address == addr {
			return n.r.AppliedIndex(), nil
		}
	}
	f := n.r.AddVoter(raft.ServerID(id), addr, 0, n.cfg.WriteTimeout)
	if err := f.Error(); err != nil {
		return 0, err
	}
	n.log.Info("cluster: node added", "node", id, "address", addr)
	return f.Index(), nil
}

// removeServer removes a node; only the leader can.
func (n *Node) removeServer(id string) (uint64, error) {
	if !n.isMember(id) {
		return n.r.AppliedIndex(), nil
	}
	f := n.r.RemoveServer(raft.ServerID(id), 0, n.cfg.WriteTimeout)
	if err := f.Error(); err != nil {
		return 0, err
	}
	n.log.Info("cluster: node removed", "node", id)
	return f.Index(), nil
}

// Leave removes this node from the cluster (a leader hands its leadership over first) and stops
// its raft; Left is closed after. The rest of the cluster carries on without it.
func (n *Node) Leave(ctx context.Context) error {
	if n.IsLeader() {
		if len(n.members()) > 1 {
			if err := n.r.LeadershipTransfer().Error(); err != nil {
				return fmt.Errorf("cluster: handing leadership over: %w", err)
			}
		} else {
			return errors.New("cluster: the last node cannot leave its cluster")
		}
	}
	for {
		change := n.leaderChange()
		_, id := n.r.LeaderWithID()
		if id != "" && string(id) != n.cfg.NodeID {
			err := n.links.forwardLeave(ctx, string(id))
			if err == nil {
				break
			}
			if !errors.Is(err, errRetry) {
				return err
			}
		}
		if !awaitLeader(ctx, change) {
			return ErrNoLeader
		}
	}
	n.log.Info("cluster: left the cluster", "node", n.cfg.NodeID)
	if err := markLeft(n.cfg.Dir); err != nil {
		n.log.Warn("cluster: left, but could not note it: remove the raft directory before rejoining", "err", err)
	}
	n.closeOnce.Do(func() { close(n.left) })
	return nil
}

// Left is closed once this node has left the cluster.
func (n *Node) Left() <-chan struct{} { return n.left }

func (n *Node) isClosed() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.closed
}

// Close stops raft and the links and closes the raft database. The node stays a member: a
// restart takes up where it was.
func (n *Node) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	n.mu.Unlock()
	var errs []error
	if n.replica != nil {
		n.replica.rep.close()
	}
	if n.r != nil {
		close(n.stopObs)
		errs = append(errs, n.r.Shutdown().Error())
	}
	if n.links != nil {
		n.links.close()
	}
	if n.mux != nil {
		n.mux.close()
	}
	if c, ok := n.trans.(interface{ Close() error }); ok && n.cfg.Transport == nil {
		errs = append(errs, c.Close())
	}
	errs = append(errs, n.fsm.sync(), n.store.Close())
	return errors.Join(errs...)
}
