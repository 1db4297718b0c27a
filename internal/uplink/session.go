package uplink

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/mqtt/packet"
)

// session is one connection's life of the link: the trunk goes up through it, the site's interest
// comes down through it, and queries are asked over it. The link's goroutine reads (read); a
// control goroutine pings and follows the site's interest.
type session struct {
	l         *Link
	c         *upConn
	trunk     *broker.Client
	sink      *sink
	keepAlive time.Duration
	// responses is the topic prefix query answers come back under.
	responses string
	closed    chan struct{}
	// ctlDone is closed when the control goroutine, if controlling says it was started, ends.
	ctlDone     chan struct{}
	controlling bool

	mu      sync.Mutex
	lastPID uint16
	// subs and unsubs are SUBSCRIBE and UNSUBSCRIBE packets awaiting their acknowledgement.
	subs, unsubs map[uint16][]string
	queries      map[string]chan *queryReply
	nextQuery    uint64
	// lastTicket is the store sync the newest acknowledgement of a message that came down waits
	// for; later ones queue behind it, so they leave in the order the messages came.
	lastTicket *broker.Ticket
	// pub is the reader's decoding space.
	pub packet.Publish
}

func newSession(l *Link, c *upConn, trunk *broker.Client, k *sink, keepAlive time.Duration) *session {
	return &session{l: l, c: c, trunk: trunk, sink: k, keepAlive: keepAlive,
		responses: broker.ResponsePrefix(l.upID), closed: make(chan struct{}), ctlDone: make(chan struct{}),
		subs: map[uint16][]string{}, unsubs: map[uint16][]string{}, queries: map[string]chan *queryReply{}}
}

// begin readies the session once the designated router accepted the connection: the numbers of
// what comes down start again if it lost the site's session, the site's interest is subscribed in
// full, and the trunk starts: what was in flight goes again (same numbers), then the queue.
func (s *session) begin(fresh, present bool) error {
	l := s.l
	if fresh {
		if err := l.forget("fresh"); err != nil {
			return err
		}
	}
	if !present {
		if err := s.trunk.ResetRouted(); err != nil {
			return err
		}
		l.mu.Lock()
		clear(l.upstream)
		l.mu.Unlock()
		if err := l.save("subs", []string{}); err != nil {
			return err
		}
	}
	l.mu.Lock()
	if l.stopping {
		l.mu.Unlock()
		return errors.New("link closing")
	}
	l.cur = s
	l.since = time.Now()
	l.lastErr = ""
	l.mu.Unlock()
	// Query answers come at QoS 0: they are not numbered, and a lost one is a failed query.
	if err := s.subscribe([]string{s.responses + "/#"}, 0); err != nil {
		return err
	}
	if err := s.syncInterest(true); err != nil {
		return err
	}
	s.trunk.Start()
	if l.stats.connects.Add(1) > 1 {
		l.stats.Reconnects.Add(1)
	}
	l.log.Info("uplink up", "url", l.cfg.URL, "session_present", present, "client_id", l.upID)
	l.announce("up", map[string]any{"url": l.cfg.URL, "session_present": present})
	s.controlling = true
	go s.control()
	return nil
}

// end takes the session down: the trunk goes offline and queues again, queries in flight fail.
func (s *session) end(cause error) {
	l := s.l
	l.mu.Lock()
	wasUp := l.cur == s
	if wasUp {
		l.cur = nil
		l.since = time.Now()
	}
	if cause != nil {
		l.lastErr = cause.Error()
	}
	stopping := l.stopping
	l.mu.Unlock()
	close(s.closed)
	s.sink.close()
	s.c.closeNow()
	if s.controlling {
		<-s.ctlDone
	}
	s.trunk.Disconnect(broker.DisconnectRequest{Graceful: true})
	s.failQueries()
	if !wasUp {
		return
	}
	reason := "closed"
	if cause != nil {
		reason = cause.Error()
	}
	if stopping {
		reason = "shutting down"
	} else {
		l.log.Warn("uplink down", "url", l.cfg.URL, "reason", reason)
	}
	l.announce("down", map[string]any{"url": l.cfg.URL, "reason": reason})
}

