package broker

import (
	"slices"
	"sync"

	"github.com/ternmq/tern/internal/message"
	"github.com/ternmq/tern/internal/store"
)

// A cluster node's core routes every message it accepts to its own sessions and hands it to the
// cluster (internal/cluster), which sends it once to each other node whose sessions subscribe
// to a matching filter; there the message enters through DeliverRemote and is delivered to that
// node's sessions only, never forwarded again (one hop). Retained messages are replicated: a
// retained publish goes to the cluster's log (Cluster.Retain), and every node, this one
// included, applies it through ApplyRetained once the log has committed it.

// Cluster is what the core of a cluster node asks of the cluster (SetCluster).
type Cluster interface {
	// Route sends m, just accepted here, to the other nodes whose interest matches its topic.
	// local names the shared groups ("group/filter") matching it that have members on this
	// node; Route decides which node serves each group (one node per message, round robin
	// among the nodes with members) and returns those left to this node. m is borrowed for the
	// call.
	Route(m *message.Message, answerable bool, local []string) Routed
	// Retain commits the retained message of m's topic (an empty payload clears it) to the
	// cluster's log. The ticket completes once it is committed; m is borrowed for the call.
	Retain(m *message.Message) *Ticket
}

// Routed is what Cluster.Route did with a message.
type Routed struct {
	// Nodes counts the other nodes the message was sent to.
	Nodes int
	// Serve lists the shared groups of Route's local that this node serves.
	Serve []string
	// Accepted completes once every node sent a QoS 1/2 copy has accepted it (its own
	// durability promise); nil when there is nothing to wait for.
	Accepted *Ticket
	// Wait, when not nil, is closed when a congested node link has room again
	// (PublishResult.Backpressure).
	Wait <-chan struct{}
}

// SetCluster makes this core a cluster node. Call it before any client connects.
func (b *Broker) SetCluster(c Cluster) { b.cluster = c }

// sharedKey names a shared group for the cluster: "group/filter".
func sharedKey(group, filter string) string { return group + "/" + filter }

// routeCluster routes p locally and, on a cluster node, to the other nodes. A message that
// came from another node (p.groups set) is routed here only.
func (b *Broker) routeCluster(p *publication, from *Session) (outcome, Routed) {
	if p.remote {
		return b.route(p, from), Routed{}
	}
	if b.cluster == nil {
		return b.route(p, from), Routed{}
	}
	var local []string
	res := b.index.Match(p.msg.Topic)
	for _, g := range res.Shared {
		if len(g.Members) > 0 {
			local = append(local, sharedKey(g.Name, g.Filter))
		}
	}
	r := b.cluster.Route(p.msg, p.answerable, local)
	if len(local) > 0 {
		// Groups served elsewhere are left out here; p.groups lists the ones this node serves.
		p.groups = r.Serve
		p.groupsSet = true
	}
	return b.route(p, from), r
}

// serves reports whether this node delivers to shared group g for p.
func (p *publication) serves(group, filter string) bool {
	if !p.groupsSet {
		return true
	}
	return slices.Contains(p.groups, sharedKey(group, filter))
}

// DeliverRemote delivers a message another node of the cluster forwarded, to this node's
// sessions only: every matching plain subscription, and the shared groups listed in groups (the
// origin chose this node for them). The origin checked the publisher's grants and stamped the
// message; it keeps its time, expiry and sender, and gets an id of this node's. Calls reach
// connected services only, and with none the caller is answered "no responders" from here.
// answerable is what the origin decided for a call (replyGranted). m is borrowed for the call.
func (b *Broker) DeliverRemote(m *message.Message, answerable bool, groups []string) PublishResult {
	if m.QoS > b.cfg.MaxQoS {
		m.QoS = b.cfg.MaxQoS
	}
	m.ID = b.nextID.Add(1)
	b.stats.Received.Add(1)
	p := publication{msg: m, at: b.now(), call: IsCall(m), answerable: answerable, remote: true,
		groups: groups, groupsSet: true}
	o := b.route(&p, nil)
	if p.call && o.online == 0 {
		b.failCall(m.Props.ResponseTopic, m.Props.CorrelationData, ErrNoResponders.Error())
	}
	res := PublishResult{Matched: o.matched, Backpressure: o.wait}
	if o.stored && m.QoS > 0 {
		res.Durable = b.store.Sync()
	}
	if o.err != nil && m.QoS > 0 {
		// A copy that could not be kept (a full queue that refuses, a store failure, a session
		// that moved away meanwhile) fails the origin's acceptance, so its publisher is not told
		// the message is safe.
		failed := store.NewTicket()
		failed.Complete(o.err)
		res.Durable = joinTickets(res.Durable, failed)
	}
	return res
}

// ApplyRetained sets (or, with an empty payload, clears) the retained message of m's topic, as
// the cluster's log committed it. It keeps m, and gives it an id of this node's: ids are unique
// per node only, and a store keeps bodies shared between queues by id.
func (b *Broker) ApplyRetained(m *message.Message) error {
	m.ID = b.nextID.Add(1)
	if len(m.Payload) == 0 {
		if !b.retained.delete(m.Topic) {
			return nil
		}
		b.stats.Retained.Add(-1)
		if err := b.store.Retained().Delete(m.Topic); err != nil {
			return b.storeFailed("deleting a retained message", err)
		}
		return nil
	}
	if b.retained.set(m) {
		b.stats.Retained.Add(1)
	}
	if err := b.store.Retained().Set(m); err != nil {
		return b.storeFailed("storing a retained message", err)
	}
	return nil
}

// RetainedAll returns every retained message (the cluster's snapshot of them).
func (b *Broker) RetainedAll() []*message.Message { return b.retained.all() }

// all returns every retained message, $-topics included.
func (r *retainedIndex) all() []*message.Message {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []*message.Message
	collect(&r.root, false, &out)
	return out
}

// ReplaceRetained makes ms the whole set of retained messages (a cluster snapshot restored),
// and waits until the store has it on disk.
func (b *Broker) ReplaceRetained(ms []*message.Message) error {
	keep := make(map[string]bool, len(ms))
	for _, m := range ms {
		keep[m.Topic] = true
	}
	for _, old := range b.retained.all() {
		if !keep[old.Topic] {
			if err := b.ApplyRetained(&message.Message{Topic: old.Topic}); err != nil {
				return err
			}
		}
	}
	for _, m := range ms {
		if err := b.ApplyRetained(m); err != nil {
			return err
		}
	}
	return b.SyncStore()
}

// SyncStore waits until every write made so far is on disk.
func (b *Broker) SyncStore() error { return b.store.Sync().Wait() }

// joinTickets returns a ticket that completes when both have, with the first error.
func joinTickets(a, c *Ticket) *Ticket {
	if a == nil {
		return c
	}
	if c == nil {
		return a
	}
	t := store.NewTicket()
	var mu sync.Mutex
	left := 2
	var first error
	done := func(err error) {
		mu.Lock()
		if first == nil {
			first = err
		}
		left--
		fin, e := left == 0, first
		mu.Unlock()
		if fin {
			t.Complete(e)
		}
	}
	a.Then(done)
	c.Then(done)
	return t
}
