// Package webhook delivers messages to HTTP endpoints: a webhook is a durable subscription whose
// messages are POSTed to a URL, signed with HMAC-SHA256, retried with exponential backoff and
// jitter, and moved to a dead-letter topic after too many failed attempts. Each webhook is a
// persistent session in the core, so its queue survives restarts and a message is acknowledged
// only once the endpoint answered 2xx (or it was dead-lettered): delivery is at least once. The
// attempt count is kept on disk too (attempts.go), so a restart continues it. With the default
// concurrency of one, messages arrive in order.
package webhook

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/config"
	"github.com/ternmq/tern/internal/store"
	"github.com/ternmq/tern/internal/topic"
)

// Hook is a webhook's definition.
type Hook struct {
	ID     string `json:"id"`
	Owner  string `json:"owner"` // the identity that created it; deliveries act for it
	Filter string `json:"filter"`
	URL    string `json:"url"`
	// Secret signs each delivery (X-Tern-Signature); never shown after creation.
	Secret      string `json:"secret,omitempty"`
	MaxAttempts int    `json:"max_attempts"`
	// Rate caps deliveries per second (0: no cap); Concurrency is how many are in flight at once
	// (1, the default, keeps the order).
	Rate            float64   `json:"rate,omitempty"`
	Concurrency     int       `json:"concurrency"`
	DeadLetterTopic string    `json:"dead_letter_topic"`
	Created         time.Time `json:"created"`
	// Node is the cluster node that delivers the hook (empty outside a cluster). Stored, it is
	// the node the hook was created on, which claims the hook's session; listed, it is the node
	// the cluster's directory gives that session to now. See cluster.go.
	Node string `json:"node,omitempty"`
}

// Config holds the limits of every webhook.
type Config struct {
	// AllowPrivate lets webhooks target addresses that are not globally reachable: loopback,
	// private, link-local and the rest of guard.go's table (off: such targets are refused at
	// creation and at every connection).
	AllowPrivate bool
	// Timeout bounds one delivery attempt.
	Timeout time.Duration
	// BackoffBase and BackoffMax shape the retry delays: base, doubled per attempt, up to max,
	// each multiplied by a random factor in [0.5, 1).
	BackoffBase, BackoffMax time.Duration
	// MaxAttempts is the default and the upper bound of a hook's attempts per message.
	MaxAttempts int
	// MaxHooks bounds the number of webhooks; MaxConcurrency a hook's concurrency.
	MaxHooks       int
	MaxConcurrency int
	// Node is this cluster node's id (empty outside a cluster), and Directory the cluster's
	// session directory (nil outside one): a hook whose session another node holds is listed
	// here but delivered there (cluster.go).
	Node      string
	Directory Directory
}

// DefaultConfig returns the limits `tern serve` uses when nothing is configured: config.Default's.
func DefaultConfig() Config { return ConfigFrom(config.Default().Webhooks) }

// ConfigFrom is the webhooks' part of the configuration. A hook's concurrency is capped at 16,
// which is not configurable.
func ConfigFrom(w config.Webhooks) Config {
	return Config{AllowPrivate: w.AllowPrivate, Timeout: w.Timeout, BackoffBase: w.BackoffBase,
		BackoffMax: w.BackoffMax, MaxAttempts: w.MaxAttempts, MaxHooks: w.MaxHooks, MaxConcurrency: 16}
}

// Stats are the webhooks' counters.
type Stats struct {
	Attempts     atomic.Uint64 // requests made to endpoints
	Delivered    atomic.Uint64 // answered 2xx
	Failed       atomic.Uint64 // attempts that failed (and were retried or dead-lettered)
	DeadLettered atomic.Uint64 // messages given up on
}

// Errors of the management calls.
var (
	ErrNotFound  = errors.New("webhook not found")
	ErrTooMany   = errors.New("too many webhooks")
	ErrForbidden = errors.New("not allowed")
)

const recordsNS = "webhooks"

// Manager runs every webhook.
type Manager struct {
	b      *broker.Broker
	st     store.Records
	cfg    Config
	log    *slog.Logger
	client *http.Client
	stats  Stats

	mu      sync.Mutex
	workers map[string]*worker
	remote  map[string]Hook // hooks another cluster node delivers (cluster.go)
	closed  bool

	// recMu orders Create's store-and-start against the reaction to replicated changes, so a
	// hook is never started twice; kick wakes that reaction (cluster.go).
	recMu sync.Mutex
	kick  chan struct{}
	done  chan struct{}
	// retryKick wakes the reaction to a retry-now asked on another node, flushKick the writer of
	// the hooks' status to the records (shared.go); both on a cluster node only.
	retryKick, flushKick chan struct{}
	// retryPending: a start failed (no leader yet); a reconcile is due in a second.
	retryPending atomic.Bool
}

