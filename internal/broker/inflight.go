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
//
// A session makes its window with its first QoS 1/2 delivery (Session.window) and keeps it; the
// methods that only read take a nil window as an empty one, so a session that never had one in
// flight (a QoS 0 subscriber, an idle device) carries a pointer instead of the window.
type inflightWindow struct {
	byID  map[uint16]*inflight
	order []*inflight // send order; done entries are holes compacted lazily
	last  uint16
	bytes int64
}

func (w *inflightWindow) len() int {
	if w == nil {
		return 0
	}
	return len(w.byID)
}

// get returns the delivery in flight with packet id pid, or nil.
func (w *inflightWindow) get(pid uint16) *inflight {
	if w == nil {
		return nil
	}
	return w.byID[pid]
}

// hasRoom reports whether another delivery fits the count and byte limits. One delivery is always
// allowed when the window is empty, whatever its size.
func (w *inflightWindow) hasRoom(maxCount int, maxBytes int64) bool {
	if w.len() == 0 {
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
	f := w.get(pid)
	if f == nil {
		return false
	}
	delete(w.byID, pid)
	f.done = true
	w.bytes -= int64(f.item.Size())
	w.compact()
	return true
}

func (w *inflightWindow) markReleased(pid uint16) bool {
	f := w.get(pid)
	if f == nil || f.item.QoS != 2 {
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
	if w == nil {
		return
	}
	for _, f := range w.order {
		if !f.done {
			fn(f)
		}
	}
}

// window returns the session's in-flight window, making it with the first QoS 1/2 delivery.
// Caller holds the session lock.
func (s *Session) window() *inflightWindow {
	if s.inflight == nil {
		s.inflight = new(inflightWindow)
	}
	return s.inflight
}
