package webhook

import "encoding/json"

// On a cluster node the Manager's records are the cluster's replicated records: a hook created
// on any node is stored on every node. Exactly one node delivers it, the one it was created on
// (Hook.Node), so a message is POSTed once; the others list it. The Manager follows the records:
// a hook that appears is started if it is this node's and listed otherwise, one that goes is
// stopped and its queue dropped.

// RecordsChanged tells the Manager that a replicated write touched namespace ns. It never blocks
// (it is called from the cluster's apply goroutine): it only wakes follow.
func (m *Manager) RecordsChanged(ns string) {
	if ns != recordsNS {
		return
	}
	select {
	case m.kick <- struct{}{}:
	default: // a reconcile is already due; it will read the newest records
	}
}

// mine reports whether this node delivers h.
func (m *Manager) mine(h Hook) bool { return h.Node == m.cfg.Node }

// follow reconciles the running hooks with the records each time they change, until Close.
func (m *Manager) follow() {
	for {
		select {
		case <-m.done:
			return
		case <-m.kick:
			m.reconcile()
		}
	}
}

// reconcile starts this node's hooks that the records have and it does not run, lists the
// others', and stops (dropping the queue) those the records no longer have.
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
	var gone []*worker
	for id, w := range m.workers {
		if _, ok := want[id]; !ok {
			gone = append(gone, w)
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
	for _, h := range start {
		if err := m.start(h); err != nil {
			m.log.Warn("webhook not started", "id", h.ID, "url", h.URL, "err", err)
		}
	}
}