// New starts the webhooks kept in st.
func New(b *broker.Broker, st store.Records, cfg Config, log *slog.Logger) (*Manager, error) {
	d := DefaultConfig()
	if cfg.Timeout <= 0 {
		cfg.Timeout = d.Timeout
	}
	if cfg.BackoffBase <= 0 {
		cfg.BackoffBase = d.BackoffBase
	}
	if cfg.BackoffMax < cfg.BackoffBase {
		cfg.BackoffMax = max(d.BackoffMax, cfg.BackoffBase)
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = d.MaxAttempts
	}
	if cfg.MaxHooks <= 0 {
		cfg.MaxHooks = d.MaxHooks
	}
	if cfg.MaxConcurrency <= 0 {
		cfg.MaxConcurrency = d.MaxConcurrency
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tr := &http.Transport{
		DialContext:         guardedDialer(cfg.AllowPrivate).DialContext,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: cfg.Timeout,
	}
	m := &Manager{b: b, st: st, cfg: cfg, log: log, workers: map[string]*worker{}, remote: map[string]Hook{},
		kick: make(chan struct{}, 1), done: make(chan struct{}),
		retryKick: make(chan struct{}, 1), flushKick: make(chan struct{}, 1),
		client: &http.Client{Transport: tr, Timeout: cfg.Timeout,
			// A redirect could lead anywhere, including past the address check of the URL.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	var hooks []Hook
	err := st.Scan(recordsNS, func(_ string, v []byte) error {
		var h Hook
		if err := json.Unmarshal(v, &h); err != nil {
			log.Warn("webhook record unreadable, skipped", "err", err)
			return nil
		}
		hooks = append(hooks, h)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("webhooks: %w", err)
	}
	for _, h := range hooks {
		if !m.mine(h) {
			m.remote[h.ID] = h
			continue
		}
		if err := m.start(h); err != nil {
			log.Warn("webhook not started", "id", h.ID, "url", h.URL, "err", err)
		}
	}
	go m.follow()
	if cfg.Directory != nil {
		go m.flushStatus()
	}
	return m, nil
}

// Stats returns the counters.
func (m *Manager) Stats() *Stats { return &m.stats }

// Create validates h, stores it and starts delivering. p must be allowed to subscribe to the
// filter and to publish to the dead-letter topic (default "$webhooks/<id>/dead", allowed always).
func (m *Manager) Create(p *auth.Principal, h Hook) (Hook, error) {
	if _, err := topic.ParseFilter(h.Filter); err != nil {
		return Hook{}, fmt.Errorf("filter %q: %w", h.Filter, err)
	}
	if _, err := checkURL(h.URL, m.cfg.AllowPrivate); err != nil {
		return Hook{}, err
	}
	if !p.AllowFilter(auth.Subscribe, h.Filter) {
		return Hook{}, fmt.Errorf("%w: subscribe on %q is not granted", ErrForbidden, h.Filter)
	}
	var id [8]byte
	_, _ = rand.Read(id[:])
	h.ID = hex.EncodeToString(id[:])
	h.Owner = p.Identity
	h.Created = time.Now().UTC()
	h.Node = m.cfg.Node
	if h.MaxAttempts <= 0 || h.MaxAttempts > m.cfg.MaxAttempts {
		h.MaxAttempts = m.cfg.MaxAttempts
	}
	if h.Concurrency <= 0 {
		h.Concurrency = 1
	}
	if h.Concurrency > m.cfg.MaxConcurrency || h.Rate < 0 {
		return Hook{}, fmt.Errorf("concurrency must be 1..%d and rate not negative", m.cfg.MaxConcurrency)
	}
	if h.DeadLetterTopic == "" {
		h.DeadLetterTopic = "$webhooks/" + h.ID + "/dead"
	} else if err := topic.ValidName(h.DeadLetterTopic); err != nil {
		return Hook{}, fmt.Errorf("dead_letter_topic %q: %w", h.DeadLetterTopic, err)
	} else if !p.Allow(auth.Publish, h.DeadLetterTopic) {
		return Hook{}, fmt.Errorf("%w: publish on %q is not granted", ErrForbidden, h.DeadLetterTopic)
	}
	m.recMu.Lock()
	defer m.recMu.Unlock()
	m.mu.Lock()
	n := len(m.workers) + len(m.remote)
	m.mu.Unlock()
	if n >= m.cfg.MaxHooks {
		return Hook{}, fmt.Errorf("%w (webhooks.max_hooks %d)", ErrTooMany, m.cfg.MaxHooks)
	}
	raw, _ := json.Marshal(h)
	if err := m.st.Put(recordsNS, h.ID, raw); err != nil {
		return Hook{}, err
	}
	if err := m.start(h); err != nil {
		_ = m.st.Delete(recordsNS, h.ID)
		return Hook{}, err
	}
	return h, nil
}

// List returns the webhooks p owns, or all of them for an unrestricted principal or one with
// the admin grant on "webhooks". Secrets are left out.
func (m *Manager) List(p *auth.Principal) []Hook {
	m.mu.Lock()
	defer m.mu.Unlock()
	all := p.Allow(auth.Admin, "webhooks")
	out := []Hook{}
	for _, w := range m.workers {
		if all || w.h.Owner == p.Identity {
			h := w.h
			h.Secret = ""
			out = append(out, h)
		}
	}
	for _, h := range m.remote {
		if all || h.Owner == p.Identity {
			h.Secret = ""
			h.Node = m.nodeOf(h)
			out = append(out, h)
		}
	}
	return out
}

// Delete stops a webhook and drops its queue. Its owner or an admin may. A hook another cluster
// node delivers goes from the records here; that node stops it when the deletion reaches it.
func (m *Manager) Delete(p *auth.Principal, id string) error {
	m.recMu.Lock()
	defer m.recMu.Unlock()
	m.mu.Lock()
	w := m.workers[id]
	h, remote := m.remote[id]
	if w != nil {
		h = w.h
	}
	if (w == nil && !remote) || (h.Owner != p.Identity && !p.Allow(auth.Admin, "webhooks")) {
		m.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	delete(m.workers, id)
	delete(m.remote, id)
	m.mu.Unlock()
	if w != nil {
		w.stop(true)
	}
	if err := m.st.Delete(recordsNS, id); err != nil {
		return err
	}
	if m.cfg.Directory != nil {
		_ = m.st.Delete(statusNS, id)
		_ = m.st.Delete(retryNS, id)
	}
	return m.st.Delete(attemptsNS, id)
}

// Close stops every webhook; their queues stay for the next start.
func (m *Manager) Close() {
	m.mu.Lock()
	if !m.closed {
		close(m.done)
	}
	m.closed = true
	ws := slices.Collect(maps.Values(m.workers))
	m.mu.Unlock()
	for _, w := range ws {
		w.stop(false)
	}
}

// start connects a hook's session and runs its workers.
func (m *Manager) start(h Hook) error {
	grants := []auth.Grant{{Action: auth.Subscribe, Filter: h.Filter}, {Action: auth.Publish, Filter: h.DeadLetterTopic}}
	p, err := auth.NewPrincipal(h.Owner, sessionID(h.ID), grants)
	if err != nil {
		return err
	}
	att := newAttempts(m.loadAttempts(h.ID), func(raw []byte) error { return m.st.Put(attemptsNS, h.ID, raw) })
	w := &worker{m: m, h: h, att: att, k: newSink(h.Concurrency+256, att), stopCh: make(chan struct{})}
	w.h.Node = m.cfg.Node
	m.loadShared(w)
	if h.Rate > 0 {
		w.interval = time.Duration(float64(time.Second) / h.Rate)
	}
	c, _, err := m.b.Connect(context.Background(), broker.ConnectRequest{
		ClientID: sessionID(h.ID), Principal: p, Expiry: broker.NeverExpire, Sink: w.k, Face: "webhook",
		ReceiveMax: uint16(h.Concurrency),
	})
	if err != nil {
		return err
	}
	w.c = c
	if res := c.Subscribe([]broker.SubscribeRequest{{Filter: h.Filter, QoS: 1}}); res[0].Err != nil {
		c.Disconnect(broker.DisconnectRequest{Graceful: true, SetExpiry: true})
		return res[0].Err
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		c.Disconnect(broker.DisconnectRequest{Graceful: true})
		return errors.New("webhooks closed")
	}
	m.workers[h.ID] = w
	m.mu.Unlock()
	for range h.Concurrency {
		w.wg.Add(1)
		go w.run()
	}
	c.Start()
	return nil
}

func sessionID(id string) string { return broker.HookSessionPrefix + id }

// loadAttempts reads the attempt counts a hook's messages had when it last stopped. An unreadable
// record costs only the counts: those messages start again at attempt 1.
func (m *Manager) loadAttempts(id string) map[uint64]int {
	raw, ok, err := m.st.Get(attemptsNS, id)
	if err == nil && ok {
		var n map[uint64]int
		if n, err = decodeAttempts(raw); err == nil {
			return n
		}
	}
	if err != nil {
		m.log.Warn("webhook attempt counts unreadable; redeliveries restart at attempt 1", "webhook", id, "err", err)
	}
	return nil
}
