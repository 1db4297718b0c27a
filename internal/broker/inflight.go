package broker

import "github.com/ternmq/tern/internal/store"

// inflight is one QoS 1/2 delivery awaiting its acknowledgement.
type inflight struct {
	pid  uint16
	item store.Item
	// released: the client sent PUBREC and we sent PUBREL; only PUBCOMP is missing.
	released bool
	done     bool
}

// inflightWindow tracks a session's outstanding deliveries by packet id, remembering the order in
// which they were sent so a reconnect re-sends them in that order.
type inflightWindow struct {
	byID  map[uint16]*inflight
	order []*inflight // send order; done entries are holes compacted lazily
	last  uint16
	bytes int64
}

func (w *inflightWindow) len() int { return len(w.byID) }

// hasRoom reports whether another delivery fits the count and byte limits. One delivery is always
// allowed when the window is empty, whatever its size.
func (w *inflightWindow) hasRoom(maxCount int, maxBytes int64) bool {
	if len(w.byID) == 0 {
		return true
	}
	return len(w.byID) < maxCount && (maxBytes <= 0 || w.bytes < maxBytes)
}

// nextID returns a packet id not in use. The window is far smaller than the id space, so the
// search is short.
func (w *inflightWindow) nextID() uint16 {
	for {
		w.last++
		if w.last == 0 {
			w.last = 1
		}
		if _, used := w.byID[w.last]; !used {
			return w.last
		}
	}
}

func (w *inflightWindow) add(pid uint16, it store.Item) {
	if w.byID == nil {
		// Made on first use: most sessions never have a QoS 1/2 delivery in flight.
		w.byID = map[uint16]*inflight{}
	}
	f := &inflight{pid: pid, item: it}
	w.byID[pid] = f
	w.order = append(w.order, f)
	w.bytes += int64(it.Size())
}

func (w *inflightWindow) remove(pid uint16) bool {
	f, ok := w.byID[pid]
	if !ok {
		return false
	}
	delete(w.byID, pid)
	f.done = true
	w.bytes -= int64(f.item.Size())
	w.compact()
	return true
}

func (w *inflightWindow) markReleased(pid uint16) bool {
	f, ok := w.byID[pid]
	if !ok || f.item.QoS != 2 {
		return false
	}
	f.released = true
	return true
}

// compact drops finished entries from the front, and rebuilds the order when holes dominate.
func (w *inflightWindow) compact() {
	i := 0
	for i < len(w.order) && w.order[i].done {
		w.order[i] = nil
		i++
	}
	w.order = w.order[i:]
	if len(w.order) > 32 && len(w.byID) < len(w.order)/2 {
		live := make([]*inflight, 0, len(w.byID))
		for _, f := range w.order {
			if !f.done {
				live = append(live, f)
			}
		}
		w.order = live
	}
}

func (w *inflightWindow) each(fn func(*inflight)) {
	for _, f := range w.order {
		if !f.done {
			fn(f)
		}
	}
}
