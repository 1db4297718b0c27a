package broker

import (
	"sync"
	"sync/atomic"

	"github.com/ternmq/tern/internal/clock"
	"github.com/ternmq/tern/internal/message"
	"github.com/ternmq/tern/internal/store"
	"github.com/ternmq/tern/internal/topic"
)

// Session is the state the core keeps for one client id, connected or not.
type Session struct {
	b  *Broker
	id string
	// mirror answers two questions without the lock (see isOnline and hasCalls): one word for
	// both, where two atomics took two, in a record every session holds.
	mirror atomic.Uint32

	mu sync.Mutex
	// gen counts connections; a Client whose gen is stale belongs to a connection that was taken
	// over. (32 bits, beside the lock's: a session would need four billion connections for an
	// old Client to pass for a current one, and it would have to survive them all.)
	gen      uint32
	identity string
	sink     Sink
	subs     subSet
	// queue holds what waits for the connection: a memstore.Queue (noQueue until the first
	// push), or the store's for a durable session.
	queue store.Queue
	// inflight is nil until the first QoS 1/2 delivery (see window).
	inflight *inflightWindow
	// disconnected is when the client left (Unix nanoseconds), 0 while connected.
	disconnected int64
	// rare holds what few sessions use, allocated on first use (see sessionRare).
	rare *sessionRare

	expiry uint32
	// inflightMax is the in-flight window: session.max_inflight, or the client's receive
	// maximum when lower; MQTT's packet identifiers keep it within 16 bits.
	inflightMax uint16
	// limitRule says which queue limits apply (see Broker.limitRule); Session.limits reads them.
	limitRule uint16
	// announced: the attached connection's events go to $SYS/events (ConnectRequest.Announce).
	announced bool
	// ready is set once the face has acknowledged the connect; until then deliveries queue.
	ready bool
	// waitDrain is set when a queued delivery met a full connection buffer.
	waitDrain bool
	deleted   bool
	// dirty marks a record whose counters changed since it was saved (the sweeper saves it).
	dirty bool
	// sweepListed: the session is in Broker.sweepList (sweep.go).
	sweepListed bool
	// sequenced numbers QoS 1/2 deliveries (link.go).
	sequenced bool
	// face is the connection's face ("mqtt", "http", ...; ConnectRequest.Face), kept for the
	// console's lists after the connection ends.
	face faceID
}

// The bits of Session.mirror. Both change under the session's lock.
const (
	// mirrorOnline: a sink is attached and started (Client.Start until detach); read when
	// picking a shared subscription's member.
	mirrorOnline uint32 = 1 << iota
	// mirrorCalls: rare.calls is not empty; read on every publish, which may answer a call.
	mirrorCalls
)

// isOnline reports whether a connection is attached and started, without the lock.
func (s *Session) isOnline() bool { return s.mirror.Load()&mirrorOnline != 0 }

// hasCalls reports whether calls delivered to the session wait for answers, without the lock.
func (s *Session) hasCalls() bool { return s.mirror.Load()&mirrorCalls != 0 }

// sessionRare is the part of a session most never use, out of line so that an idle session does
// not carry it: durable state, wills and their timers, exactly-once and RPC bookkeeping, a link's
// sequence marks and the counters of what the queue limits cost. A session allocates it the
// first time it needs one of them (extra) and keeps it; readers check for nil first.
type sessionRare struct {
	// inflightStore is set for durable sessions, which keep queue, in-flight state and record in
	// the store; it is nil for the others (see durable).
	inflightStore store.Inflight
	// incoming holds packet ids of exactly-once publishes received but not yet released.
	incoming    map[uint16]struct{}
	will        *Will
	pendingWill *Will
	willTimer   clock.Timer
	expiryTimer clock.Timer
	// credTimer ends the connection when its credentials expire.
	credTimer clock.Timer
	// calls are the calls delivered to this session and not yet answered (see rpc.go).
	calls []pendingCall
	// marks are the session's sequence marks, read from the store once (marksLoaded) when a
	// link connects.
	marks       store.Marks
	marksLoaded bool
	// dropped and refused count what the queue limits cost this session; expired counts queued
	// messages that expired; routedDups and routedGaps what its peer sent again or skipped
	// (PublishRouted). The last three are in memory only.
	dropped    uint64
	refused    uint64
	expired    uint64
	routedDups uint64
	routedGaps uint64
}

