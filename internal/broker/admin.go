package broker

import (
	"errors"
	"slices"
	"time"
)

// What an administrator may look at and do to one session (the admin API's sessions routes and
// the console): describe it, disconnect its client, empty its queue. Each takes the session's
// lock for as long as it reads or changes it, like any connection's call.

var (
	// ErrNoSession is returned for a client id the core has no session for.
	ErrNoSession = errors.New("no such session")
	// ErrNotConnected is returned by Kick for a session without a connection.
	ErrNotConnected = errors.New("session has no connection")
	// ErrAdministrativeAction ends a connection an administrator disconnected (MQTT 5 reason
	// 0x98, Administrative action).
	ErrAdministrativeAction = errors.New("disconnected by an administrator")
)

// maxDetailInflight bounds the in-flight deliveries SessionDetail lists; the window is bounded
// by the in-flight limits anyway, this keeps an answer small.
const maxDetailInflight = 100

// SubscriptionInfo is one subscription of a session.
type SubscriptionInfo struct {
	Filter            string `json:"filter"`
	QoS               byte   `json:"qos"`
	NoLocal           bool   `json:"no_local,omitempty"`
	RetainAsPublished bool   `json:"retain_as_published,omitempty"`
	ID                uint32 `json:"id,omitempty"`
}

// InflightInfo is one delivery sent to the client and not yet acknowledged.
type InflightInfo struct {
	PacketID uint16 `json:"packet_id"`
	Topic    string `json:"topic"`
	QoS      byte   `json:"qos"`
	Size     int    `json:"size"`
	// Time is when the message was published.
	Time time.Time `json:"time"`
	// Released: a QoS 2 delivery whose receipt the client confirmed; only completion is missing.
	Released bool `json:"released,omitempty"`
}

// QueuedInfo describes the oldest queued delivery of a session. The queue is read from its
// front only (the store keeps it as a FIFO), so the rest is described by its depth and bytes.
type QueuedInfo struct {
	Topic string    `json:"topic"`
	QoS   byte      `json:"qos"`
	Size  int       `json:"size"`
	Time  time.Time `json:"time"`
}

// LimitsInfo is a session's queue limits as the admin API shows them; 0: no limit.
type LimitsInfo struct {
	MaxMessages int     `json:"max_messages"`
	MaxBytes    int64   `json:"max_bytes"`
	MaxAge      float64 `json:"max_age_seconds"`
	// Policy is what a full queue does: "drop_oldest" or "refuse".
	Policy string `json:"policy"`
}

func limitsInfo(l QueueLimits) LimitsInfo {
	p := "drop_oldest"
	if l.Policy == RefuseNew {
		p = "refuse"
	}
	return LimitsInfo{MaxMessages: l.MaxMessages, MaxBytes: l.MaxBytes, MaxAge: l.MaxAge.Seconds(), Policy: p}
}

// SessionDetail is one session as the admin API shows it.
type SessionDetail struct {
	SessionInfo
	// Expiry is the session expiry interval in seconds (NeverExpire: none).
	Expiry uint32 `json:"expiry"`
	// Disconnected is when the client left; zero while connected.
	Disconnected  time.Time          `json:"disconnected,omitzero"`
	Limits        LimitsInfo         `json:"limits"`
	Subscriptions []SubscriptionInfo `json:"subscription_list"`
	Inflight      []InflightInfo     `json:"inflight_list"`
	Oldest        *QueuedInfo        `json:"oldest_queued,omitempty"`
}

// SessionDetail describes the session of clientID.
func (b *Broker) SessionDetail(clientID string) (SessionDetail, error) {
	s := b.lookup(clientID)
	if s == nil {
		return SessionDetail{}, ErrNoSession
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.deleted {
		return SessionDetail{}, ErrNoSession
	}
	d := SessionDetail{
		SessionInfo: SessionInfo{ClientID: s.id, Identity: s.identity, Face: s.face.String(), Online: s.sink != nil,
			Durable: s.durable(), Subscriptions: s.subs.len(), Queued: s.queue.Len(), QueuedBytes: s.queue.Bytes(),
			Inflight: s.inflight.len()},
		Expiry: s.expiry, Limits: limitsInfo(*s.limits()),
		Subscriptions: make([]SubscriptionInfo, 0, s.subs.len()),
		Inflight:      []InflightInfo{},
	}
	if r := s.rare; r != nil {
		d.Dropped, d.Refused = r.dropped, r.refused
	}
	if s.disconnected != 0 {
		d.Disconnected = time.Unix(0, s.disconnected).UTC()
	}
	for sub := range s.subs.all() {
		d.Subscriptions = append(d.Subscriptions, SubscriptionInfo{Filter: sub.Filter, QoS: sub.QoS,
			NoLocal: sub.NoLocal, RetainAsPublished: sub.RetainAsPublished, ID: sub.ID})
	}
	slices.SortFunc(d.Subscriptions, func(a, b SubscriptionInfo) int {
		if a.Filter < b.Filter {
			return -1
		}
		return 1
	})
	s.inflight.each(func(f *inflight) {
		if len(d.Inflight) < maxDetailInflight {
			d.Inflight = append(d.Inflight, InflightInfo{PacketID: f.pid, Topic: f.item.Msg.Topic, QoS: f.item.QoS,
				Size: f.item.Size(), Time: time.Unix(0, f.item.Msg.Time).UTC(), Released: f.released})
		}
	})
	it, ok, err := s.queue.Front()
	if err != nil {
		return SessionDetail{}, b.storeFailed("reading a queue", err)
	}
	if ok {
		d.Oldest = &QueuedInfo{Topic: it.Msg.Topic, QoS: it.QoS, Size: it.Size(), Time: time.Unix(0, it.Msg.Time).UTC()}
	}
	return d, nil
}

// Kick disconnects the client of clientID's session, as a takeover would: the face closes the
// connection (an MQTT 5 client is told "administrative action") and the session lives on as its
// expiry says, with its will published unless the client comes back within its delay.
func (b *Broker) Kick(clientID string) error {
	s := b.lookup(clientID)
	if s == nil {
		return ErrNoSession
	}
	s.mu.Lock()
	sink, id := s.sink, s.identity
	s.mu.Unlock()
	if sink == nil {
		return ErrNotConnected
	}
	b.log.Info("disconnecting client: administrative action", "client", clientID, "identity", id)
	// Outside the lock: a face's Close may wait for its writer, which may be in the core.
	sink.Close(ErrAdministrativeAction)
	return nil
}

// PurgeQueue drops every queued delivery of clientID's session and reports how many went.
// Deliveries in flight stay: the client has them and will acknowledge them.
func (b *Broker) PurgeQueue(clientID string) (int, error) {
	s := b.lookup(clientID)
	if s == nil {
		return 0, ErrNoSession
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.deleted {
		return 0, ErrNoSession
	}
	n := s.queue.Len()
	if err := s.queue.Clear(); err != nil {
		return 0, b.storeFailed("purging a queue", err)
	}
	b.stats.Queued.Add(-int64(n))
	return n, nil
}

// FaceCounts counts the connected sessions by face ("" for the core's own clients).
func (b *Broker) FaceCounts() map[string]int {
	b.mu.Lock()
	all := make([]*Session, 0, len(b.sessions))
	for _, s := range b.sessions {
		all = append(all, s)
	}
	b.mu.Unlock()
	out := map[string]int{}
	for _, s := range all {
		if s.isOnline() {
			s.mu.Lock()
			out[s.face.String()]++
			s.mu.Unlock()
		}
	}
	return out
}

func (b *Broker) lookup(clientID string) *Session {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sessions[clientID]
}