// errKeepAlive: nothing came from the designated router for one and a half keep alives (a
// blackholed or half-open connection).
var errKeepAlive = errors.New("keep alive: nothing from the designated router in time")

// read handles what the designated router sends until the connection ends.
func (s *session) read() error {
	last := time.Now()
	defer s.c.release()
	for {
		if !s.c.rd.Ready() {
			s.c.release()
		}
		typ, flags, body, err := s.c.next(last.Add(s.keepAlive * 3 / 2))
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				select {
				case <-s.l.stop:
					return errors.New("link closing")
				default:
				}
				return errKeepAlive
			}
			return err
		}
		last = time.Now()
		if s.c.rd.Ready() {
			s.c.hold()
		}
		if err := s.handle(typ, flags, body); err != nil {
			return err
		}
	}
}

func (s *session) handle(typ, flags byte, body []byte) error {
	switch typ {
	case packet.PUBACK:
		var a packet.Puback
		if err := a.Decode(flags, body, packet.V5); err != nil {
			return err
		}
		if a.Reason.IsError() {
			s.l.stats.Refused.Add(1)
			if s.l.warn.due("refused") {
				s.l.log.Warn("the designated router refused a forwarded message", "reason", a.Reason.String(),
					"detail", string(a.Props.ReasonString))
			}
		} else {
			s.l.stats.Acked.Add(1)
		}
		s.sink.acked(a.PacketID)
	case packet.PUBLISH:
		return s.onPublish(flags, body)
	case packet.SUBACK:
		var a packet.Suback
		if err := a.Decode(flags, body, packet.V5); err != nil {
			return err
		}
		s.subscribed(a.PacketID, a.Reasons, string(a.Props.ReasonString))
	case packet.UNSUBACK:
		var a packet.Unsuback
		if err := a.Decode(flags, body, packet.V5); err != nil {
			return err
		}
		s.unsubscribed(a.PacketID)
	case packet.PINGRESP:
	case packet.DISCONNECT:
		var d packet.Disconnect
		if err := d.Decode(flags, body, packet.V5); err != nil {
			return err
		}
		if rs := string(d.Props.ReasonString); rs != "" && rs != d.Reason.String() {
			return fmt.Errorf("the designated router disconnected: %v (%s)", d.Reason, rs)
		}
		return fmt.Errorf("the designated router disconnected: %v", d.Reason)
	default:
		return fmt.Errorf("unexpected %s from the designated router", packet.TypeName(typ))
	}
	return nil
}

// control pings the designated router every keep alive and follows the site's interest, a
// moment after it changes (a burst of subscriptions makes one SUBSCRIBE).
func (s *session) control() {
	defer close(s.ctlDone)
	ping := time.NewTicker(s.keepAlive)
	defer ping.Stop()
	var settle *time.Timer
	var settled <-chan time.Time
	for {
		select {
		case <-s.closed:
			if settle != nil {
				settle.Stop()
			}
			return
		case <-ping.C:
			_ = s.c.writePacket(&packet.Pingreq{})
		case <-s.l.interest:
			if settle == nil {
				settle = time.NewTimer(interestSettle)
				settled = settle.C
			}
		case <-settled:
			settle, settled = nil, nil
			if err := s.syncInterest(true); err != nil {
				s.c.closeNow()
			}
		}
	}
}

// interestSettle is how long a change of the site's interest waits for more before it goes up.
const interestSettle = 50 * time.Millisecond

// syncInterest subscribes upstream to the site's interest in the link's namespaces and
// unsubscribes what it no longer holds. full resends every filter (after a reconnect: the
// designated router may have lost some); without full only the changes go.
func (s *session) syncInterest(full bool) error {
	l := s.l
	want := mapInterest(l.b.Interest(), l.cfg.Namespaces)
	l.mu.Lock()
	var add, drop []string
	for _, f := range want {
		if full || !l.upstream[f] {
			add = append(add, f)
		}
	}
	for f := range l.upstream {
		if !slices.Contains(want, f) {
			drop = append(drop, f)
		}
	}
	l.mu.Unlock()
	slices.Sort(drop)
	if err := s.unsubscribe(drop); err != nil {
		return err
	}
	return s.subscribe(add, 2)
}

