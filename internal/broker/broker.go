package broker

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base32"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/clock"
	"github.com/ternmq/tern/internal/config"
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
	// Queue bounds every session's queue of pending deliveries, unless a QueueRule matches its
	// client id; what happens when a queue is full is the limits' Policy.
	Queue      QueueLimits
	QueueRules []QueueRule
	// SweepInterval and SweepBudget pace the background removal of expired queued messages:
	// at most SweepBudget per interval, so a huge backlog never stalls the core.
	SweepInterval time.Duration
	SweepBudget   int
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
	// Auth authenticates every connecting client and its principal's grants are checked on every
	// publish and subscribe; nil admits every client unrestricted.
	Auth Authenticator
	// Limits bound connections, publish rates and payloads.
	Limits AbuseLimits
	// LogInterval is the least time between two warnings of one cause (full queues, refusals,
	// store failures). Default one minute.
	LogInterval time.Duration

	// Clock is the time the core runs on: message times and expiry, will delays, session expiry,
	// credential lifetimes, rate limits and the expiry sweep. Nil: the system clock.
	Clock clock.Clock
}

// DefaultConfig returns the limits `tern serve` uses when nothing is configured: config.Default's.
func DefaultConfig() Config { return ConfigFrom(config.Default()) }

// ConfigFrom is the core's part of a configuration. The settings users do not configure (the
// sweep, the match cache) get their fixed values here.
func ConfigFrom(cfg config.Config) Config {
	c := Config{
		MaxInflight:       cfg.Session.MaxInflight,
		MaxInflightBytes:  cfg.Session.MaxInflightBytes,
		Queue:             queueLimits(cfg.Session.QueueLimits),
		QueueQoS0:         cfg.Session.QueueQoS0,
		MaxSessionExpiry:  uint32(cfg.Session.MaxExpiry / time.Second),
		MaxSubscriptions:  cfg.Session.MaxSubscriptions,
		MaxQoS:            byte(cfg.MQTT.MaxQoS),
		RetainAvailable:   cfg.MQTT.RetainAvailable,
		Limits:            abuseLimits(cfg.Limits),
		LogInterval:       cfg.Limits.LogInterval,
		SweepInterval:     time.Second,
		SweepBudget:       10000,
		MatchCacheEntries: 65536,
	}
	for _, r := range cfg.Session.QueueRules {
		c.QueueRules = append(c.QueueRules, QueueRule{ClientID: r.ClientID, Limits: queueLimits(r.QueueLimits)})
	}
	return c
}

func queueLimits(q config.QueueLimits) QueueLimits {
	l := QueueLimits{MaxMessages: q.MaxQueuedMessages, MaxBytes: q.MaxQueuedBytes, MaxAge: q.MaxQueueAge}
	if q.QueueFullPolicy == "refuse" {
		l.Policy = RefuseNew
	}
	return l
}

