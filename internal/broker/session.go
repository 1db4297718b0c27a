package broker

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/ternmq/tern/internal/message"
	"github.com/ternmq/tern/internal/store"
	"github.com/ternmq/tern/internal/topic"
)

// Session is the state the core keeps for one client id, connected or not.
type Session struct {
	b  *Broker
	id string
	// online mirrors "sink attached and started" for lock-free reads when picking a shared
	// subscription member.
	online atomic.Bool

	mu       sync.Mutex
	identity string
	sink     Sink
	// gen counts connections; a Client whose gen is stale belongs to a connection that was taken over.
	gen uint64
	// ready is set once the face has acknowledged the connect; until then deliveries queue.
	ready bool
	// waitDrain is set when a queued delivery met a full connection buffer.
	waitDrain   bool
	expiry      uint32
	subs        map[string]*subscription
	queue       store.Queue
	inflight    inflightWindow
	inflightMax int
	// incoming holds packet ids of exactly-once publishes received but not yet released.
	incoming    map[uint16]struct{}
	will        *Will
	pendingWill *Will
	willTimer   stopper
	expiryTimer stopper
	deleted     bool
}

// subscription is immutable once in the index; a resubscribe replaces it.
type subscription struct {
	store.Subscription
	filter topic.Filter
	// ids is the subscription identifier as a slice ready to hand to a Sink (nil when none).
	ids []uint32
}

// publication is one message being routed. The message is borrowed from the publisher; the
// first delivery that must outlive the call clones it, and later ones share that clone.
type publication struct {
	msg   *message.Message
	owned *message.Message
	// many: the message goes to more than one session (see Delivery.Many).
	many bool
	// wait is the first congested receiver's Drained channel (see PublishResult.Backpressure).
	wait <-chan struct{}
}

// sent records a send's outcome for backpressure; caller holds s.mu.
func (p *publication) sent(s *Session, r SendResult) {
	if r == Congested && p.wait == nil {
		p.wait = s.sink.Drained()
	}
}

func (p *publication) keep() *message.Message {
	if p.owned == nil {
		p.owned = p.msg.Clone()
	}
	return p.owned
}

// deliver hands one message to this session: straight to the connection when it can, otherwise
// into the queue.
func (s *Session) deliver(p *publication, qos byte, retain bool, ids []uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.deleted {
		return
	}
	if qos == 0 && s.ready {
		r := s.sink.Send(Delivery{Msg: p.msg, Retain: retain, SubIDs: ids, Many: p.many})
		s.countSend(r)
		p.sent(s, r)
		return
	}
	if qos == 0 && !s.b.cfg.QueueQoS0 {
		s.b.stats.DroppedOffline.Add(1)
		return
	}
	it := store.Item{Msg: p.keep(), QoS: qos, Retain: retain, SubIDs: ids}
	if s.ready && s.queue.Len() == 0 && s.inflight.hasRoom(s.inflightMax, s.b.cfg.MaxInflightBytes) {
		if r := s.sendNew(it, p.many); r != Busy {
			p.sent(s, r)
			return
		}
	}
	s.enqueue(it)
}

// countSend records the outcome of a QoS 0 send.
func (s *Session) countSend(r SendResult) {
	switch r {
	case Sent, Congested:
		s.b.stats.Delivered.Add(1)
	case Busy:
		s.b.stats.DroppedSlow.Add(1)
	case TooLarge:
		s.b.stats.DroppedTooLarge.Add(1)
	}
}

