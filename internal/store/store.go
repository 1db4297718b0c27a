// Package store defines the durable state the core keeps: session records, each session's queue
// of pending deliveries and its deliveries in flight, and retained messages. The core talks only to
// these interfaces; the memory implementation serves tests and `--data-dir=""`, and pebblestore
// keeps everything on disk.
//
// Writes return once they are applied, not once they are durable: a caller that must not
// acknowledge before the disk has its data asks Sync for a Ticket after writing. One fsync then
// covers every write made before it, whoever made it (group commit).
package store

import (
	"errors"

	"github.com/ternmq/tern/internal/message"
)

// ErrFormat is returned by Open when a data directory was written by an unknown format version.
var ErrFormat = errors.New("unknown data format version")

// ErrDamaged is returned by Open when a data directory is damaged (a missing or unreadable file,
// a corrupt log or table): the store refuses to start on it rather than lose or replace data.
var ErrDamaged = errors.New("data directory damaged")

// Store is the root of all durable state.
type Store interface {
	Sessions() Sessions
	Retained() Retained
	// Records keeps small named values: users, groups, tokens.
	Records() Records
	// Sync returns a ticket that completes once every write made before the call is durable;
	// nil means it already is.
	Sync() *Ticket
	// LastMessageID is the highest message id the store holds, so ids stay unique after a restart
	// even if the clock went backwards.
	LastMessageID() uint64
	// DiskBytes is the store's size on disk (0 in memory).
	DiskBytes() int64
	// Health is nil while the store accepts writes, else why not (a failed disk, closed).
	Health() error
	Close() error
}

// Item is one pending delivery: the message and how it is to be delivered.
type Item struct {
	Msg    *message.Message
	QoS    byte
	Retain bool
	// SubIDs are the subscription identifiers of the subscriptions that matched.
	SubIDs []uint32
	// Shared hints that the same message (same Msg.ID) goes to other sessions too, so a disk store
	// keeps its body once and references it.
	Shared bool
	// Seq is the delivery's number in a sequenced session (see Marks); 0 in others.
	Seq uint64
}

// Size is the item's footprint for byte limits.
func (it Item) Size() int { return it.Msg.Size() + 4*len(it.SubIDs) }

// Queue is a session's FIFO of pending deliveries. Limits and drop policy are the core's; the queue
// only keeps what it is given, in order. A Queue is not safe for concurrent use: the core calls it
// under its session's lock.
type Queue interface {
	Push(it Item) error
	// Front returns the oldest item without removing it.
	Front() (Item, bool, error)
	// Pop removes the oldest item.
	Pop() error
	Len() int
	// Bytes is the sum of Size over the queued items.
	Bytes() int64
	// Clear removes everything.
	Clear() error
}

// InflightEntry is a delivery sent to the client and not yet acknowledged.
type InflightEntry struct {
	PacketID uint16
	Item     Item
	// Released: the client acknowledged receipt of a QoS 2 delivery (PUBREC) and the release
	// (PUBREL) was sent; only its completion is missing.
	Released bool
}

// Inflight keeps a session's MQTT packet-id state in both directions, so a restart can resume it:
// deliveries awaiting acknowledgement, and exactly-once publishes received and not yet released.
// Like Queue, it is used under the session's lock.
type Inflight interface {
	// Put records a delivery, or updates one with the same packet id (keeping its place in order).
	Put(e InflightEntry) error
	Delete(packetID uint16) error
	// All returns the deliveries in the order they were first put.
	All() ([]InflightEntry, error)
	AddIncoming(packetID uint16) error
	DeleteIncoming(packetID uint16) error
	Incoming() ([]uint16, error)
}

// SessionRecord is what survives of a session while its client is away.
type SessionRecord struct {
	ClientID string
	Identity string
	// Expiry is the session expiry interval in seconds; 0xFFFFFFFF never expires.
	Expiry        uint32
	Subscriptions []Subscription
	// Disconnected is when the client went away (Unix nanoseconds); 0 while it is connected, so a
	// record found with 0 after a crash belongs to a client the crash disconnected.
	Disconnected int64
	// Will is the client's will: while connected, or waiting out its delay after it left.
	Will *Will
	// Dropped counts messages this session lost to its queue limits.
	Dropped uint64
}

// Will is a stored will message.
type Will struct {
	Msg *message.Message
	// Delay is the will delay interval in seconds.
	Delay uint32
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

// Marks are a session's sequence numbers where it links routers: Sent is the last number the
// session gave a delivery (an uplink's trunk numbers what it forwards), Taken the last number it
// took from its peer (a designated router drops what it already has). They live apart from the
// record, so that moving one costs one small write; like every write they are durable at the
// next Sync.
type Marks struct {
	Sent, Taken uint64
}

// Sessions keeps session records and their queues.
//
// A session's subscriptions are stored apart from its record, one per filter, so that a
// subscribe or unsubscribe writes only what changed however many subscriptions the session has.
type Sessions interface {
	// Put replaces the record's other fields. Its Subscriptions, if any, are stored as by
	// PutSubscriptions; subscriptions stored before and not among them are kept, so a caller
	// that keeps them up to date with PutSubscriptions and DeleteSubscriptions puts the record
	// without them and the write stays small.
	Put(rec SessionRecord) error
	// PutSubscriptions stores subscriptions of a session, each replacing any stored with the
	// same filter.
	PutSubscriptions(clientID string, subs []Subscription) error
	// DeleteSubscriptions removes the subscriptions with these filters; a filter that is not
	// stored is not an error.
	DeleteSubscriptions(clientID string, filters []string) error
	// Delete removes the record with its subscriptions, queue and in-flight state.
	Delete(clientID string) error
	// All calls fn for every stored session record, in no particular order, with its
	// subscriptions in Subscriptions (ordered by filter). Subscriptions of a client without a
	// record are not sessions and are not returned.
	All(fn func(SessionRecord) error) error
	// Queue opens (creating if needed) the queue of a session.
	Queue(clientID string) (Queue, error)
	// Inflight opens (creating if needed) the in-flight state of a session.
	Inflight(clientID string) (Inflight, error)
	// Marks returns a session's marks (zero when it has none); PutMarks replaces them. Delete
	// removes them with the session.
	Marks(clientID string) (Marks, error)
	PutMarks(clientID string, m Marks) error
}

// Retained keeps the last retained message per topic.
type Retained interface {
	// Set stores m as the retained message of its topic.
	Set(m *message.Message) error
	Delete(topic string) error
	// All calls fn for every retained message, in no particular order.
	All(fn func(*message.Message) error) error
}

// Records is a durable key/value map in namespaces, for the few small records that are not
// messages (auth's users, groups and tokens). Put and Delete are durable when they return.
// Values handed in or out are not retained by the other side after the call.
type Records interface {
	// Get returns the value under key in namespace ns; ok is false when there is none.
	Get(ns, key string) (value []byte, ok bool, err error)
	// Put stores value under key, replacing any previous value.
	Put(ns, key string, value []byte) error
	// Delete removes key; deleting a missing key is not an error.
	Delete(ns, key string) error
	// Scan calls fn for every key of ns in ascending key order, stopping at fn's first error,
	// which it returns. fn may call the other methods.
	Scan(ns string, fn func(key string, value []byte) error) error
}
