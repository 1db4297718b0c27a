package cluster

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/message"
	"github.com/ternmq/tern/internal/store"
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
}

// Route implements broker.Cluster: m goes once to each node whose interest matches, each shared
// group to one node with members (round robin over the nodes, this one included, whose links
// are up).
func (n *Node) Route(m *message.Message, answerable bool, local []string) broker.Routed {
	l := n.links
	res := l.index.Match(m.Topic)
	if len(res.Entries) == 0 && len(res.Shared) == 0 {
		return broker.Routed{Serve: local}
	}
	var targets []target
	add := func(id string, group string) {
		for i := range targets {
			if targets[i].o.p.id == id {
				if group != "" {
					targets[i].groups = append(targets[i].groups, group)
				}
				return
			}
		}
		o := l.up(id)
		if o == nil {
			l.stats.Dropped.Add(1)
			return
		}
		t := target{o: o}
		if group != "" {
			t.groups = []string{group}
		}
		targets = append(targets, t)
	}
	for i, e := range res.Entries {
		if i == 0 || res.Entries[i-1].Key != e.Key {
			add(e.Key, "")
		}
	}
	var serve []string
	var remote []string
	for _, g := range res.Shared {
		key := g.Name + "/" + g.Filter
		remote = append(remote, key)
		var cands []string
		for _, e := range g.Members {
			if l.up(e.Key) != nil && !slices.Contains(cands, e.Key) {
				cands = append(cands, e.Key)
			}
		}
		here := slices.Contains(local, key)
		k := len(cands)
		if here {
			k++
		}
		if k == 0 {
			continue
		}
		i := int(l.turn(key) % uint64(k))
		if i == len(cands) {
			serve = append(serve, key)
			continue
		}
		add(cands[i], key)
	}
	for _, key := range local {
		if !slices.Contains(remote, key) {
			serve = append(serve, key)
		}
	}
	out := broker.Routed{Serve: serve}
	var acc *acceptance
	if m.QoS > 0 && len(targets) > 0 {
		acc = &acceptance{left: 1, t: store.NewTicket()}
	}
	for _, t := range targets {
		if wait, ok := t.o.sendMsg(m, answerable, t.groups, acc); ok {
			out.Nodes++
			l.stats.Forwarded.Add(1)
			if out.Wait == nil {
				out.Wait = wait
			}
		} else {
			l.stats.Dropped.Add(1)
		}
	}
	if acc != nil {
		out.Accepted = acc.t
		acc.done(nil) // the guard: complete once every copy answered
	}
	return out
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
func (o *outLink) sendMsg(m *message.Message, answerable bool, groups []string, acc *acceptance) (wait <-chan struct{}, ok bool) {
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
	o.CommitLocked(appendMsg(o.BufLocked(), seq, answerable, groups, m), nil)
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