// maxFilters bounds the filters of one SUBSCRIBE or UNSUBSCRIBE, keeping packets small.
const maxFilters = 64

// subscribe sends SUBSCRIBE packets: No Local (what this site forwarded does not come back),
// Retain As Published, retained messages only for new subscriptions.
func (s *session) subscribe(filters []string, qos byte) error {
	for len(filters) > 0 {
		n := min(len(filters), maxFilters)
		chunk := filters[:n]
		filters = filters[n:]
		p := &packet.Subscribe{PacketID: s.packetID(chunk, s.subs)}
		for _, f := range chunk {
			p.Subscriptions = append(p.Subscriptions, packet.Subscription{Filter: []byte(f), QoS: qos,
				NoLocal: qos > 0, RetainAsPublished: true, RetainHandling: 1})
		}
		if err := s.c.writePacket(p); err != nil {
			return err
		}
	}
	return nil
}

func (s *session) unsubscribe(filters []string) error {
	for len(filters) > 0 {
		n := min(len(filters), maxFilters)
		chunk := filters[:n]
		filters = filters[n:]
		p := &packet.Unsubscribe{PacketID: s.packetID(chunk, s.unsubs)}
		for _, f := range chunk {
			p.Filters = append(p.Filters, []byte(f))
		}
		if err := s.c.writePacket(p); err != nil {
			return err
		}
	}
	return nil
}

// packetID picks the id of a SUBSCRIBE or UNSUBSCRIBE and remembers its filters. MQTT has one id
// space for these and QoS 1 PUBLISH, whose ids the core assigns to the trunk's deliveries; the
// ids here count down from the top, so they rarely meet those, and when they do nothing is
// confused: acknowledgements are told apart by their type here, and the designated router keeps
// no state for a SUBSCRIBE's id.
func (s *session) packetID(filters []string, pending map[uint16][]string) uint16 {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		s.lastPID--
		if s.lastPID < 0xF000 {
			s.lastPID = 0xFFFF
		}
		if s.subs[s.lastPID] == nil && s.unsubs[s.lastPID] == nil {
			pending[s.lastPID] = filters
			return s.lastPID
		}
	}
}

// subscribed records what the designated router granted.
func (s *session) subscribed(pid uint16, reasons []packet.ReasonCode, detail string) {
	s.mu.Lock()
	filters := s.subs[pid]
	delete(s.subs, pid)
	s.mu.Unlock()
	l := s.l
	changed := false
	l.mu.Lock()
	for i, f := range filters {
		if f == s.responses+"/#" {
			continue
		}
		if i < len(reasons) && !reasons[i].IsError() {
			changed = changed || !l.upstream[f]
			l.upstream[f] = true
			continue
		}
		l.stats.SubscribeRefused.Add(1)
		if l.warn.due("subscribe") {
			code := "missing"
			if i < len(reasons) {
				code = reasons[i].String()
			}
			l.log.Warn("the designated router refused a subscription", "filter", f, "reason", code, "detail", detail)
		}
	}
	l.mu.Unlock()
	if changed {
		s.saveUpstream()
	}
}

func (s *session) unsubscribed(pid uint16) {
	s.mu.Lock()
	filters := s.unsubs[pid]
	delete(s.unsubs, pid)
	s.mu.Unlock()
	l := s.l
	l.mu.Lock()
	for _, f := range filters {
		delete(l.upstream, f)
	}
	l.mu.Unlock()
	if len(filters) > 0 {
		s.saveUpstream()
	}
}

// saveUpstream keeps the filters the designated router holds, so that after a restart the site
// can take back those it no longer wants.
func (s *session) saveUpstream() {
	l := s.l
	l.mu.Lock()
	fs := make([]string, 0, len(l.upstream))
	for f := range l.upstream {
		fs = append(fs, f)
	}
	l.mu.Unlock()
	slices.Sort(fs)
	if err := l.save("subs", fs); err != nil && l.warn.due("save") {
		l.log.Warn("uplink subscriptions not saved", "err", err)
	}
}
