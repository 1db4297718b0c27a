package broker

import (
	"context"
	"log/slog"
	"time"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/store"
)

// Client is one connection's handle on its session. Calls made after the session was taken over
// by a newer connection do nothing.
//
// It is held by every connection for its whole life, so it keeps no copy of what it can reach:
// the broker and the client id are its session's, the identity its principal's, the remote
// address its connection's (RemoteNamer).
type Client struct {
	s   *Session
	gen uint32

	principal *auth.Principal
	// batch is the face's (ConnectRequest.Batch).
	batch *Batch
	// rate is the publish budget shared by the identity's connections; nil without rate limits.
	rate *rateLimiter
	// announce: this connection's events go to $SYS/events.
	announce bool
	// peer: another router (ConnectRequest.Peer).
	peer bool
}

// ClientID names the client's session.
func (c *Client) ClientID() string { return c.s.id }

// Identity is who the client authenticated as ("" when anonymous).
func (c *Client) Identity() string { return c.principal.Identity }

// Principal is who the client authenticated as and what it may do.
func (c *Client) Principal() *auth.Principal { return c.principal }

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
	s.mirror.Or(mirrorOnline)
	t := c.s.b.now()
	s.inflight.each(func(f *inflight) {
		if f.released {
			s.sink.Release(f.pid)
			return
		}
		s.sink.Send(Delivery{Msg: f.item.Msg, QoS: f.item.QoS, PacketID: f.pid, Dup: true,
			Retain: f.item.Retain, SubIDs: f.item.SubIDs, Expiry: expiryLeft(f.item.Msg, t), Seq: f.item.Seq})
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
	s := c.s
	if !s.inflight.remove(packetID) {
		return false
	}
	if st := s.durableStore(); st != nil {
		if err := st.Delete(packetID); err != nil {
			s.b.storeFailed("completing a delivery", err)
		}
	}
	s.pump()
	return true
}

// Received records the first acknowledgement of a QoS 2 delivery (MQTT PUBREC); the face answers
// with the release. It reports whether the packet id was in flight.
func (c *Client) Received(packetID uint16) bool {
	if !c.lock() {
		return false
	}
	defer c.s.mu.Unlock()
	s := c.s
	f := s.inflight.get(packetID)
	if !s.inflight.markReleased(packetID) {
		return false
	}
	if st := s.durableStore(); st != nil {
		if err := st.Put(store.InflightEntry{PacketID: packetID, Item: f.item, Released: true}); err != nil {
			s.b.storeFailed("recording a released delivery", err)
		}
	}
	return true
}

// Refused ends a delivery the client refused (an MQTT 5 PUBREC with an error reason): it is not
// retried, like an acknowledged one.
func (c *Client) Refused(packetID uint16) bool { return c.Acked(packetID) }

// Disconnect detaches the connection from its session. The will is published (now or after its
// delay) unless the goodbye was graceful, and a session with zero expiry ends.
func (c *Client) Disconnect(req DisconnectRequest) {
	b := c.s.b
	b.mu.Lock()
	if !c.lock() {
		b.mu.Unlock()
		return
	}
	s := c.s
	will := s.willLocked()
	if req.SetExpiry {
		s.expiry = req.Expiry
		if b.cfg.MaxSessionExpiry > 0 && s.expiry > b.cfg.MaxSessionExpiry {
			s.expiry = b.cfg.MaxSessionExpiry
		}
	}
	face, sink := s.face.String(), s.sink
	s.detach()
	orphaned := s.takeCalls()
	s.disconnected = b.now()
	var due *Will
	if will != nil && (!req.Graceful || req.PublishWill) {
		if will.Delay == 0 || s.expiry == 0 {
			due = will
		} else {
			delay := min(will.Delay, s.expiry)
			r := s.extra()
			r.pendingWill = will
			gen := s.gen
			r.willTimer = b.clock.AfterFunc(time.Duration(delay)*time.Second, func() { b.willDue(s, gen) })
		}
	}
	if s.expiry == 0 {
		b.endLocked(s)
	} else {
		s.saveLocked()
		if s.expiry != NeverExpire {
			gen := s.gen
			s.extra().expiryTimer = b.clock.AfterFunc(time.Duration(s.expiry)*time.Second, func() { b.sessionDue(s, gen) })
		}
	}
	s.mu.Unlock()
	b.mu.Unlock()
	b.failCalls(orphaned, "service disconnected")
	reason := req.Reason
	if reason == "" {
		reason = "normal"
		if !req.Graceful {
			reason = "connection_closed"
		}
	}
	if b.log.Enabled(context.Background(), slog.LevelDebug) { // the arguments cost allocations
		b.log.Debug("client disconnected", "client", c.ClientID(), "identity", c.Identity(), "face", face,
			"remote", remoteOf(sink), "reason", reason)
	}
	if c.announce {
		b.announce(EventsPrefix+"disconnected", func() map[string]any {
			return map[string]any{"client_id": c.ClientID(), "identity": c.Identity(), "reason": reason}
		})
	}
	if due != nil {
		b.publishWill(due)
	}
}

// RemoteNamer is a Sink that names the client's end of its connection. The disconnect log asks
// the connection rather than the client keeping the address from the connect: every idle
// connection would hold sixteen bytes for a debug line.
type RemoteNamer interface {
	RemoteAddr() string
}

// remoteOf is the sink's remote address, "" when it does not say.
func remoteOf(sink Sink) string {
	if n, ok := sink.(RemoteNamer); ok {
		return n.RemoteAddr()
	}
	return ""
}

// willDue publishes a delayed will if the session was not resumed meanwhile.
func (b *Broker) willDue(s *Session, gen uint32) {
	s.mu.Lock()
	w := s.pendingWillLocked()
	if s.gen != gen || s.sink != nil || w == nil {
		s.mu.Unlock()
		return
	}
	s.rare.pendingWill = nil
	s.mu.Unlock()
	b.publishWill(w)
	// Forget the will on disk only once it is out: a crash in between sends it twice rather
	// than never.
	s.mu.Lock()
	s.saveLocked()
	s.mu.Unlock()
}

// sessionDue ends a session whose expiry interval passed while its client was away.
func (b *Broker) sessionDue(s *Session, gen uint32) {
	b.mu.Lock()
	s.mu.Lock()
	if s.gen != gen || s.sink != nil || s.deleted {
		s.mu.Unlock()
		b.mu.Unlock()
		return
	}
	w := s.pendingWillLocked()
	if w != nil {
		s.rare.pendingWill = nil
	}
	b.endLocked(s)
	s.mu.Unlock()
	b.mu.Unlock()
	if w != nil {
		b.publishWill(w)
	}
}
