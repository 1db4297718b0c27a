package broker

import (
	"cmp"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/message"
	"github.com/ternmq/tern/internal/topic"
)

// Publish routes a message from this client if its grants and limits allow. The message is
// borrowed for the call (see message.Message); the core stamps its id, time and sender.
func (c *Client) Publish(m *message.Message) (PublishResult, error) {
	principal := c.principal
	if c.s.isPendingReply(m) {
		// A service may answer a call it was given on the caller's response topic, which the
		// caller was allowed to use (replyGranted), once and not retained.
		principal = auth.Unrestricted(c.Identity())
	}
	checked := principal
	if c.peer && m.Topic == QueryProcedure {
		// A peer router may ask the query procedure without a call grant: the query itself is
		// checked against its route grant on the filter (Query).
		checked = auth.Unrestricted(c.Identity())
	}
	wait, err := c.s.b.checkPublish(checked, auth.Publish, c.ClientID(), c.rate, m)
	if err != nil {
		return PublishResult{}, err
	}
	c.s.answered(m)
	answerable := IsCall(m) && replyGranted(c.principal, c.ClientID(), m.Props.ResponseTopic)
	res, err := c.s.b.publishChecked(c.s, principal, m, answerable, c.batch)
	res.Throttle = wait
	return res, err
}

// Request publishes a request expecting a reply on the client's response topic: it needs the call
// grant on the topic (as a publish to $rpc/... does), not the publish grant.
func (c *Client) Request(m *message.Message) (PublishResult, error) {
	wait, err := c.s.b.checkPublish(c.principal, auth.Call, c.ClientID(), c.rate, m)
	if err != nil {
		return PublishResult{}, err
	}
	res, err := c.s.b.publishChecked(c.s, c.principal, m, replyGranted(c.principal, c.ClientID(), m.Props.ResponseTopic), c.batch)
	res.Throttle = wait
	return res, err
}

// PublishExactlyOnce routes a QoS 2 message unless its packet id is still awaiting release from an
// earlier send, in which case it is a duplicate and is not routed again.
func (c *Client) PublishExactlyOnce(packetID uint16, m *message.Message) (PublishResult, error) {
	if !c.lock() {
		return PublishResult{}, ErrSessionTakenOver
	}
	_, dup := c.s.incomingLocked()[packetID]
	c.s.mu.Unlock()
	if dup {
		// Checked and counted when it first came.
		return PublishResult{Duplicate: true}, nil
	}
	res, err := c.Publish(m)
	if err != nil {
		return res, err
	}
	if c.lock() {
		s := c.s
		r := s.extra()
		if r.incoming == nil {
			r.incoming = map[uint16]struct{}{}
		}
		r.incoming[packetID] = struct{}{}
		if r.inflightStore != nil {
			if err := r.inflightStore.AddIncoming(packetID); err != nil {
				err = s.b.storeFailed("recording an exactly-once publish", err)
				s.mu.Unlock()
				return res, err
			}
			// The PUBREC must wait until the packet id is on disk too, or a crash could route the
			// resent publish a second time.
			res.Durable = c.s.b.store.Sync()
		}
		s.mu.Unlock()
	}
	return res, nil
}

// Release completes an exactly-once publish (MQTT PUBREL); it reports whether the id was pending.
func (c *Client) Release(packetID uint16) bool {
	if !c.lock() {
		return false
	}
	defer c.s.mu.Unlock()
	s := c.s
	_, ok := s.incomingLocked()[packetID]
	if !ok {
		return false
	}
	delete(s.rare.incoming, packetID)
	if st := s.rare.inflightStore; st != nil {
		if err := st.DeleteIncoming(packetID); err != nil {
			s.b.storeFailed("releasing an exactly-once publish", err)
		}
	}
	return ok
}

// PendingReleases is how many exactly-once publishes await release (flow control counts them).
func (c *Client) PendingReleases() int {
	if !c.lock() {
		return 0
	}
	defer c.s.mu.Unlock()
	return len(c.s.incomingLocked())
}

// publish validates, stamps and routes a will; clients' messages go through checkPublish and
// then publishChecked.
func (b *Broker) publish(from *Session, m *message.Message) (PublishResult, error) {
	b.stats.Received.Add(1)
	return b.publishOwn(m)
}

// publishOwn routes what the broker itself says (server events, answers of its procedures, call
// failures): not counted as received, since no client sent it.
func (b *Broker) publishOwn(m *message.Message) (PublishResult, error) {
	if err := topic.ValidName(m.Topic); err != nil {
		return PublishResult{}, ErrTopicInvalid
	}
	return b.publishChecked(nil, auth.Unrestricted(""), m, false, nil)
}