// enqueue appends to the session queue, dropping the oldest entries to stay within limits.
func (s *Session) enqueue(it store.Item) {
	cfg := &s.b.cfg
	size := int64(it.Size())
	if cfg.MaxQueuedBytes > 0 && size > cfg.MaxQueuedBytes {
		s.b.stats.DroppedQueueFull.Add(1)
		return
	}
	for s.queue.Len() > 0 && ((cfg.MaxQueuedMessages > 0 && s.queue.Len() >= cfg.MaxQueuedMessages) ||
		(cfg.MaxQueuedBytes > 0 && s.queue.Bytes()+size > cfg.MaxQueuedBytes)) {
		s.queue.Pop()
		s.b.stats.DroppedQueueFull.Add(1)
	}
	if err := s.queue.Push(it); err != nil {
		s.b.log.Error("queueing message", "client", s.id, "err", err)
		s.b.stats.DroppedQueueFull.Add(1)
		return
	}
	s.b.stats.Queued.Add(1)
}

// sendNew puts a QoS 1/2 item in flight; Busy means the connection could not take it.
func (s *Session) sendNew(it store.Item, many bool) SendResult {
	pid := s.inflight.nextID()
	r := s.sink.Send(Delivery{Msg: it.Msg, QoS: it.QoS, PacketID: pid, Retain: it.Retain, SubIDs: it.SubIDs, Many: many})
	switch r {
	case Busy:
		s.waitDrain = true
	case TooLarge:
		s.b.stats.DroppedTooLarge.Add(1)
	default:
		s.inflight.add(pid, it)
		s.b.stats.Delivered.Add(1)
	}
	return r
}

// pump moves queued items to the connection while the window and the connection allow.
func (s *Session) pump() {
	t := now()
	for s.ready && !s.waitDrain {
		it, ok := s.queue.Front()
		if !ok {
			return
		}
		if it.QoS > 0 && !s.inflight.hasRoom(s.inflightMax, s.b.cfg.MaxInflightBytes) {
			return
		}
		if it.Msg.Expired(t) {
			s.queue.Pop()
			s.b.stats.Queued.Add(-1)
			s.b.stats.Expired.Add(1)
			continue
		}
		if it.QoS == 0 {
			r := s.sink.Send(Delivery{Msg: it.Msg, Retain: it.Retain, SubIDs: it.SubIDs})
			if r == Busy {
				s.waitDrain = true
				return
			}
			s.countSend(r)
		} else if s.sendNew(it, false) == Busy {
			return
		}
		s.queue.Pop()
		s.b.stats.Queued.Add(-1)
	}
}

// detach forgets the connection. Caller holds s.mu.
func (s *Session) detach() {
	s.sink = nil
	s.ready = false
	s.waitDrain = false
	s.online.Store(false)
	s.will = nil
	s.b.stats.Connected.Add(-1)
}

func (s *Session) stopTimers() {
	if s.willTimer != nil {
		s.willTimer.Stop()
		s.willTimer = nil
	}
	if s.expiryTimer != nil {
		s.expiryTimer.Stop()
		s.expiryTimer = nil
	}
}

func (s *Session) record() store.SessionRecord {
	rec := store.SessionRecord{ClientID: s.id, Identity: s.identity, Expiry: s.expiry}
	for _, sub := range s.subs {
		rec.Subscriptions = append(rec.Subscriptions, sub.Subscription)
	}
	return rec
}

// saveLocked writes the session record when the session outlives its connection.
func (s *Session) saveLocked() {
	if s.expiry == 0 {
		return
	}
	if err := s.b.store.Sessions().Put(s.record()); err != nil {
		s.b.log.Error("saving session", "client", s.id, "err", err)
	}
}

// Client is one connection's handle on its session. Calls made after the session was taken over
// by a newer connection do nothing.
type Client struct {
	b        *Broker
	s        *Session
	gen      uint64
	ClientID string
	Identity string
}

// lock takes the session lock and reports whether this client still owns the session.
func (c *Client) lock() bool {
	c.s.mu.Lock()
	if c.s.gen != c.gen || c.s.sink == nil {
		c.s.mu.Unlock()
		return false
	}
	return true
}

