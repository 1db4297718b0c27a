package broker

import (
	"errors"

	"github.com/ternmq/tern/internal/store"
	"github.com/ternmq/tern/internal/store/memstore"
)

// noQueue is the queue of every memory-only session that has not queued anything yet: most
// connected sessions never do (a delivery to a ready connection skips the queue), so they share
// this empty one instead of holding a memstore.Queue each (48 bytes). enqueue gives a session a
// queue of its own (ownQueue) before its first Push.
var noQueue store.Queue = emptyQueue{}

// emptyQueue is a store.Queue that stays empty; it holds nothing, so it is safe to share.
type emptyQueue struct{}

var errSharedQueue = errors.New("broker: push to the shared empty queue")

func (emptyQueue) Push(store.Item) error            { return errSharedQueue }
func (emptyQueue) Front() (store.Item, bool, error) { return store.Item{}, false, nil }
func (emptyQueue) Pop() error                       { return nil }
func (emptyQueue) Len() int                         { return 0 }
func (emptyQueue) Bytes() int64                     { return 0 }
func (emptyQueue) Clear() error                     { return nil }

// ownQueue makes sure s has a queue of its own to push to. Caller holds s.mu.
func (s *Session) ownQueue() {
	if s.queue == noQueue {
		s.queue = &memstore.Queue{}
	}
}
