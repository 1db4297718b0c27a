package webhook

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/ternmq/tern/internal/auth"
)

// On a cluster node a hook's status and "retry now" are answered on every node, not only on the
// one delivering it, through the replicated records rather than by asking that node: the
// delivering node writes its figures to a record after its attempts (statusNS), every node reads
// them from there, and they outlive the node, so the node that takes a hook over carries its
// counts on. Retry-now asked on another node is a record too (retryNS): the delivering node sees
// it change and ends its workers' backoff wait.
const (
	statusNS = "webhook-status"
	retryNS  = "webhook-retry"
)

// sharedStatus is the part of a hook's status kept in the records.
type sharedStatus struct {
	Attempts    uint64       `json:"attempts"`
	Delivered   uint64       `json:"delivered"`
	Failures    uint64       `json:"failures"`
	DeadLetters uint64       `json:"dead_letters"`
	LastError   string       `json:"last_error,omitempty"`
	LastErrorAt time.Time    `json:"last_error_at,omitzero"`
	LastSuccess time.Time    `json:"last_success_at,omitzero"`
	Failing     bool         `json:"failing,omitempty"`
	Recent      []DeadLetter `json:"recent,omitempty"`
}

func (s *hookStats) shared() sharedStatus {
	out := sharedStatus{Attempts: s.attempts.Load(), Delivered: s.delivered.Load(), Failures: s.failures.Load(),
		DeadLetters: s.deadLetters.Load()}
	s.mu.Lock()
	out.LastError, out.LastErrorAt, out.LastSuccess, out.Failing = s.lastErr, s.lastErrAt, s.lastSuccess, s.failing
	out.Recent = append([]DeadLetter(nil), s.recent...)
	s.mu.Unlock()
	return out
}

// loadShared seeds a hook's figures and its last retry-now from the records when it starts on a
// cluster node: it may have been delivered by another node until now.
func (m *Manager) loadShared(w *worker) {
	if m.cfg.Directory == nil {
		return
	}
	if v, ok, err := m.st.Get(retryNS, w.h.ID); err == nil && ok {
		w.retrySeen = string(v)
	}
	ss, ok := m.readShared(w.h.ID)
	if !ok {
		return
	}
	st := &w.st
	st.attempts.Store(ss.Attempts)
	st.delivered.Store(ss.Delivered)
	st.failures.Store(ss.Failures)
	st.deadLetters.Store(ss.DeadLetters)
	st.lastErr, st.lastErrAt, st.lastSuccess, st.failing = ss.LastError, ss.LastErrorAt, ss.LastSuccess, ss.Failing
	st.recent = ss.Recent
}

func (m *Manager) readShared(id string) (sharedStatus, bool) {
	var ss sharedStatus
	v, ok, err := m.st.Get(statusNS, id)
	if err != nil || !ok || json.Unmarshal(v, &ss) != nil {
		return sharedStatus{}, false
	}
	if len(ss.Recent) > maxRecentDeadLetters {
		ss.Recent = ss.Recent[len(ss.Recent)-maxRecentDeadLetters:]
	}
	return ss, true
}

// statusChanged marks a hook's figures to be written to the records, on a cluster node.
func (m *Manager) statusChanged(w *worker) {
	if m.cfg.Directory == nil {
		return
	}
	w.st.dirty.Store(true)
	poke(m.flushKick)
}

// flushStatus writes the figures of the hooks that changed, until Close. One writer for all
// hooks: while a write goes through the log, the changes made meanwhile wait for the next one,
// so a busy hook costs one write per round trip, not one per attempt.
func (m *Manager) flushStatus() {
	for {
		select {
		case <-m.done:
			return
		case <-m.flushKick:
		}
		for _, w := range m.running() {
			if !w.st.dirty.Swap(false) {
				continue
			}
			raw, _ := json.Marshal(w.st.shared())
			if err := m.st.Put(statusNS, w.h.ID, raw); err != nil {
				// Written again after the next attempt.
				w.st.dirty.Store(true)
				m.log.Debug("webhook status not shared", "webhook", w.h.ID, "err", err)
			}
		}
	}
}

// remoteStatus is the status of a hook another node delivers, from the records. What is queued
// is that node's to know: Queued, Inflight and Lag are 0 here.
func (m *Manager) remoteStatus(h Hook) HookStatus {
	h.Secret = ""
	h.Node = m.nodeOf(h)
	hs := HookStatus{Hook: h, State: "ok", Recent: []DeadLetter{}}
	if ss, ok := m.readShared(h.ID); ok {
		hs.Attempts, hs.Delivered, hs.Failures, hs.DeadLetters = ss.Attempts, ss.Delivered, ss.Failures, ss.DeadLetters
		hs.LastError, hs.LastErrorAt, hs.LastSuccess = ss.LastError, ss.LastErrorAt, ss.LastSuccess
		hs.Recent = append(hs.Recent, ss.Recent...)
		if ss.Failing {
			hs.State = "failing"
		}
	}
	return hs
}

// retryElsewhere asks the node delivering a hook to retry now, through the records.
func (m *Manager) retryElsewhere(p *auth.Principal, id string) error {
	m.mu.Lock()
	h, ok := m.remote[id]
	m.mu.Unlock()
	if !ok || m.cfg.Directory == nil || (h.Owner != p.Identity && !p.Allow(auth.Admin, "webhooks")) {
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	var nonce [8]byte
	_, _ = rand.Read(nonce[:])
	return m.st.Put(retryNS, id, []byte(hex.EncodeToString(nonce[:])))
}

// retryAsked wakes the hooks run here whose retry-now record changed.
func (m *Manager) retryAsked() {
	for _, w := range m.running() {
		v, ok, err := m.st.Get(retryNS, w.h.ID)
		if err != nil || !ok || string(v) == w.retrySeen {
			continue
		}
		w.retrySeen = string(v)
		w.wakeNow()
	}
}

// running is the hooks' workers run here now.
func (m *Manager) running() []*worker {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Collect(maps.Values(m.workers))
}
