package broker

import (
	"cmp"
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

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

	// NoInterest: no uplink or cluster link will ask which filters the sessions subscribe to
	// (Interest, WatchInterest), so the broker does not keep count.
	NoInterest bool

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
	// An uplink's trunk session queues by the uplink's own limits, ahead of any rule.
	for _, u := range cfg.Route.Uplinks {
		c.QueueRules = append(c.QueueRules, QueueRule{ClientID: config.TrunkClientID(u.Name), Limits: queueLimits(u.QueueLimits())})
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
	interest interest
	queriers queriers
	// cluster is set on a cluster node (SetCluster), before clients connect.
	cluster Cluster

	clock clock.Clock

	// warn logs a cause at most once per interval (store failures, full queues).
	warn rateLimitedLog
	// sweepTimer runs the next expiry sweep; sweeping counts sweeps under way, which Close waits
	// for. Both guarded by mu.
	sweepTimer clock.Timer
	sweeping   sync.WaitGroup
	// sweepList holds the sessions the sweep must visit: those with something queued or a record
	// to save (Session.sweepListed). A broker of a million idle devices has almost none, so the
	// sweep does not walk every session each second. sweepMu is a leaf lock: nothing is locked
	// while it is held.
	sweepMu   sync.Mutex
	sweepList []*Session

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
	// The in-flight window is counted in MQTT packet identifiers, 16 bits.
	cfg.MaxInflight = min(max(cfg.MaxInflight, 1), math.MaxUint16)
	if len(cfg.QueueRules) > maxQueueRules {
		return nil, fmt.Errorf("broker: %d queue rules, at most %d", len(cfg.QueueRules), maxQueueRules)
	}
	b := &Broker{
		cfg:        cfg,
		log:        log,
		store:      st,
		index:      newIndex(cfg.MatchCacheEntries),
		retained:   newRetainedIndex(),
		sessions:   map[string]*Session{},
		identities: map[string]*identityUse{},
		clock:      cfg.Clock,
		warn:       rateLimitedLog{logger: log, every: cmp.Or(cfg.LogInterval, time.Minute)},
	}
	b.interest.off = cfg.NoInterest
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

// newSession makes an empty session. A durable one (it outlives its connection) keeps its queue
// and in-flight state in the store; any other keeps them in memory only.
func (b *Broker) newSession(id string, durable bool) (*Session, error) {
	s := &Session{b: b, id: id, limitRule: b.limitRule(id)}
	if !durable {
		s.queue = noQueue
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
	for sub := range s.subs.all() {
		b.indexRemove(sub.filter(), s)
	}
	b.stats.Subscriptions.Add(-int64(s.subs.len()))
	s.subs.clear()
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
