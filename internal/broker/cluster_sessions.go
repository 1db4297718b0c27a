package broker

import (
	"context"
	"errors"
	"strings"

	"github.com/ternmq/tern/internal/store"
)

// Sessions on a cluster node. A client id is unique in the whole cluster: the cluster keeps a
// directory of which node holds each one (SessionDirectory), and a connect claims its client id
// there before it goes on. When the session was held by another node, that node lets it go
// (ReleaseSession: its connection is closed as taken over) and this one takes it up from the
// replicated store (AdoptSession) before Claim returns, so the connect finds it here, offline,
// with its subscriptions, queue and messages in flight. A persistent session's state lives in a
// store the cluster replicates (the store the core is given), so any node can take it up.
//
// The broker's own sessions ($-prefixed: uplinks, relays, node links) and those with an id the
// broker assigned are not in the directory, with one exception: a webhook's session
// (HookSessionPrefix) is, so that its queue is replicated and moves to a live node when its own
// dies, like a client's.

// HookSessionPrefix begins the client ids of webhooks' sessions.
const HookSessionPrefix = "$webhook-"

// InDirectory reports whether a session with this client id is kept in the cluster's session
// directory and replicated: every client's, and the webhooks'.
func InDirectory(clientID string) bool {
	return !strings.HasPrefix(clientID, "$") || strings.HasPrefix(clientID, HookSessionPrefix)
}

// SessionDirectory is what a cluster node that keeps the session directory offers the core; a
// Cluster that implements it is used for it (SetCluster).
type SessionDirectory interface {
	// Claim records this node as the holder of clientID's session, for identity, and returns once
	// the node has applied it: a node that held it has let it go and, unless clean, the session
	// is here. exclusive refuses (ErrClientIDInUse) while a connection holds it elsewhere. It
	// fails when the claim cannot be committed (no leader reachable).
	Claim(ctx context.Context, clientID, identity string, clean, exclusive bool) error
	// Forget removes clientID from the directory: its session ended on this node.
	Forget(clientID string)
}

// directory returns the cluster's session directory, nil when there is none.
func (b *Broker) directory() SessionDirectory {
	d, _ := b.cluster.(SessionDirectory)
	return d
}

// registered reports whether a session is in the cluster's directory.
func registered(res ConnectResult) bool {
	return !res.AssignedID && InDirectory(res.ClientID)
}

// claimCluster claims a connecting client's id in the cluster's directory.
func (b *Broker) claimCluster(ctx context.Context, req ConnectRequest, res ConnectResult) error {
	d := b.directory()
	if d == nil || !registered(res) {
		return nil
	}
	identity := ""
	if res.Principal != nil {
		identity = res.Principal.Identity
	}
	if err := d.Claim(ctx, res.ClientID, identity, req.CleanStart, req.Exclusive); err != nil {
		if errors.Is(err, ErrClientIDInUse) {
			b.stats.RefusedClientID.Add(1)
			return err
		}
		return storageError(err)
	}
	return nil
}

// endLocked ends a session for good (its client left with no expiry, or the expiry passed):
// it is discarded and leaves the cluster's directory. The caller holds b.mu and s.mu.
func (b *Broker) endLocked(s *Session) {
	b.discardLocked(s)
	if d := b.directory(); d != nil && InDirectory(s.id) {
		d.Forget(s.id)
	}
}

// AdoptSession takes up a session the cluster moved to this node, offline, from the record and
// the state the store holds for it (subscriptions, queue, messages in flight, will): as a
// restart recovers sessions. A will that is due is published. A session of the same id here is
// let go first.
func (b *Broker) AdoptSession(rec store.SessionRecord) error {
	b.ReleaseSession(rec.ClientID)
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return ErrServerShuttingDown
	}
	s, w, err := b.recoverSession(rec, b.now())
	b.mu.Unlock()
	if err != nil {
		return err
	}
	if w != nil {
		// Not from the caller's goroutine: publishing may wait on the cluster.
		go func() {
			b.publishWill(w)
			s.mu.Lock()
			s.saveLocked()
			s.mu.Unlock()
		}()
	}
	return nil
}

// ReleaseSession lets a session go that the cluster moved to another node: its connection is
// closed as taken over and its subscriptions leave this node, but nothing is deleted from the
// store (the other node carries on with the session). Its will goes with it: the node that takes
// it up publishes it when it is due.
func (b *Broker) ReleaseSession(clientID string) {
	b.mu.Lock()
	s := b.sessions[clientID]
	if s == nil {
		b.mu.Unlock()
		return
	}
	s.mu.Lock()
	var (
		sink      Sink
		takenOver *string
		orphaned  []pendingCall
	)
	if s.sink != nil {
		sink = s.sink
		if s.announced {
			id := s.identity
			takenOver = &id
		}
		s.detach()
		orphaned = s.takeCalls()
	}
	if s.rare != nil {
		s.rare.pendingWill = nil
	}
	s.stopTimers()
	for sub := range s.subs.all() {
		b.indexRemove(sub.filter(), s)
	}
	b.stats.Subscriptions.Add(-int64(s.subs.len()))
	s.subs.clear()
	b.stats.Queued.Add(-int64(s.queue.Len()))
	s.deleted = true
	s.gen++
	delete(b.sessions, clientID)
	b.stats.Sessions.Add(-1)
	s.mu.Unlock()
	b.mu.Unlock()
	if sink != nil {
		sink.Close(ErrSessionTakenOver)
	}
	if takenOver != nil {
		b.announce(EventsPrefix+"disconnected", func() map[string]any {
			return map[string]any{"client_id": clientID, "identity": *takenOver, "reason": "session_taken_over"}
		})
	}
	b.failCalls(orphaned, "service disconnected")
}

// SessionIDs lists the client ids of the sessions this core holds.
func (b *Broker) SessionIDs() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]string, 0, len(b.sessions))
	for id := range b.sessions {
		out = append(out, id)
	}
	return out
}
