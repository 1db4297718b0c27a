package webhook

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/broker"
)

// On a cluster node the Manager's records are the cluster's replicated records: a hook created
// on any node is stored on every node. A hook's session ($webhook-<id>) is in the cluster's
// session directory and replicated like a client's, so its queue is on every node and the
// leader gives it to a live node when its node dies. Exactly one node delivers a hook: the one
// the directory names as the holder of its session (before the first claim, the node it was
// created on, Hook.Node in the record, which claims it). The Manager follows the records and the
// directory: a hook that appears, or whose session this node takes up, is started here; one
// whose session another node took is stopped here (its queue stays, the other node goes on with
// it); one that goes is stopped and its queue dropped.

// Directory is what a cluster node tells the Manager (cluster.Node has it).
type Directory interface {
	// SessionOwner returns the node holding a session, false when none does yet.
	SessionOwner(clientID string) (node string, ok bool)
	// Lived is closed once the node holds the sessions the cluster gives it; until then its
	// directory may be behind and no hook starts here.
	Lived() <-chan struct{}
}

// RecordsChanged tells the Manager that a replicated write touched namespace ns. It never blocks
// (it is called from the cluster's apply goroutine): it only wakes follow.
func (m *Manager) RecordsChanged(ns string) {
	switch ns {
	case recordsNS:
		poke(m.kick)
	case retryNS:
		poke(m.retryKick)
	}
}

// SessionsChanged tells the Manager that this node took up or let go of a session (from the
// cluster's apply goroutine: it never blocks).
func (m *Manager) SessionsChanged(clientID string) {
	if strings.HasPrefix(clientID, broker.HookSessionPrefix) {
		poke(m.kick)
	}
}

func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default: // already due; it will read the newest state
	}
}

// live reports whether this node may start hooks: always outside a cluster.
func (m *Manager) live() bool {
	if m.cfg.Directory == nil {
		return true
	}
	select {
	case <-m.cfg.Directory.Lived():
		return true
	default:
		return false
	}
}

// nodeOf is the node that delivers h.
func (m *Manager) nodeOf(h Hook) string {
	if d := m.cfg.Directory; d != nil {
		if node, ok := d.SessionOwner(sessionID(h.ID)); ok {
			return node
		}
	}
	return h.Node
}

// mine reports whether this node delivers h.
func (m *Manager) mine(h Hook) bool { return m.live() && m.nodeOf(h) == m.cfg.Node }

// follow reconciles the running hooks with the records and the directory each time they change,
// until Close.
func (m *Manager) follow() {
	var lived <-chan struct{}
	if m.cfg.Directory != nil {
		lived = m.cfg.Directory.Lived()
	}
	for {
		select {
		case <-m.done:
			return
		case <-lived:
			lived = nil
			m.reconcile()
		case <-m.kick:
			m.reconcile()
		case <-m.retryKick:
			m.retryAsked()
		}
	}
}

// reconcile starts the hooks this node delivers that it does not run, lists the others, stops
// those another node delivers now (keeping their queues) and those the records no longer have
// (dropping their queues), and ends the sessions of deleted hooks this node took up.
func (m *Manager) reconcile() {
	m.recMu.Lock()
	defer m.recMu.Unlock()
	want := map[string]Hook{}
	err := m.st.Scan(recordsNS, func(_ string, v []byte) error {
		var h Hook
		if json.Unmarshal(v, &h) == nil {
			want[h.ID] = h
		}
		return nil
	})
	if err != nil {
		m.log.Warn("webhook records unreadable", "err", err)
		return
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	var gone, moved []*worker
	for id, w := range m.workers {
		h, ok := want[id]
		switch {
		case !ok:
			gone = append(gone, w)
			delete(m.workers, id)
		case !m.mine(h):
			moved = append(moved, w)
			delete(m.workers, id)
		}
	}
	var start []Hook
	m.remote = map[string]Hook{}
	for id, h := range want {
		switch {
		case !m.mine(h):
			m.remote[id] = h
		case m.workers[id] == nil:
			start = append(start, h)
		}
	}
	m.mu.Unlock()
	for _, w := range gone {
		w.stop(true)
	}
	for _, w := range moved {
		m.log.Info("webhook delivered by another node now", "id", w.h.ID, "node", m.nodeOf(w.h))
		w.stop(false)
	}
	failed := false
	for _, h := range start {
		if err := m.start(h); err != nil {
			failed = true
			m.log.Warn("webhook not started", "id", h.ID, "url", h.URL, "err", err)
		} else if m.cfg.Directory != nil {
			m.log.Info("webhook delivered by this node", "id", h.ID, "url", h.URL)
		}
	}
	if m.cfg.Directory != nil && m.live() {
		m.endOrphans(want)
	}
	if failed && m.cfg.Directory != nil && m.retryPending.CompareAndSwap(false, true) {
		// On a cluster node a start fails while no leader is reachable: try again.
		time.AfterFunc(time.Second, func() {
			m.retryPending.Store(false)
			poke(m.kick)
		})
	}
}

// endOrphans ends the sessions of deleted hooks that this node holds: a hook deleted while its
// node was down leaves a session the cluster then gives to a live node, which nobody would
// otherwise end.
func (m *Manager) endOrphans(want map[string]Hook) {
	for _, id := range m.b.SessionIDs() {
		hid, ok := strings.CutPrefix(id, broker.HookSessionPrefix)
		if !ok {
			continue
		}
		if _, ok := want[hid]; ok {
			continue
		}
		d, err := m.b.SessionDetail(id)
		if err != nil || d.Online {
			continue
		}
		p, err := auth.NewPrincipal(d.Identity, id, nil)
		if err != nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, _, err := m.b.Connect(ctx, broker.ConnectRequest{ClientID: id, Principal: p, CleanStart: true, Face: "webhook", Sink: newSink(1, newAttempts(nil, nil))})
		cancel()
		if err != nil {
			m.log.Debug("session of a deleted webhook not ended yet", "session", id, "err", err)
			continue
		}
		c.Disconnect(broker.DisconnectRequest{Graceful: true, SetExpiry: true})
		m.log.Info("session of a deleted webhook ended", "session", id)
	}
}