// extra returns the session's rare part, allocating it. Caller holds s.mu (or owns s alone).
func (s *Session) extra() *sessionRare {
	if s.rare == nil {
		s.rare = new(sessionRare)
	}
	return s.rare
}

// willLocked is the will of the attached connection (nil: none). Caller holds s.mu.
func (s *Session) willLocked() *Will {
	if s.rare == nil {
		return nil
	}
	return s.rare.will
}

// incomingLocked is the exactly-once publishes awaiting release (nil: none). Caller holds s.mu.
func (s *Session) incomingLocked() map[uint16]struct{} {
	if s.rare == nil {
		return nil
	}
	return s.rare.incoming
}

// pendingWillLocked is the will waiting for its delay after the connection ended (nil: none).
// Caller holds s.mu.
func (s *Session) pendingWillLocked() *Will {
	if s.rare == nil {
		return nil
	}
	return s.rare.pendingWill
}

// subscription is immutable once in the index; a resubscribe replaces it.
//
// Every subscription of every session is one, so it keeps nothing it can derive: its parsed
// filter is parsed again when needed (unsubscribing, ending the session, sending retained
// messages), and its identifier is kept once more as an array that ids slices.
type subscription struct {
	store.Subscription
	id [1]uint32 // Subscription.ID
}

func newSubscription(s store.Subscription) *subscription {
	return &subscription{Subscription: s, id: [1]uint32{s.ID}}
}

// ids is the subscription identifier as a slice ready to hand to a Sink (nil when none); it
// aliases the subscription, which never changes once made.
func (s *subscription) ids() []uint32 {
	if s.ID == 0 {
		return nil
	}
	return s.id[:]
}

// filter is the subscription's filter, parsed; it was valid when the subscription was made.
func (s *subscription) filter() topic.Filter {
	f, _ := topic.ParseFilter(s.Filter)
	return f
}

// publication is one message being routed: what all its deliveries share. The message is
// borrowed from the publisher; the first delivery that must outlive the call clones it (keep),
// and later ones share that clone.
type publication struct {
	msg   *message.Message
	owned *message.Message
	// at is when the core handled it, in Unix nanoseconds: expiry is counted down to it.
	at int64
	// many: the message goes to more than one session (see Delivery.Many).
	many bool
	// call: the message is a call (rpc.go), delivered to connected sessions only; answerable:
	// its caller may have the answer on its response topic without the service's grants.
	call, answerable bool
	// batch is the publishing connection's (Delivery.Batch).
	batch *Batch
	// remote: the message came from another cluster node (DeliverRemote). groupsSet: only the
	// shared groups in groups ("group/filter") are served here (cluster.go).
	remote    bool
	groupsSet bool
	groups    []string
}

func (p *publication) keep() *message.Message {
	if p.owned == nil {
		p.owned = p.msg.Clone()
	}
	return p.owned
}

// delivered is what handing a publication to one session came to.
type delivered struct {
	// online: the session was connected.
	online bool
	// stored: a durable copy was written, so an acknowledgement must wait for the store's sync.
	stored bool
	// wait is the receiver's Drained channel when it is congested (PublishResult.Backpressure).
	wait <-chan struct{}
	// err is a failure to keep a copy (a store error, or a full queue that refuses).
	err error
}

// outcome sums up the deliveries of one publication, for the publisher's answer.
type outcome struct {
	matched, online int
	stored          bool
	wait            <-chan struct{}
	err             error
}

// add counts one delivery; the first congested receiver and the first error are kept.
func (o *outcome) add(d delivered) {
	o.matched++
	if d.online {
		o.online++
	}
	o.stored = o.stored || d.stored
	if o.wait == nil {
		o.wait = d.wait
	}
	if o.err == nil {
		o.err = d.err
	}
}

// durableStore is a durable session's in-flight state in the store (nil: not durable).
func (s *Session) durableStore() store.Inflight {
	if s.rare == nil {
		return nil
	}
	return s.rare.inflightStore
}

// durable reports whether the session keeps its state in the store.
func (s *Session) durable() bool { return s.durableStore() != nil }

// congestion is the receiver's Drained channel when a send found it congested; caller holds s.mu.
func (s *Session) congestion(r SendResult) <-chan struct{} {
	if r == Congested {
		return s.sink.Drained()
	}
	return nil
}