// publishChecked stamps and routes m, whose topic checkPublish (or publish) validated; from is
// the publishing session, nil for sources without one, and caller its principal. answerable: m is
// a call whose services may answer without grants of their own (replyGranted). batch is the
// publishing connection's, if it has one.
func (b *Broker) publishChecked(from *Session, caller *auth.Principal, m *message.Message, answerable bool, batch *Batch) (PublishResult, error) {
	if m.QoS > b.cfg.MaxQoS {
		m.QoS = b.cfg.MaxQoS
	}
	t := b.now()
	m.ID = b.nextID.Add(1)
	m.Time = t
	stampExpiry(m, t)
	p := publication{msg: m, at: t, call: IsCall(m), answerable: answerable, batch: batch}
	if p.call && m.Topic == ServicesProcedure {
		return b.answerServices(m), nil
	}
	if p.call && m.Topic == QueryProcedure {
		return b.answerQuery(m, caller), nil
	}
	var retainErr error
	retained := false
	var replicated *Ticket
	if m.Retain {
		if !b.cfg.RetainAvailable {
			return PublishResult{}, ErrRetainNotSupported
		}
		if b.cluster != nil {
			// Every node, this one included, applies it once the cluster's log has it.
			replicated = b.cluster.Retain(m)
		} else {
			retained, retainErr = b.retain(&p)
		}
	}
	o, r := b.routeCluster(&p, from)
	if p.call && o.online == 0 && r.Nodes == 0 {
		b.failCall(m.Props.ResponseTopic, m.Props.CorrelationData, ErrNoResponders.Error())
		return PublishResult{}, ErrNoResponders
	}
	res := PublishResult{Matched: o.matched + r.Nodes, Backpressure: cmp.Or(o.wait, r.Wait)}
	if (o.stored || retained) && m.QoS > 0 {
		res.Durable = b.store.Sync()
	}
	if m.QoS > 0 {
		res.Durable = joinTickets(joinTickets(res.Durable, r.Accepted), replicated)
	}
	return res, cmp.Or(retainErr, o.err)
}

// retain stores or (empty payload) clears the retained message of the topic. stored: the store
// was written, so an acknowledgement must wait for its sync.
func (b *Broker) retain(p *publication) (stored bool, err error) {
	if len(p.msg.Payload) == 0 {
		if !b.retained.delete(p.msg.Topic) {
			return false, nil
		}
		b.stats.Retained.Add(-1)
		if err := b.store.Retained().Delete(p.msg.Topic); err != nil {
			return true, b.storeFailed("deleting a retained message", err)
		}
		return true, nil
	}
	m := p.keep()
	if b.retained.set(m) {
		b.stats.Retained.Add(1)
	}
	if err := b.store.Retained().Set(m); err != nil {
		return true, b.storeFailed("storing a retained message", err)
	}
	return true, nil
}

// route delivers to every matching session and to one member of each matching shared group.
// Overlapping subscriptions of one session become one delivery with the highest QoS and all
// their subscription identifiers.
func (b *Broker) route(p *publication, from *Session) (o outcome) {
	m := p.msg
	res := b.index.Match(m.Topic)
	p.many = len(res.Entries)+len(res.Shared) > 1
	if p.many {
		// One message to many receivers: their own writers write in parallel (see Batch).
		p.batch = nil
	}
	entries := res.Entries
	for i := 0; i < len(entries); {
		s := entries[i].Key
		j := i + 1
		for j < len(entries) && entries[j].Key == s {
			j++
		}
		qos, retain, ids, ok := merge(entries[i:j], s == from)
		i = j
		if !ok {
			continue
		}
		o.add(s.deliver(p, min(qos, m.QoS), retain && m.Retain, ids))
	}
	for _, g := range res.Shared {
		if !p.serves(g.Name, g.Filter) {
			continue
		}
		e, ok := pickMember(g)
		if !ok {
			continue
		}
		sub := e.Val
		o.add(e.Key.deliver(p, min(sub.QoS, m.QoS), sub.RetainAsPublished && m.Retain, sub.ids()))
	}
	return o
}

// merge combines one session's matching subscriptions, leaving out no-local ones when the session
// is the publisher. ok is false when none is left.
func merge(subs []topic.Entry[*Session, *subscription], local bool) (qos byte, retain bool, ids []uint32, ok bool) {
	if len(subs) == 1 {
		sub := subs[0].Val
		if local && sub.NoLocal {
			return 0, false, nil, false
		}
		return sub.QoS, sub.RetainAsPublished, sub.ids(), true
	}
	for _, e := range subs {
		sub := e.Val
		if local && sub.NoLocal {
			continue
		}
		ok = true
		qos = max(qos, sub.QoS)
		retain = retain || sub.RetainAsPublished
		if sub.ID != 0 {
			ids = append(ids, sub.ID)
		}
	}
	return qos, retain, ids, ok
}

// pickMember chooses the shared group member for one message: round robin, skipping members whose
// client is offline; when all are offline the message queues for the next in turn.
func pickMember(g *topic.Group[*Session, *subscription]) (topic.Entry[*Session, *subscription], bool) {
	n := len(g.Members)
	if n == 0 {
		return topic.Entry[*Session, *subscription]{}, false
	}
	start := g.Next()
	for k := 0; k < n; k++ {
		e := g.Members[(start+k)%n]
		if e.Key.isOnline() {
			return e, true
		}
	}
	return g.Members[start%n], true
}
