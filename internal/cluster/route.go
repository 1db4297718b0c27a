package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/message"
	"github.com/ternmq/tern/internal/store"
	"github.com/ternmq/tern/internal/topic"
)

var _ broker.Cluster = (*Node)(nil)

// acceptance completes a publisher's ticket once every node sent a QoS 1/2 copy has answered.
type acceptance struct {
	mu   sync.Mutex
	left int
	err  error
	t    *store.Ticket
}

func (a *acceptance) add() {
	a.mu.Lock()
	a.left++
	a.mu.Unlock()
}

func (a *acceptance) done(err error) {
	a.mu.Lock()
	if a.err == nil {
		a.err = err
	}
	a.left--
	fin, e := a.left == 0, a.err
	a.mu.Unlock()
	if fin {
		a.t.Complete(e)
	}
}

// target is one node a message goes to, with the shared groups it serves.
type target struct {
	o      *outLink
	groups []string
	// durable: persistent sessions there match (the directory says so), so a QoS 1/2 message
	// not sent is refused, not dropped.
	durable bool
}

// errUnreachable fails a QoS 1/2 message that persistent sessions on an unreachable node match:
// no copy of it can be made durable for them until their node is back or the cluster has given
// them to another node (adopt.go), so its publisher is not told it is safe.
var errUnreachable = errors.New("cluster: a node holding sessions this message is for cannot be reached")

// Wants reports whether another node's interest, as its link or the session directory has it,
// matches topic: whether Route would send a message on it anywhere.
func (n *Node) Wants(topic string) bool {
	return !n.links.index.Match(topic).Empty() || !n.fsm.dir.index.Match(topic).Empty()
}

// Route implements broker.Cluster: m goes once to each node whose interest matches, each shared
// group to one node with members (round robin over the nodes, this one included, whose links
// are up). Interest is what the nodes said over their links, and, for persistent sessions, what
// the session directory says (directory.go): that a session moved to a node is known from the
// log before the node could say so. Each message carries the index this node had applied, so the
// receiving node delivers it only once it has applied as much (and holds the sessions the
// message was sent there for); one that has let such a session go since refuses a QoS 1/2
// message (released.go).
func (n *Node) Route(m *message.Message, answerable bool, local []string) broker.Routed {
	l := n.links
	res := l.index.Match(m.Topic)
	dres := n.fsm.dir.index.Match(m.Topic)
	if res.Empty() && dres.Empty() {
		return broker.Routed{Serve: local}
	}
	// The index the message carries covers what the directory showed: the directory changes
	// while a command is applied, before the applied index moves, and a node it sends to must
	// hold the sessions the directory named it for (sessions.go).
	cur := n.fsm.appliedIndex()
	applied := max(cur, n.fsm.dir.at.Load())
	self := n.cfg.NodeID
	var refused error
	if cur < n.fsm.handover.Load() && namesSelf(dres, self) {
		// The directory may name this node for a session its core takes up only once the
		// command is applied; the core matches the message after Route returns.
		if err := n.handedOver(); err != nil && m.QoS > 0 {
			refused = err
		}
	}
	var targets []target
	var down []string // nodes skipped, so each counts once
	unreachable := false
	add := func(id string, group string, durable bool) {
		if id == self {
			return
		}
		for i := range targets {
			if targets[i].o.p.id == id {
				if group != "" {
					targets[i].groups = append(targets[i].groups, group)
				}
				targets[i].durable = targets[i].durable || durable
				return
			}
		}
		o := l.up(id)
		if o == nil {
			if durable && m.QoS > 0 {
				unreachable = true
			}
			if !slices.Contains(down, id) {
				down = append(down, id)
				l.stats.Dropped.Add(1)
			}
			return
		}
		t := target{o: o, durable: durable}
		if group != "" {
			t.groups = []string{group}
		}
		targets = append(targets, t)
	}
	for i, e := range res.Entries {
		if i == 0 || res.Entries[i-1].Key != e.Key {
			add(e.Key, "", false)
		}
	}
	for i, e := range dres.Entries {
		if i == 0 || dres.Entries[i-1].Key != e.Key {
			add(e.Key, "", true)
		}
	}
	var serve []string
	var remote []string
	group := func(key string, members []string, durableDown bool) {
		remote = append(remote, key)
		var cands []string
		for _, id := range members {
			if id != self && l.up(id) != nil && !slices.Contains(cands, id) {
				cands = append(cands, id)
			}
		}
		here := slices.Contains(local, key)
		k := len(cands)
		if here {
			k++
		}
		if k == 0 {
			if durableDown && m.QoS > 0 {
				unreachable = true
			}
			return
		}
		i := int(l.turn(key) % uint64(k))
		if i == len(cands) {
			serve = append(serve, key)
			return
		}
		add(cands[i], key, false)
	}
	for _, key := range sharedKeys(res.Shared, dres.Shared) {
		var members []string
		durableDown := false
		for _, g := range res.Shared {
			if g.Name+"/"+g.Filter == key {
				for _, e := range g.Members {
					members = append(members, e.Key)
				}
			}
		}
		for _, g := range dres.Shared {
			if g.Name+"/"+g.Filter == key {
				for _, e := range g.Members {
					members = append(members, e.Key)
					durableDown = durableDown || e.Key != self && l.up(e.Key) == nil
				}
			}
		}
		group(key, members, durableDown)
	}
	for _, key := range local {
		if !slices.Contains(remote, key) {
			serve = append(serve, key)
		}
	}
	out := broker.Routed{Serve: serve}
	var acc *acceptance
	if m.QoS > 0 && (len(targets) > 0 || unreachable || refused != nil) {
		acc = &acceptance{left: 1, t: store.NewTicket()}
		switch {
		case unreachable:
			l.stats.Failed.Add(1)
			acc.err = errUnreachable
		case refused != nil:
			l.stats.Failed.Add(1)
			acc.err = refused
		}
	}
	if m.Props.ResponseTopic != "" && len(targets) > 0 {
		// A request: its answer must find this node's interest (interest_order.go).
		need := l.order.gen.Load()
		for _, t := range targets {
			l.awaitInterest(t.o, need)
		}
	}
	for _, t := range targets {
		// Remembered before it is sent, so an answer cannot overtake it (services_calls.go).
		call := l.calls.sent(t.o.p.id, m)
		if wait, ok := t.o.sendMsg(m, answerable, t.groups, acc, applied); ok {
			out.Nodes++
			l.stats.Forwarded.Add(1)
			if out.Wait == nil {
				out.Wait = wait
			}
		} else {
			// The link was ending: up a moment ago, as a dead node's behind a proxy is after
			// each dial.
			l.stats.Dropped.Add(1)
			if call {
				l.calls.forget(t.o.p.id, m)
			}
			if t.durable && acc != nil {
				l.stats.Failed.Add(1)
				acc.mu.Lock()
				if acc.err == nil {
					acc.err = errUnreachable
				}
				acc.mu.Unlock()
			}
		}
	}
	if acc != nil {
		out.Accepted = acc.t
		acc.done(nil) // the guard: complete once every copy answered
	}
	return out
}