func abuseLimits(l config.Limits) AbuseLimits {
	return AbuseLimits{
		MaxConnections:            l.MaxConnections,
		MaxConnectionsPerIdentity: l.MaxConnectionsPerIdentity,
		PublishRate:               l.PublishRate,
		PublishBurst:              l.PublishBurst,
		PublishBytesRate:          l.PublishBytesRate,
		MaxThrottle:               l.MaxThrottle,
		MaxPayload:                l.MaxPayload,
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

	clock clock.Clock

	// warn logs a cause at most once per interval (store failures, full queues).
	warn rateLimitedLog
	// sweepTimer runs the next expiry sweep; sweeping counts sweeps under way, which Close waits
	// for. Both guarded by mu.
	sweepTimer clock.Timer
	sweeping   sync.WaitGroup

	// mu guards sessions and closed; lock order is mu, then a session's mu, then the index.
	mu       sync.Mutex
	sessions map[string]*Session
	closed   bool
	// identities counts the connections of each authenticated identity and holds its shared
	// rate budget; guarded by mu.
	identities map[string]*identityUse
}

// New returns a core over st (nil: an in-memory store). Everything in st is recovered: retained
// messages, and sessions with their subscriptions, queues, in-flight state and wills.
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
		cfg:        cfg,
		log:        log,
		store:      st,
		index:      topic.NewIndex[*Session, *subscription](cfg.MatchCacheEntries),
		retained:   newRetainedIndex(),
		sessions:   map[string]*Session{},
		identities: map[string]*identityUse{},
		clock:      cfg.Clock,
		warn:       rateLimitedLog{logger: log, every: cmp.Or(cfg.LogInterval, time.Minute)},
	}
	if b.clock == nil {
		b.clock = clock.Real
	}
	b.warn.clock = b.clock
	// Message ids start from the clock, and above anything stored, so they stay unique across
	// restarts even if the clock went back.
	b.nextID.Store(max(uint64(b.now()), st.LastMessageID()))
	if err := b.retained.load(st.Retained()); err != nil {
		return nil, err
	}
	b.stats.Retained.Store(int64(b.retained.len()))
	if err := b.recoverSessions(); err != nil {
		return nil, err
	}
	b.scheduleSweep()
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
	if b.sweepTimer != nil {
		b.sweepTimer.Stop()
	}
	var sinks []Sink
	for _, s := range b.sessions {
		s.mu.Lock()
		if s.sink != nil {
			sinks = append(sinks, s.sink)
		} else if s.dirty {
			s.saveLocked()
		}
		s.mu.Unlock()
	}
	b.mu.Unlock()
	for _, k := range sinks {
		k.Close(ErrServerShuttingDown)
	}
	b.sweeping.Wait()
	return nil
}

