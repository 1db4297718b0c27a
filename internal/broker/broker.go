package broker

import (
	"crypto/rand"
	"encoding/base32"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ternmq/tern/internal/store"
	"github.com/ternmq/tern/internal/store/memstore"
	"github.com/ternmq/tern/internal/topic"
)

// Config holds the core's limits and policies.
type Config struct {
	// MaxInflight caps unacknowledged QoS 1/2 deliveries per session (further capped by the
	// client's receive maximum).
	MaxInflight int
	// MaxInflightBytes caps the bytes of those deliveries, so large messages cannot pile up.
	MaxInflightBytes int64
	// MaxQueuedMessages and MaxQueuedBytes bound a session's queue of pending deliveries; when a
	// new message would exceed them the oldest are dropped and counted.
	MaxQueuedMessages int
	MaxQueuedBytes    int64
	// QueueQoS0 queues QoS 0 messages for offline persistent sessions too.
	QueueQoS0 bool
	// MaxSessionExpiry caps the session expiry interval clients ask for, in seconds; 0: no cap.
	MaxSessionExpiry uint32
	// MaxQoS is the highest QoS the server grants.
	MaxQoS byte
	// RetainAvailable: false refuses retained publishes.
	RetainAvailable bool
	// MaxSubscriptions caps subscriptions per session; 0: no cap.
	MaxSubscriptions int
	// MatchCacheEntries bounds the topic match cache.
	MatchCacheEntries int
}

// DefaultConfig returns the limits `tern serve` uses when nothing is configured.
func DefaultConfig() Config {
	return Config{
		MaxInflight:       1024,
		MaxInflightBytes:  8 << 20,
		MaxQueuedMessages: 10000,
		MaxQueuedBytes:    64 << 20,
		QueueQoS0:         true,
		MaxQoS:            2,
		RetainAvailable:   true,
		MaxSubscriptions:  10000,
		MatchCacheEntries: 65536,
	}
}

// Broker is the core. It is safe for concurrent use by any number of faces.
type Broker struct {
	cfg      Config
	log      *slog.Logger
	store    store.Store
	index    *topic.Index[*Session, *subscription]
	retained *retainedIndex
	stats    Stats
	nextID   atomic.Uint64

	// afterFunc schedules will delays and session expiry; tests replace it to fire timers by hand.
	afterFunc func(d time.Duration, f func()) stopper

	// mu guards sessions and closed; lock order is mu, then a session's mu, then the index.
	mu       sync.Mutex
	sessions map[string]*Session
	closed   bool
}

