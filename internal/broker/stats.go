package broker

import "sync/atomic"

// Stats are the core's live counters. Faces add their own; the metrics package exports both.
type Stats struct {
	// RoutedDuplicates counts messages a peer router sent again that were already taken (they
	// are acknowledged, not delivered again); RoutedGaps the numbers peers skipped: messages their
	// limits dropped before they could be forwarded (see link.go).
	RoutedDuplicates atomic.Uint64
	RoutedGaps       atomic.Uint64
	// StaleQueries counts queries answered from local copies because the namespace's designated
	// router could not be asked.
	StaleQueries atomic.Uint64
	// Received counts messages accepted for routing from clients (wills included); the
	// broker's own events and answers are not counted.
	Received atomic.Uint64
	// Delivered counts deliveries handed to connections.
	Delivered atomic.Uint64
	// DroppedSlow counts QoS 0 deliveries dropped because the connection's buffer was full.
	DroppedSlow atomic.Uint64
	// DroppedOffline counts QoS 0 deliveries not queued for offline sessions (QueueQoS0 off).
	DroppedOffline atomic.Uint64
	// DroppedQueueFull counts queued deliveries dropped to keep a session queue within its limits.
	DroppedQueueFull atomic.Uint64
	// RefusedQueueFull counts messages refused by a full queue whose policy is RefuseNew, or too
	// big for a queue's byte limit.
	RefusedQueueFull atomic.Uint64
	// StoreErrors counts failed store operations.
	StoreErrors atomic.Uint64
	// DroppedTooLarge counts deliveries larger than the client's maximum packet size.
	DroppedTooLarge atomic.Uint64
	// Expired counts queued messages whose expiry passed before delivery.
	Expired atomic.Uint64
	// NotAuthorized counts publishes and subscriptions refused by grants (and subscriptions
	// dropped at resume because their grant was withdrawn).
	NotAuthorized atomic.Uint64
	// RefusedConnections counts connects refused by the connection limits, RefusedClientID those
	// that asked for another identity's session.
	RefusedConnections atomic.Uint64
	RefusedClientID    atomic.Uint64
	// RefusedRate and RefusedPayload count publishes refused by the rate and payload limits;
	// Throttled counts publishes accepted ahead of the rate, after which the publisher paused.
	RefusedRate    atomic.Uint64
	RefusedPayload atomic.Uint64
	Throttled      atomic.Uint64
	// Queued is the number of deliveries waiting in session queues.
	Queued atomic.Int64
	// Sessions, Connected, Subscriptions and Retained are current totals.
	Sessions      atomic.Int64
	Connected     atomic.Int64
	Subscriptions atomic.Int64
	Retained      atomic.Int64
}