// expiryLeft is what Delivery.Expiry says of m at t.
func expiryLeft(m *message.Message, t int64) uint32 {
	left, _ := m.RemainingExpiry(t)
	return left
}

// deliver hands one message to this session: straight to the connection when it can, otherwise
// into the queue.
func (s *Session) deliver(p *publication, qos byte, retain bool, ids []uint32) (d delivered) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.deleted {
		return d
	}
	if p.call {
		if s.sink == nil {
			return d // a call is for a service that is there now, not for a queue
		}
		s.noteCall(p.msg, p.answerable)
	}
	d.online = s.sink != nil
	if qos == 0 && s.ready {
		r := s.sink.Send(Delivery{Msg: p.msg, Retain: retain, SubIDs: ids, Many: p.many, Batch: p.batch,
			Expiry: expiryLeft(p.msg, p.at)})
		s.countSend(r)
		d.wait = s.congestion(r)
		return d
	}
	if qos == 0 && !s.b.cfg.QueueQoS0 {
		s.b.stats.DroppedOffline.Add(1)
		return d
	}
	it := store.Item{Msg: p.keep(), QoS: qos, Retain: retain, SubIDs: ids, Shared: p.many}
	if s.sequenced && qos > 0 {
		seq, err := s.nextSeq()
		if err != nil {
			d.err = err
			return d
		}
		it.Seq = seq
	}
	if s.ready && s.queue.Len() == 0 && s.inflight.hasRoom(int(s.inflightMax), s.b.cfg.MaxInflightBytes) {
		r, err := s.sendNew(it, p.at, p.many, p.batch)
		d.err = err
		if r != Busy {
			d.stored = s.durable() && qos > 0 && r != TooLarge
			d.wait = s.congestion(r)
			return d
		}
	}
	if err := s.enqueue(it); err != nil {
		d.err = err
		return d
	}
	d.stored = s.durable()
	return d
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

// enqueue appends to the session queue within its limits: expired messages go first, then, when
// it is still full, the oldest are dropped or the new one is refused, as the policy says.
func (s *Session) enqueue(it store.Item) error {
	lim := s.limits()
	size := int64(it.Size())
	full := func() bool {
		return (lim.MaxMessages > 0 && s.queue.Len() >= lim.MaxMessages) ||
			(lim.MaxBytes > 0 && s.queue.Bytes()+size > lim.MaxBytes)
	}
	if full() {
		s.dropExpired(s.b.now(), -1)
	}
	if full() && lim.Policy == RefuseNew || lim.MaxBytes > 0 && size > lim.MaxBytes {
		s.extra().refused++
		s.b.stats.RefusedQueueFull.Add(1)
		if s.b.warn.due("queue-full") {
			s.b.log.Warn("a session queue is full; messages are refused", "client", s.id,
				"messages", s.queue.Len(), "bytes", s.queue.Bytes())
		}
		return ErrQuotaExceeded
	}
	dropped := 0
	var popErr error
	for s.queue.Len() > 0 && full() {
		if popErr = s.queue.Pop(); popErr != nil {
			break
		}
		dropped++
	}
	if dropped > 0 {
		s.b.stats.Queued.Add(-int64(dropped))
		s.b.stats.DroppedQueueFull.Add(uint64(dropped))
		r := s.extra()
		r.dropped += uint64(dropped)
		s.dirty = true
		s.listForSweepLocked()
		if s.b.warn.due("queue-drop") {
			s.b.log.Warn("a session queue is full; dropping its oldest messages", "client", s.id,
				"dropped_total", r.dropped)
		}
	}
	if popErr != nil {
		return s.b.storeFailed("dropping from a queue", popErr)
	}
	s.ownQueue()
	if err := s.queue.Push(it); err != nil {
		return s.b.storeFailed("queueing a message", err)
	}
	s.b.stats.Queued.Add(1)
	s.listForSweepLocked()
	return nil
}

// dropExpired removes messages at the head of the queue whose expiry or the queue's maximum age
// has passed, at most budget of them (-1: no bound). It returns how many went.
func (s *Session) dropExpired(t int64, budget int) int {
	n := 0
	for budget < 0 || n < budget {
		it, ok, err := s.queue.Front()
		if err != nil {
			s.b.storeFailed("reading a queue", err)
			return n
		}
		if !ok || !s.tooOld(it.Msg, t) {
			return n
		}
		if err := s.queue.Pop(); err != nil {
			s.b.storeFailed("expiring from a queue", err)
			return n
		}
		s.b.stats.Queued.Add(-1)
		s.b.stats.Expired.Add(1)
		s.extra().expired++
		n++
	}
	return n
}