// Connect attaches a client to its session, creating, resuming or taking it over. The client
// gets no deliveries until the face calls Start on the returned Client, which lets the face send
// its connect acknowledgement first.
//
// The client is authenticated first (which may wait for a password hash or the external URL,
// bounded by ctx); the errors then wrap auth's (auth.ErrBadCredentials and the others) or are
// this package's refusals (ErrWillNotAuthorized, ErrClientIDInUse, ErrConnectionLimit).
func (b *Broker) Connect(ctx context.Context, req ConnectRequest) (*Client, ConnectResult, error) {
	res := ConnectResult{ClientID: req.ClientID, Expiry: req.Expiry}
	if strings.HasPrefix(req.ClientID, "$") && (req.Principal == nil || req.Principal.Source != auth.SourceInternal) {
		// Reserved for the broker's own sessions (webhooks), which clients must not take over.
		return nil, res, ErrClientIDReserved
	}
	if res.ClientID == "" {
		res.ClientID = newClientID()
		res.AssignedID = true
	}
	if b.cfg.MaxSessionExpiry > 0 && res.Expiry > b.cfg.MaxSessionExpiry {
		res.Expiry = b.cfg.MaxSessionExpiry
	}
	p := req.Principal
	if p == nil {
		creds := req.Credentials
		creds.ClientID = res.ClientID
		var err error
		if p, err = b.authenticate(ctx, creds); err != nil {
			return nil, res, err
		}
	}
	res.Principal = p
	if !allowWill(p, req.Will) {
		b.stats.NotAuthorized.Add(1)
		return nil, res, ErrWillNotAuthorized
	}
	if req.Will != nil {
		stampSender(req.Will.Msg, p.Identity)
		stampExpiry(req.Will.Msg, b.now())
	}

	var wills []*Will
	var oldSink Sink
	// takenOver is the identity of an announced connection this one takes over (see events.go).
	var takenOver *string
	var orphaned []pendingCall // calls the replaced connection will not answer

	// A session that is to outlive its connection must be saved: while the store refuses writes
	// (a failed or full disk), it is refused (MQTT: server unavailable) rather than accepted with
	// a record that is not kept.
	if res.Expiry > 0 {
		if err := b.store.Health(); err != nil {
			return nil, res, b.storeFailed("saving a new session", err)
		}
	}

	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, res, ErrServerShuttingDown
	}
	s := b.sessions[res.ClientID]
	if req.Exclusive && s != nil {
		s.mu.Lock()
		busy := s.sink != nil
		s.mu.Unlock()
		if busy {
			b.mu.Unlock()
			return nil, res, ErrClientIDInUse
		}
	}
	if err := b.claimLocked(s, p.Identity, res.ClientID); err != nil {
		b.mu.Unlock()
		return nil, res, err
	}
	if s != nil {
		s.mu.Lock()
		if s.sink != nil {
			// Takeover: the old connection's will goes out unless the session continues and
			// the will was delayed (the new connection arrived within the delay).
			oldSink = s.sink
			if s.announced {
				id := s.identity
				takenOver = &id
			}
			if w := s.will; w != nil && (w.Delay == 0 || req.CleanStart) {
				wills = append(wills, w)
			}
			s.detach()
			orphaned = s.takeCalls()
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
			b.dropUnauthorizedLocked(s, p)
			if !s.durable() && res.Expiry > 0 {
				if err := s.makeDurable(); err != nil {
					s.mu.Unlock()
					b.mu.Unlock()
					return nil, res, storageError(err)
				}
			}
		}
	}
	if s == nil {
		var err error
		s, err = b.newSession(res.ClientID, res.Expiry > 0)
		if err != nil {
			b.mu.Unlock()
			return nil, res, storageError(err)
		}
		b.sessions[res.ClientID] = s
		b.stats.Sessions.Add(1)
		s.mu.Lock()
	}
	s.gen++
	s.sink = req.Sink
	s.identity = p.Identity
	s.announced = req.Announce
	rate := b.attachLocked(p.Identity)
	b.stats.Connected.Add(1)
	if !p.Expires.IsZero() {
		gen := s.gen
		s.credTimer = b.clock.AfterFunc(p.Expires.Sub(b.clock.Now()), func() { b.credentialsDue(s, gen) })
	}
	s.expiry = res.Expiry
	s.will = req.Will
	s.inflightMax = b.cfg.MaxInflight
	if req.ReceiveMax > 0 && int(req.ReceiveMax) < s.inflightMax {
		s.inflightMax = int(req.ReceiveMax)
	}
	s.limits = b.limitsFor(res.ClientID)
	s.disconnected = 0
	// The record now holds the will, so a crash while the client is connected still sends it.
	s.saveLocked()
	c := &Client{b: b, s: s, gen: s.gen, ClientID: res.ClientID, Identity: p.Identity, principal: p, rate: rate,
		announce: req.Announce, batch: req.Batch}
	s.mu.Unlock()
	b.mu.Unlock()

	if oldSink != nil {
		oldSink.Close(ErrSessionTakenOver)
	}
	if takenOver != nil {
		// The old connection's Disconnect finds the session gone to this one and says nothing.
		b.announce("disconnected", map[string]any{"client_id": res.ClientID, "identity": *takenOver, "reason": "session_taken_over"})
	}
	b.failCalls(orphaned, "service disconnected")
	if req.Announce {
		b.announce("connected", map[string]any{"client_id": res.ClientID, "identity": p.Identity, "face": req.Face, "remote": req.RemoteAddr})
	}
	for _, w := range wills {
		b.publishWill(w)
	}
	return c, res, nil
}

// newSession makes an empty session. A durable one (it outlives its connection) keeps its queue
// and in-flight state in the store; any other keeps them in memory only.
func (b *Broker) newSession(id string, durable bool) (*Session, error) {
	s := &Session{b: b, id: id, subs: map[string]*subscription{}, limits: b.limitsFor(id)}
	if !durable {
		s.queue = &memstore.Queue{}
		return s, nil
	}
	if err := s.openDurable(); err != nil {
		return nil, err
	}
	return s, nil
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
	b.stats.Queued.Add(-int64(s.queue.Len()))
	if err := s.queue.Clear(); err != nil {
		b.storeFailed("clearing a session queue", err)
	}
	if s.durable() {
		if err := b.store.Sessions().Delete(s.id); err != nil {
			b.storeFailed("deleting a session", err)
		}
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
// now is the core's time in Unix nanoseconds.
func (b *Broker) now() int64 { return b.clock.Now().UnixNano() }

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

func newClientID() string {
	var b [10]byte
	_, _ = rand.Read(b[:])
	return "tern-" + idEncoding.EncodeToString(b[:])
}