// New returns a core over st (nil: an in-memory store). Retained messages in st are loaded.
func New(cfg Config, st store.Store, log *slog.Logger) (*Broker, error) {
	if st == nil {
		st = memstore.New()
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxInflight <= 0 {
		cfg.MaxInflight = 1
	}
	b := &Broker{
		cfg:      cfg,
		log:      log,
		store:    st,
		index:    topic.NewIndex[*Session, *subscription](cfg.MatchCacheEntries),
		retained: newRetainedIndex(),
		sessions: map[string]*Session{},
		afterFunc: func(d time.Duration, f func()) stopper {
			return time.AfterFunc(d, f)
		},
	}
	// Message ids start from the clock so they stay unique across restarts.
	b.nextID.Store(uint64(time.Now().UnixNano()))
	if err := b.retained.load(st.Retained()); err != nil {
		return nil, err
	}
	b.stats.Retained.Store(int64(b.retained.len()))
	return b, nil
}

// Config returns the core's configuration.
func (b *Broker) Config() Config { return b.cfg }

// Stats returns the live counters.
func (b *Broker) Stats() *Stats { return &b.stats }

// Close disconnects every client. Sessions stay in the store.
func (b *Broker) Close() error {
	b.mu.Lock()
	b.closed = true
	var sinks []Sink
	for _, s := range b.sessions {
		s.mu.Lock()
		if s.sink != nil {
			sinks = append(sinks, s.sink)
		}
		s.mu.Unlock()
	}
	b.mu.Unlock()
	for _, k := range sinks {
		k.Close(ErrServerShuttingDown)
	}
	return nil
}

// Connect attaches a client to its session, creating, resuming or taking it over. The client
// gets no deliveries until the face calls Start on the returned Client, which lets the face send
// its connect acknowledgement first.
func (b *Broker) Connect(req ConnectRequest) (*Client, ConnectResult, error) {
	res := ConnectResult{ClientID: req.ClientID, Expiry: req.Expiry}
	if res.ClientID == "" {
		res.ClientID = newClientID()
		res.AssignedID = true
	}
	if b.cfg.MaxSessionExpiry > 0 && res.Expiry > b.cfg.MaxSessionExpiry {
		res.Expiry = b.cfg.MaxSessionExpiry
	}

	var wills []*Will
	var oldSink Sink

	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, res, ErrServerShuttingDown
	}
	s := b.sessions[res.ClientID]
	if s != nil {
		s.mu.Lock()
		if s.sink != nil {
			// Takeover: the old connection's will goes out unless the session continues and
			// the will was delayed (the new connection arrived within the delay).
			oldSink = s.sink
			if w := s.will; w != nil && (w.Delay == 0 || req.CleanStart) {
				wills = append(wills, w)
			}
			s.detach()
		}
		if w := s.pendingWill; w != nil {
			// A will waiting out its delay: a reconnect in time cancels it, unless the session ends.
			if req.CleanStart {
				wills = append(wills, w)
			}
			s.pendingWill = nil
		}
		s.stopTimers()
		if req.CleanStart {
			b.discardLocked(s)
			s.mu.Unlock()
			s = nil
		} else {
			res.SessionPresent = true
		}
	}
	if s == nil {
		var err error
		s, err = b.newSession(res.ClientID)
		if err != nil {
			b.mu.Unlock()
			return nil, res, err
		}
		b.sessions[res.ClientID] = s
		b.stats.Sessions.Add(1)
		s.mu.Lock()
	}
	s.gen++
	s.sink = req.Sink
	s.identity = req.Identity
	s.expiry = res.Expiry
	s.will = req.Will
	s.inflightMax = b.cfg.MaxInflight
	if req.ReceiveMax > 0 && int(req.ReceiveMax) < s.inflightMax {
		s.inflightMax = int(req.ReceiveMax)
	}
	c := &Client{b: b, s: s, gen: s.gen, ClientID: res.ClientID, Identity: req.Identity}
	s.mu.Unlock()
	b.mu.Unlock()
	b.stats.Connected.Add(1)

	if oldSink != nil {
		oldSink.Close(ErrSessionTakenOver)
	}
	for _, w := range wills {
		b.publishWill(w)
	}
	return c, res, nil
}

func (b *Broker) newSession(id string) (*Session, error) {
	q, err := b.store.Sessions().Queue(id)
	if err != nil {
		return nil, err
	}
	return &Session{b: b, id: id, subs: map[string]*subscription{}, queue: q}, nil
}

// discardLocked ends a session: its subscriptions leave the index and its queue is dropped.
// The caller holds b.mu and s.mu.
func (b *Broker) discardLocked(s *Session) {
	for _, sub := range s.subs {
		b.index.Unsubscribe(sub.filter, s)
	}
	b.stats.Subscriptions.Add(-int64(len(s.subs)))
	s.subs = nil
	s.deleted = true
	s.stopTimers()
	if err := s.queue.Clear(); err != nil {
		b.log.Error("clearing session queue", "client", s.id, "err", err)
	}
	if err := b.store.Sessions().Delete(s.id); err != nil {
		b.log.Error("deleting session", "client", s.id, "err", err)
	}
	if b.sessions[s.id] == s {
		delete(b.sessions, s.id)
		b.stats.Sessions.Add(-1)
	}
}

func (b *Broker) publishWill(w *Will) {
	if _, err := b.publish(nil, w.Msg); err != nil {
		b.log.Warn("will not published", "topic", w.Msg.Topic, "err", err)
	}
}

// stopper cancels a scheduled function (a *time.Timer in production).
type stopper interface{ Stop() bool }

// now is the core's clock in Unix nanoseconds.
func now() int64 { return time.Now().UnixNano() }

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

func newClientID() string {
	var b [10]byte
	_, _ = rand.Read(b[:])
	return "tern-" + idEncoding.EncodeToString(b[:])
}
