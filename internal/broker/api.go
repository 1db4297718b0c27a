// Package broker is tern's core: sessions, the subscription index, delivery with QoS and flow
// control, retained messages, wills and expiry. It knows no wire format and opens no socket;
// faces translate their protocols into the calls on Broker and Client, and receive deliveries
// through the Sink they hand over at connect time.
package broker

import (
	"errors"
	"time"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/message"
	"github.com/ternmq/tern/internal/store"
)

// Ticket completes when the writes of a publish are durable (or failed to become so); a nil
// *Ticket is already complete. It is the store's, handed out by the core so that faces need not
// know the store.
type Ticket = store.Ticket

// Errors the core returns; faces map them to their protocol's codes.
var (
	ErrTopicInvalid        = errors.New("topic name invalid")
	ErrFilterInvalid       = errors.New("topic filter invalid")
	ErrNotAuthorized       = errors.New("not authorized")
	ErrQuotaExceeded       = errors.New("quota exceeded")
	ErrRetainNotSupported  = errors.New("retain not supported")
	ErrSharedNotSupported  = errors.New("shared subscriptions not supported")
	ErrSessionTakenOver    = errors.New("session taken over by another connection")
	ErrServerShuttingDown  = errors.New("server shutting down")
	ErrSessionExpiryLocked = errors.New("session expiry cannot be set after a zero expiry")
)

// NeverExpire is the session expiry interval meaning "keep the session until it is used again".
const NeverExpire = 0xFFFFFFFF

// SendResult tells the core what a Sink did with a delivery.
type SendResult int

const (
	// Sent means the delivery is on its way to the client.
	Sent SendResult = iota
	// Busy means the connection's outgoing buffer is full. A fresh QoS 0 message is dropped and
	// counted; anything else stays queued until the face calls Client.Drained.
	Busy
	// TooLarge means the delivery exceeds what the client accepts (MQTT's Maximum Packet Size); it
	// is discarded as if delivered.
	TooLarge
	// Congested means the delivery was accepted but the connection's buffer is filling up: the
	// publisher should pause until Sink.Drained says there is room, rather than make the core drop.
	Congested
)

// Delivery is one message on its way to one client.
type Delivery struct {
	Msg      *message.Message
	QoS      byte
	PacketID uint16
	Dup      bool
	Retain   bool
	// SubIDs are the identifiers of the subscriptions that matched (MQTT 5). Read-only.
	SubIDs []uint32
	// Many is a hint that the same message goes to more than one connection, so caching its
	// encoding in Msg.Frames pays off.
	Many bool
	// Batch, when set, is the publishing connection's: the sink may defer its write to it
	// (Batch.Defer) instead of starting a writer of its own. Nil for deliveries from elsewhere and
	// for a message that goes to several receivers.
	Batch *Batch
	// Expiry is the message's remaining expiry interval in whole seconds, rounded up, as the
	// core's clock has it (MQTT's Message Expiry Interval on the way out); 0: it does not expire.
	Expiry uint32
	// Seq is the delivery's number in a sequenced session (ConnectRequest.Sequenced), the same
	// when it is sent again; 0 for QoS 0 and in other sessions.
	Seq uint64
}

// Sink is a connected client as the core sees it. The core calls it with its session lock held,
// so a Sink must not call back into the core from these methods.
type Sink interface {
	// Send hands a delivery to the connection. Msg is only valid during the call for QoS 0.
	Send(d Delivery) SendResult
	// Release re-sends the release (MQTT PUBREL) of a QoS 2 delivery after a reconnect.
	Release(packetID uint16)
	// Close ends the connection for the given reason (session takeover, shutdown).
	Close(reason error)
	// Drained returns a channel closed when the buffer has room again; the core asks for it only
	// after Send returned Congested.
	Drained() <-chan struct{}
}

// Will is a message the core publishes when a client goes away without saying goodbye.
type Will struct {
	Msg *message.Message
	// Delay is the will delay interval in seconds.
	Delay uint32
}

