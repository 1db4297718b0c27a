// Package store defines the durable state the core keeps: session records, each session's queue
// of pending deliveries, and retained messages. The core talks only to these interfaces; the
// memory implementation serves tests and `--data-dir=""`, and a disk implementation can replace it
// without the core changing.
package store

import (
	"github.com/ternmq/tern/internal/message"
)

// Store is the root of all durable state.
type Store interface {
	Sessions() Sessions
	Retained() Retained
	Close() error
}

// Item is one pending delivery in a session's queue: the message and how it is to be delivered.
type Item struct {
	Msg    *message.Message
	QoS    byte
	Retain bool
	// SubIDs are the subscription identifiers of the subscriptions that matched.
	SubIDs []uint32
}

// Size is the item's footprint for byte limits.
func (it Item) Size() int { return it.Msg.Size() + 4*len(it.SubIDs) }

// Queue is a session's FIFO of pending deliveries. Limits and drop policy are the core's; the queue
// only keeps what it is given, in order. A Queue is not safe for concurrent use: the core calls it
// under its session's lock.
type Queue interface {
	Push(it Item) error
	// Front returns the oldest item without removing it.
	Front() (Item, bool)
	// Pop removes the oldest item.
	Pop() (Item, bool)
	Len() int
	// Bytes is the sum of Size over the queued items.
	Bytes() int64
	// Clear removes everything.
	Clear() error
}

// SessionRecord is what survives of a session while its client is away.
type SessionRecord struct {
	ClientID string
	Identity string
	// Expiry is the session expiry interval in seconds; 0xFFFFFFFF never expires.
	Expiry        uint32
	Subscriptions []Subscription
}

// Subscription is a stored subscription with its MQTT options.
type Subscription struct {
	Filter            string
	QoS               byte
	NoLocal           bool
	RetainAsPublished bool
	RetainHandling    byte
	ID                uint32
}

// Sessions keeps session records and their queues.
type Sessions interface {
	Put(rec SessionRecord) error
	Delete(clientID string) error
	// All calls fn for every stored session, in no particular order.
	All(fn func(SessionRecord) error) error
	// Queue opens (creating if needed) the queue of a session.
	Queue(clientID string) (Queue, error)
}

// Retained keeps the last retained message per topic.
type Retained interface {
	// Set stores m as the retained message of its topic.
	Set(m *message.Message) error
	Delete(topic string) error
	// All calls fn for every retained message, in no particular order.
	All(fn func(*message.Message) error) error
}
