package cluster

import (
	"sync"
	"sync/atomic"

	"github.com/ternmq/tern/internal/topic"
)

// maxReleased bounds the releases a node remembers; a message sent from before the oldest one
// it forgot is refused when it is QoS 1/2 (released.since).
const maxReleased = 1024

// released remembers the persistent sessions the log took from this node (a takeover by a
// connect elsewhere, an adoption while it was cut off, a snapshot), each with the index of the
// command and the session's subscriptions. A node that routed a message here by a directory
// older than the release meant it for a session this node no longer holds; its new holder was
// not sent a copy, so the message must not be acknowledged as kept (inbound.go).
//
// A release is added by the apply goroutine before the core lets the session go, so a delivery
// that found the session gone is always followed by a check that sees the release.
type released struct {
	// last is the index of the latest release: most messages carry a later one and look no
	// further.
	last   atomic.Uint64
	mu     sync.Mutex
	recent []release // oldest first, at most maxReleased
	// forgot is the latest index of a release no longer in recent.
	forgot uint64
}

type release struct {
	at      uint64
	filters []string
}

// add remembers that a session subscribed to filters left this node at index at.
func (r *released) add(at uint64, filters []string) {
	if len(filters) == 0 {
		return // nothing was sent here for it
	}
	r.mu.Lock()
	if len(r.recent) == maxReleased {
		r.forgot = max(r.forgot, r.recent[0].at)
		r.recent = append(r.recent[:0], r.recent[1:]...)
	}
	r.recent = append(r.recent, release{at: at, filters: append([]string(nil), filters...)})
	r.mu.Unlock()
	if at > r.last.Load() {
		r.last.Store(at) // the apply goroutine is the only writer
	}
}

// since reports whether a session subscribed to topic name may have left this node after
// index i (a message sent with index i may have been meant for it).
func (r *released) since(i uint64, name string) bool {
	if i >= r.last.Load() {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if i < r.forgot {
		return true
	}
	for k := len(r.recent) - 1; k >= 0 && r.recent[k].at > i; k-- {
		for _, f := range r.recent[k].filters {
			if pf, err := topic.ParseFilter(f); err == nil && topic.Match(pf.Path, name) {
				return true
			}
		}
	}
	return false
}