// ConnectRequest is what a face knows about a client that wants a session.
type ConnectRequest struct {
	// ClientID names the session; empty asks the core to assign one.
	ClientID string
	// Credentials are what the client presented; the core authenticates them (Config.Auth), and
	// the principal it gets decides the client's identity and what it may do. A face passes them
	// along and never decides.
	Credentials auth.Credentials
	// Principal, when set, is used instead of authenticating Credentials: a face that already
	// authenticated the request through Broker.Authenticate (HTTP) passes what it got.
	Principal *auth.Principal
	// Batch, when set, collects the writes of deliveries this client's publishes cause (see
	// Batch); the face flushes it before its reader waits.
	Batch *Batch
	// Announce publishes the connection's events on $SYS/events (see events.go); Face and
	// RemoteAddr describe it there.
	Announce   bool
	Face       string
	RemoteAddr string
	// Exclusive refuses the connect (ErrClientIDInUse) when the session has a connection,
	// instead of taking it over (mBus identifiers are unique while connected).
	Exclusive  bool
	CleanStart bool
	// Expiry is the requested session expiry interval in seconds (NeverExpire: no expiry).
	Expiry uint32
	// ReceiveMax is how many unacknowledged QoS 1/2 deliveries the client accepts at once.
	ReceiveMax uint16
	Will       *Will
	Sink       Sink
	// Sequenced numbers the QoS 1/2 deliveries the session takes, densely and durably
	// (Delivery.Seq; see store.Marks): an uplink's trunk, so the router upstream can drop what it
	// already has. It stays set for the session's life in this process.
	Sequenced bool
	// Peer is another router that forwards through PublishRouted; its client id must begin with
	// PeerClientPrefix of its identity.
	Peer bool
}

// ConnectResult is what the face tells the client after a successful connect.
type ConnectResult struct {
	// Principal is who the client authenticated as and what it may do.
	Principal      *auth.Principal
	ClientID       string
	AssignedID     bool
	SessionPresent bool
	// Expiry is the session expiry interval the core will apply (the request, capped by config).
	Expiry uint32
}

// SubscribeRequest is one filter of a subscribe, with its options.
type SubscribeRequest struct {
	Filter            string
	QoS               byte
	NoLocal           bool
	RetainAsPublished bool
	// RetainHandling: 0 send retained messages, 1 only for a new subscription, 2 never.
	RetainHandling byte
	// ID is the subscription identifier, 0 for none.
	ID uint32
}

// SubscribeResult is the outcome for one filter: the granted QoS, or Err.
type SubscribeResult struct {
	QoS     byte
	Err     error
	Existed bool
	sub     *subscription
}

// DisconnectRequest describes how a connection ended.
type DisconnectRequest struct {
	// Graceful: the client said goodbye (MQTT DISCONNECT); its will is discarded unless PublishWill.
	Graceful    bool
	PublishWill bool
	// Reason says why the connection ended, for $SYS/events/disconnected ("" : normal when
	// Graceful, else connection_closed).
	Reason string
	// SetExpiry replaces the session expiry interval with Expiry.
	SetExpiry bool
	Expiry    uint32
}

// PublishResult reports what a publish reached.
type PublishResult struct {
	// Matched counts the sessions the message was delivered or queued to.
	Matched int
	// Duplicate is set when an exactly-once publish repeats a packet id still awaiting release.
	Duplicate bool
	// Backpressure, when not nil, is closed once a receiver whose buffer is filling up has room
	// again. A face should read no more from this publisher until then (for a bounded time), so a
	// fast publisher is slowed instead of its messages being dropped for a momentarily slow reader.
	Backpressure <-chan struct{}
	// Durable, when not nil, completes once every durable copy of the message (persistent
	// sessions' queues, in-flight state, the retained store) is on disk. The face must not
	// acknowledge the publish before then; it can go on reading the connection meanwhile, which is
	// how one fsync comes to cover many messages.
	Durable *Ticket
	// Throttle, when positive, is how long the face should pause this publisher: it is ahead of
	// its identity's publish rate (AbuseLimits). The message itself was accepted.
	Throttle time.Duration
}