// tooOld reports whether a queued message must not be delivered any more.
func (s *Session) tooOld(m *message.Message, t int64) bool {
	if m.Expired(t) {
		return true
	}
	maxAge := s.limits().MaxAge
	return maxAge > 0 && t-m.Time > int64(maxAge)
}

// sendNew puts a QoS 1/2 item in flight; Busy means the connection could not take it. The send
// comes first and a durable session then records the delivery in flight: the record is covered by
// the same sync the publisher's acknowledgement (or the queue's Pop) waits for, so a crash before
// the client acknowledges redelivers it.
// batch is the publishing connection's (Delivery.Batch), nil when the queue drains.
func (s *Session) sendNew(it store.Item, t int64, many bool, batch *Batch) (SendResult, error) {
	pid := s.window().nextID()
	r := s.sink.Send(Delivery{Msg: it.Msg, QoS: it.QoS, PacketID: pid, Retain: it.Retain, SubIDs: it.SubIDs,
		Many: many, Batch: batch, Expiry: expiryLeft(it.Msg, t), Seq: it.Seq})
	switch r {
	case Busy:
		s.waitDrain = true
	case TooLarge:
		s.b.stats.DroppedTooLarge.Add(1)
	default:
		s.window().add(pid, it)
		s.b.stats.Delivered.Add(1)
		if st := s.durableStore(); st != nil {
			if err := st.Put(store.InflightEntry{PacketID: pid, Item: it}); err != nil {
				return r, s.b.storeFailed("recording a delivery in flight", err)
			}
		}
	}
	return r, nil
}

// pump moves queued items to the connection while the window and the connection allow.
func (s *Session) pump() {
	t := s.b.now()
	for s.ready && !s.waitDrain {
		it, ok, err := s.queue.Front()
		if err != nil {
			s.b.storeFailed("reading a queue", err)
			return
		}
		if !ok {
			return
		}
		if it.QoS > 0 && !s.inflight.hasRoom(int(s.inflightMax), s.b.cfg.MaxInflightBytes) {
			return
		}
		if s.tooOld(it.Msg, t) {
			s.dropExpired(t, 1)
			continue
		}
		if it.QoS == 0 {
			r := s.sink.Send(Delivery{Msg: it.Msg, Retain: it.Retain, SubIDs: it.SubIDs, Expiry: expiryLeft(it.Msg, t)})
			if r == Busy {
				s.waitDrain = true
				return
			}
			s.countSend(r)
		} else if r, err := s.sendNew(it, t, false, nil); r == Busy || err != nil {
			return
		}
		if err := s.queue.Pop(); err != nil {
			s.b.storeFailed("removing a sent message from its queue", err)
			return
		}
		s.b.stats.Queued.Add(-1)
	}
}

// detach forgets the connection. The caller holds b.mu and s.mu.
func (s *Session) detach() {
	s.b.releaseLocked(s.identity)
	if r := s.rare; r != nil {
		if r.credTimer != nil {
			r.credTimer.Stop()
			r.credTimer = nil
		}
		r.will = nil
	}
	s.sink = nil
	s.ready = false
	s.waitDrain = false
	s.mirror.And(^mirrorOnline)
	s.b.stats.Connected.Add(-1)
}

func (s *Session) stopTimers() {
	r := s.rare
	if r == nil {
		return
	}
	if r.willTimer != nil {
		r.willTimer.Stop()
		r.willTimer = nil
	}
	if r.expiryTimer != nil {
		r.expiryTimer.Stop()
		r.expiryTimer = nil
	}
}

// record is the session's record without its subscriptions, which the store keeps apart.
func (s *Session) record() store.SessionRecord {
	rec := store.SessionRecord{ClientID: s.id, Identity: s.identity, Expiry: s.expiry,
		Disconnected: s.disconnected}
	if s.rare != nil {
		rec.Dropped = s.rare.dropped
	}
	w := s.willLocked()
	if s.sink == nil {
		w = s.pendingWillLocked()
	}
	if w != nil {
		rec.Will = &store.Will{Msg: w.Msg, Delay: w.Delay}
	}
	return rec
}
