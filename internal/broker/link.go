package broker

import (
	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/message"
	"github.com/ternmq/tern/internal/store"
	"github.com/ternmq/tern/internal/topic"
)

// Links between routers (uplinks, see internal/uplink) rest on two things the core keeps.
//
// A sequenced session numbers the QoS 1/2 messages it takes, densely, in the order it takes them,
// and keeps the number with the queued or in-flight item, so a message sent again after a
// reconnect or a restart carries the same number. The last number is written (store.Marks) before
// the item that carries it, so after a crash the count never goes back. A message the session's
// limits drop leaves a hole: the router upstream sees it as a gap.
//
// A peer session belongs to another router. What it forwards carries the origin's number;
// PublishRouted drops a number the session has already taken (a duplicate after a reconnect),
// counts the numbers skipped (gaps), and writes the new mark after the message's copies, so one
// sync covers both before the peer is acknowledged.

// Route is what a forwarded message says of its origin.
type Route struct {
	// Seq is the origin's number for it (0: not numbered, a QoS 0 message).
	Seq uint64
	// Sender is the publisher's identity at the origin; the core shows it as
	// "<peer identity>/<sender>", so a router can never pose as a user here.
	Sender string
}

// loadMarks reads the session's marks from the store. The caller holds s.mu.
func (s *Session) loadMarks() error {
	m, err := s.b.store.Sessions().Marks(s.id)
	if err != nil {
		return storageError(s.b.storeFailed("reading a session's sequence marks", err))
	}
	r := s.extra()
	r.marks, r.marksLoaded = m, true
	return nil
}

// nextSeq numbers a delivery of a sequenced session, writing the mark before the item that will
// carry it. The caller holds s.mu.
func (s *Session) nextSeq() (uint64, error) {
	r := s.extra()
	m := r.marks
	m.Sent++
	if err := s.b.store.Sessions().PutMarks(s.id, m); err != nil {
		return 0, s.b.storeFailed("numbering a delivery", err)
	}
	r.marks = m
	return m.Sent, nil
}

// PublishRouted publishes a message another router forwarded: the peer needs the route grant on
// the topic (not publish), the sender shown is "<peer identity>/<r.Sender>", and a number the
// session already took is acknowledged as a duplicate without being routed again.
func (c *Client) PublishRouted(m *message.Message, r Route) (PublishResult, error) {
	b := c.s.b
	if err := topic.ValidName(m.Topic); err != nil {
		return PublishResult{}, ErrTopicInvalid
	}
	if !c.principal.Allow(auth.Route, m.Topic) {
		b.stats.NotAuthorized.Add(1)
		if b.warn.due("route not authorized") {
			b.log.Warn("forwarded message not authorized: no route grant", "identity", c.Identity(), "topic", m.Topic)
		}
		return PublishResult{}, ErrNotAuthorized
	}
	if !c.lock() {
		return PublishResult{}, ErrSessionTakenOver
	}
	s := c.s
	if !s.marksLoadedLocked() {
		if err := s.loadMarks(); err != nil {
			s.mu.Unlock()
			return PublishResult{}, err
		}
	}
	taken := s.rare.marks.Taken
	s.mu.Unlock()
	if r.Seq != 0 && r.Seq <= taken {
		b.stats.RoutedDuplicates.Add(1)
		s.mu.Lock()
		s.rare.routedDups++
		s.mu.Unlock()
		return PublishResult{Duplicate: true, Matched: 1}, nil
	}
	sender := c.Identity()
	if r.Sender != "" {
		sender += "/" + r.Sender
	}
	stampSender(m, sender)
	b.stats.Received.Add(1)
	res, err := b.publishChecked(s, c.principal, m, false, c.batch)
	if err != nil || r.Seq == 0 {
		return res, err
	}
	if !c.lock() {
		return res, ErrSessionTakenOver
	}
	defer s.mu.Unlock()
	if r.Seq > taken+1 {
		b.stats.RoutedGaps.Add(r.Seq - taken - 1)
		s.rare.routedGaps += r.Seq - taken - 1
	}
	mk := s.rare.marks
	mk.Taken = max(mk.Taken, r.Seq)
	if err := b.store.Sessions().PutMarks(s.id, mk); err != nil {
		return res, b.storeFailed("recording a forwarded message", err)
	}
	s.rare.marks = mk
	// The mark must be durable before the peer forgets the message, even if no copy was kept.
	if res.Durable == nil {
		res.Durable = b.store.Sync()
	}
	return res, nil
}

// ResetRouted forgets the last number the session took from its peer: the peer's session on its
// side is new, so its numbering starts again from 1 (the uplink calls it when the designated
// router did not have its session).
func (c *Client) ResetRouted() error {
	if !c.lock() {
		return ErrSessionTakenOver
	}
	defer c.s.mu.Unlock()
	s := c.s
	if !s.marksLoadedLocked() {
		if err := s.loadMarks(); err != nil {
			return err
		}
	}
	if s.rare.marks.Taken == 0 {
		return nil
	}
	mk := s.rare.marks
	mk.Taken = 0
	if err := c.s.b.store.Sessions().PutMarks(s.id, mk); err != nil {
		return c.s.b.storeFailed("resetting a link's sequence mark", err)
	}
	s.rare.marks = mk
	return nil
}

// Marks returns a session's sequence marks as the core holds them (zero for an unknown session).
func (b *Broker) Marks(clientID string) store.Marks {
	b.mu.Lock()
	s := b.sessions[clientID]
	b.mu.Unlock()
	if s == nil {
		return store.Marks{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rare == nil {
		return store.Marks{}
	}
	return s.rare.marks
}

// marksLoadedLocked reports whether loadMarks has run (and so rare is there). Caller holds s.mu.
func (s *Session) marksLoadedLocked() bool { return s.rare != nil && s.rare.marksLoaded }