// Start begins deliveries: in-flight messages from an earlier connection are re-sent (marked
// duplicate) in their original order, then the queue drains.
func (c *Client) Start() {
	if !c.lock() {
		return
	}
	s := c.s
	defer s.mu.Unlock()
	s.ready = true
	s.online.Store(true)
	s.inflight.each(func(f *inflight) {
		if f.released {
			s.sink.Release(f.pid)
			return
		}
		s.sink.Send(Delivery{Msg: f.item.Msg, QoS: f.item.QoS, PacketID: f.pid, Dup: true,
			Retain: f.item.Retain, SubIDs: f.item.SubIDs})
	})
	s.pump()
}

// Drained tells the core the connection's buffer has room again.
func (c *Client) Drained() {
	if !c.lock() {
		return
	}
	c.s.waitDrain = false
	c.s.pump()
	c.s.mu.Unlock()
}

// Acked completes a QoS 1 delivery (MQTT PUBACK) or a QoS 2 one (PUBCOMP). It reports whether the
// packet id was in flight.
func (c *Client) Acked(packetID uint16) bool {
	if !c.lock() {
		return false
	}
	defer c.s.mu.Unlock()
	if !c.s.inflight.remove(packetID) {
		return false
	}
	c.s.pump()
	return true
}

// Received records the first acknowledgement of a QoS 2 delivery (MQTT PUBREC); the face answers
// with the release. It reports whether the packet id was in flight.
func (c *Client) Received(packetID uint16) bool {
	if !c.lock() {
		return false
	}
	defer c.s.mu.Unlock()
	return c.s.inflight.markReleased(packetID)
}

// Refused ends a delivery the client refused (an MQTT 5 PUBREC with an error reason): it is not
// retried, like an acknowledged one.
func (c *Client) Refused(packetID uint16) bool { return c.Acked(packetID) }

// Disconnect detaches the connection from its session. The will is published (now or after its
// delay) unless the goodbye was graceful, and a session with zero expiry ends.
func (c *Client) Disconnect(req DisconnectRequest) {
	b := c.b
	b.mu.Lock()
	if !c.lock() {
		b.mu.Unlock()
		return
	}
	s := c.s
	will := s.will
	if req.SetExpiry {
		s.expiry = req.Expiry
		if b.cfg.MaxSessionExpiry > 0 && s.expiry > b.cfg.MaxSessionExpiry {
			s.expiry = b.cfg.MaxSessionExpiry
		}
	}
	s.detach()
	var now *Will
	if will != nil && (!req.Graceful || req.PublishWill) {
		if will.Delay == 0 || s.expiry == 0 {
			now = will
		} else {
			delay := min(will.Delay, s.expiry)
			s.pendingWill = will
			gen := s.gen
			s.willTimer = b.afterFunc(time.Duration(delay)*time.Second, func() { b.willDue(s, gen) })
		}
	}
	if s.expiry == 0 {
		b.discardLocked(s)
	} else {
		s.saveLocked()
		if s.expiry != NeverExpire {
			gen := s.gen
			s.expiryTimer = b.afterFunc(time.Duration(s.expiry)*time.Second, func() { b.sessionDue(s, gen) })
		}
	}
	s.mu.Unlock()
	b.mu.Unlock()
	if now != nil {
		b.publishWill(now)
	}
}

// willDue publishes a delayed will if the session was not resumed meanwhile.
func (b *Broker) willDue(s *Session, gen uint64) {
	s.mu.Lock()
	w := s.pendingWill
	if s.gen != gen || s.sink != nil || w == nil {
		s.mu.Unlock()
		return
	}
	s.pendingWill = nil
	s.mu.Unlock()
	b.publishWill(w)
}

// sessionDue ends a session whose expiry interval passed while its client was away.
func (b *Broker) sessionDue(s *Session, gen uint64) {
	b.mu.Lock()
	s.mu.Lock()
	if s.gen != gen || s.sink != nil || s.deleted {
		s.mu.Unlock()
		b.mu.Unlock()
		return
	}
	w := s.pendingWill
	s.pendingWill = nil
	b.discardLocked(s)
	s.mu.Unlock()
	b.mu.Unlock()
	if w != nil {
		b.publishWill(w)
	}
}