// namesSelf reports whether the directory's match names the node self (its persistent
// sessions, alone or in shared groups).
func namesSelf(dres *topic.Result[string, struct{}], self string) bool {
	for _, e := range dres.Entries {
		if e.Key == self {
			return true
		}
	}
	for _, g := range dres.Shared {
		for _, e := range g.Members {
			if e.Key == self {
				return true
			}
		}
	}
	return false
}

// handedOver waits (at most barrierWait) until this node's core holds the sessions the log has
// given it: a command that gives it one shows it in the directory before the core takes it up
// (fsm.handover). Normally there is nothing to wait for.
func (n *Node) handedOver() error {
	if n.fsm.appliedIndex() >= n.fsm.handover.Load() {
		return nil
	}
	if err := n.caughtUp(n.fsm.handover.Load()); err != nil {
		return fmt.Errorf("cluster: a session is being handed to this node: %w", err)
	}
	return nil
}

// sharedKeys lists the distinct shared groups ("group/filter") of two match results.
func sharedKeys(a, b []*topic.Group[string, struct{}]) []string {
	var keys []string
	for _, gs := range [][]*topic.Group[string, struct{}]{a, b} {
		for _, g := range gs {
			if len(g.Members) == 0 {
				continue
			}
			if k := g.Name + "/" + g.Filter; !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
	}
	return keys
}

// downFor is how long the link to a node has been down (0 while up; a node this one has no
// link to at all counts as down for ever).
func (l *links) downFor(id string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	p := l.peers[id]
	switch {
	case p == nil:
		return time.Duration(1<<63 - 1)
	case p.down.IsZero():
		return 0
	}
	return time.Since(p.down)
}

// up returns the outgoing link to a node when it is up.
func (l *links) up(id string) *outLink {
	l.mu.Lock()
	p := l.peers[id]
	l.mu.Unlock()
	if p == nil {
		return nil
	}
	return p.out.Load()
}

// turn advances a shared group's round robin.
func (l *links) turn(key string) uint64 {
	l.mu.Lock()
	c := l.turns[key]
	if c == nil {
		if len(l.turns) > 100000 {
			clear(l.turns) // bounded: groups come and go
		}
		c = new(atomic.Uint64)
		l.turns[key] = c
	}
	l.mu.Unlock()
	return c.Add(1) - 1
}

// sendMsg queues a message on the link. A QoS 0 message is dropped when the link is full; a
// QoS 1/2 one is counted in acc. wait is the link's Drained channel when it is congested.
func (o *outLink) sendMsg(m *message.Message, answerable bool, groups []string, acc *acceptance, applied uint64) (wait <-chan struct{}, ok bool) {
	o.Lock()
	if o.EndingLocked() || (m.QoS == 0 && o.FullLocked()) {
		o.Unlock()
		return nil, false
	}
	var seq uint64
	if m.QoS > 0 && acc != nil {
		o.seq++
		seq = o.seq
		acc.add()
		o.pending[seq] = acc
	}
	o.CommitLocked(appendMsg(o.BufLocked(), seq, answerable, groups, applied, m), nil)
	congested := o.CongestedLocked()
	o.Unlock()
	if congested {
		return o.Drained(), true
	}
	return nil, true
}

// Retain implements broker.Cluster: the retained message goes to the log, committed by the
// leader; every node applies it.
func (n *Node) Retain(m *message.Message) *store.Ticket {
	cmd := encodeRetain(m)
	t := store.NewTicket()
	select {
	case n.links.retains <- struct{}{}:
	default:
		t.Complete(fmt.Errorf("cluster: %d retained messages already wait for the log", maxRetains))
		return t
	}
	go func() {
		defer func() { <-n.links.retains }()
		ctx, cancel := context.WithTimeout(context.Background(), n.cfg.WriteTimeout)
		defer cancel()
		_, err := n.Write(ctx, cmd)
		if err != nil {
			n.log.Warn("cluster: a retained message was not replicated", "topic", m.Topic, "err", err)
		}
		t.Complete(err)
	}()
	return t
}
