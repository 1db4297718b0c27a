package webhook

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/message"
)

// What a person running tern sees of each webhook (the console, GET /v1/admin/webhooks and the
// metrics): how its deliveries go, the last failure, what was given up on lately, and how far
// behind it is; and "retry now", which ends the wait before a failing hook's next attempt.

// maxRecentDeadLetters bounds the dead letters a hook remembers for the console; the letters
// themselves went to the dead-letter topic.
const maxRecentDeadLetters = 20

// DeadLetter describes a message a hook gave up on.
type DeadLetter struct {
	Time      time.Time `json:"time"`
	MessageID string    `json:"message_id"`
	Topic     string    `json:"topic"`
	Size      int       `json:"size"`
	Attempts  int       `json:"attempts"`
	Error     string    `json:"error"`
}

// HookStatus is a hook with how its deliveries go.
type HookStatus struct {
	Hook
	// State is "ok" (the last attempt succeeded, or none failed yet), "retrying" (waiting to try
	// a message again) or "failing" (the last attempt failed).
	State       string    `json:"state"`
	Attempts    uint64    `json:"attempts"`
	Delivered   uint64    `json:"delivered"`
	Failures    uint64    `json:"failures"`
	DeadLetters uint64    `json:"dead_letters"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	LastSuccess time.Time `json:"last_success_at,omitzero"`
	// Queued and Inflight are the hook's messages waiting and being attempted; Lag is the age of
	// the oldest of them in seconds (0 when none).
	Queued   int          `json:"queued"`
	Inflight int          `json:"inflight"`
	Lag      float64      `json:"lag_seconds"`
	Recent   []DeadLetter `json:"recent_dead_letters"`
}

// hookStats are one hook's figures. The counters are read without the lock.
type hookStats struct {
	attempts, delivered, failures, deadLetters atomic.Uint64
	// waiting counts the workers sleeping before a retry.
	waiting atomic.Int32
	// dirty: the figures changed since they were last written to the records (shared.go).
	dirty atomic.Bool

	mu          sync.Mutex
	lastErr     string
	lastErrAt   time.Time
	lastSuccess time.Time
	failing     bool
	recent      []DeadLetter
	// wake is closed by RetryNow to end the current waits; the next wait gets a new one.
	wake chan struct{}
}

func (s *hookStats) attempted(err error) {
	s.attempts.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		s.delivered.Add(1)
		s.lastSuccess = time.Now().UTC()
		s.failing = false
		return
	}
	s.failures.Add(1)
	s.lastErr, s.lastErrAt, s.failing = err.Error(), time.Now().UTC(), true
}

func (s *hookStats) gaveUp(m *message.Message, attempts int, cause error) {
	s.deadLetters.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.recent) == maxRecentDeadLetters {
		s.recent = append(s.recent[:0], s.recent[1:]...)
	}
	s.recent = append(s.recent, DeadLetter{Time: time.Now().UTC(), MessageID: fmt.Sprint(m.ID), Topic: m.Topic,
		Size: len(m.Payload), Attempts: attempts, Error: fmt.Sprint(cause)})
}

func (s *hookStats) wakeCh() chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.wake == nil {
		s.wake = make(chan struct{})
	}
	return s.wake
}

// retryWait waits d before another attempt, or less if RetryNow is called; false: stopping.
func (w *worker) retryWait(d time.Duration) bool {
	w.st.waiting.Add(1)
	defer w.st.waiting.Add(-1)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-w.st.wakeCh():
		return true
	case <-w.stopCh:
		return false
	}
}

// Status returns the hooks p may see (as List) with how they go.
func (m *Manager) Status(p *auth.Principal) []HookStatus {
	m.mu.Lock()
	all := p.Allow(auth.Admin, "webhooks")
	var ws []*worker
	for _, w := range m.workers {
		if all || w.h.Owner == p.Identity {
			ws = append(ws, w)
		}
	}
	var remote []Hook
	for _, h := range m.remote {
		if all || h.Owner == p.Identity {
			remote = append(remote, h)
		}
	}
	m.mu.Unlock()
	out := make([]HookStatus, 0, len(ws)+len(remote))
	for _, w := range ws {
		out = append(out, m.status(w))
	}
	if m.cfg.Directory != nil {
		for _, h := range remote {
			out = append(out, m.remoteStatus(h))
		}
	}
	return out
}

// StatusOf returns one hook's status, if p may see it (as Status). On a cluster node every node
// answers, from the records for a hook another node delivers.
func (m *Manager) StatusOf(p *auth.Principal, id string) (HookStatus, error) {
	for _, hs := range m.Status(p) {
		if hs.ID == id {
			return hs, nil
		}
	}
	return HookStatus{}, fmt.Errorf("%w: %s", ErrNotFound, id)
}

func (m *Manager) status(w *worker) HookStatus {
	h := w.h
	h.Secret = ""
	st := &w.st
	hs := HookStatus{Hook: h, State: "ok", Attempts: st.attempts.Load(), Delivered: st.delivered.Load(),
		Failures: st.failures.Load(), DeadLetters: st.deadLetters.Load()}
	st.mu.Lock()
	hs.LastError, hs.LastErrorAt, hs.LastSuccess = st.lastErr, st.lastErrAt, st.lastSuccess
	hs.Recent = append([]DeadLetter{}, st.recent...)
	if st.failing {
		hs.State = "failing"
	}
	st.mu.Unlock()
	if st.waiting.Load() > 0 {
		hs.State = "retrying"
	}
	hs.Queued, hs.Inflight, hs.Lag = m.backlog(h.ID)
	return hs
}

// backlog is a hook's queued and in-flight messages, and the age of the oldest in seconds.
func (m *Manager) backlog(id string) (queued, inflight int, lag float64) {
	d, err := m.b.SessionDetail(sessionID(id))
	if err != nil {
		return 0, 0, 0
	}
	var oldest time.Time
	if d.Oldest != nil {
		oldest = d.Oldest.Time
	}
	for _, f := range d.Inflight {
		if oldest.IsZero() || f.Time.Before(oldest) {
			oldest = f.Time
		}
	}
	if !oldest.IsZero() {
		lag = max(0, time.Since(oldest).Seconds())
	}
	return d.Queued, d.SessionInfo.Inflight, lag
}

// RetryNow ends the wait of a hook's workers before their next attempt, so a hook whose
// endpoint is back delivers at once. Its owner or an admin may. On a cluster node, a hook
// another node delivers is woken there (shared.go).
func (m *Manager) RetryNow(p *auth.Principal, id string) error {
	m.mu.Lock()
	w := m.workers[id]
	m.mu.Unlock()
	if w == nil {
		return m.retryElsewhere(p, id)
	}
	if w.h.Owner != p.Identity && !p.Allow(auth.Admin, "webhooks") {
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	w.wakeNow()
	return nil
}

// wakeNow ends the current backoff waits of w's workers.
func (w *worker) wakeNow() {
	w.st.mu.Lock()
	if w.st.wake != nil {
		close(w.st.wake)
		w.st.wake = nil
	}
	w.st.mu.Unlock()
}

// Lags returns each hook's lag in seconds, by id, for the metrics.
func (m *Manager) Lags() map[string]float64 {
	m.mu.Lock()
	ids := make([]string, 0, len(m.workers))
	for id := range m.workers {
		ids = append(ids, id)
	}
	m.mu.Unlock()
	out := make(map[string]float64, len(ids))
	for _, id := range ids {
		_, _, out[id] = m.backlog(id)
	}
	return out
}
