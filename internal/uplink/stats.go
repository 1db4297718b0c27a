package uplink

import (
	"slices"
	"sync/atomic"
	"time"

	"github.com/ternmq/tern/internal/config"
)

// Stats are a link's counters since this process started.
type Stats struct {
	// Up: PUBLISH sent (Resent of them again after a reconnect), acknowledged by the designated
	// router, refused by it (an error reason in its PUBACK: no route grant, say), and messages
	// too large for its Maximum Packet Size.
	Sent, Resent, Acked, Refused, TooLarge atomic.Uint64
	// Down: messages that came down and were published here; refused: those outside the link's
	// namespaces or with malformed link properties.
	Received, ReceivedRefused atomic.Uint64
	// Reconnects counts the link coming up again after it went down; Failures attempts to
	// connect that failed.
	Reconnects, Failures atomic.Uint64
	// SubscribeRefused counts upstream subscriptions the designated router refused.
	SubscribeRefused atomic.Uint64
	// Queries counts queries asked upstream; QueriesFailed those that could not be.
	Queries, QueriesFailed atomic.Uint64
	connects               atomic.Uint64
}

// LinkStats is one link's state for `tern stats` and /v1/stats.
type LinkStats struct {
	Name       string   `json:"name"`
	URL        string   `json:"url"`
	Namespaces []string `json:"namespaces"`
	Connected  bool     `json:"connected"`
	// Since is when the link last came up or went down.
	Since     time.Time `json:"since,omitzero"`
	LastError string    `json:"last_error,omitempty"`
	// The trunk queue: what waits to go up, its bytes, the age of its oldest message, and what
	// awaits the designated router's acknowledgement.
	Queued           int     `json:"queued"`
	QueuedBytes      int64   `json:"queued_bytes"`
	OldestAgeSeconds float64 `json:"oldest_age_seconds"`
	Inflight         int     `json:"inflight"`
	Sent             uint64  `json:"sent"`
	Resent           uint64  `json:"resent"`
	Acked            uint64  `json:"acked"`
	RefusedUpstream  uint64  `json:"refused_upstream"`
	// What the trunk's limits cost: dropped (queue full, oldest first), refused (queue full,
	// policy refuse), expired (message expiry or max_age), too large for the designated router.
	DroppedFull  uint64 `json:"dropped_full"`
	RefusedFull  uint64 `json:"refused_full"`
	Expired      uint64 `json:"expired"`
	TooLarge     uint64 `json:"too_large"`
	Reconnects   uint64 `json:"reconnects"`
	ConnFailures uint64 `json:"connect_failures"`
	// Down: messages received, and those the designated router sent again (duplicates, dropped
	// here) or skipped (gaps: its queue for this site dropped them).
	Received        uint64 `json:"received"`
	ReceivedRefused uint64 `json:"received_refused"`
	DownDuplicates  uint64 `json:"down_duplicates"`
	DownGaps        uint64 `json:"down_gaps"`
	// Subscriptions are the filters this site holds upstream.
	Subscriptions    int    `json:"subscriptions"`
	SubscribeRefused uint64 `json:"subscribe_refused"`
	Queries          uint64 `json:"queries"`
	QueriesFailed    uint64 `json:"queries_failed"`
}

// Stats describes the link.
func (l *Link) Stats() LinkStats {
	st := &l.stats
	ls := LinkStats{
		Name: l.cfg.Name, URL: l.cfg.URL, Namespaces: slices.Clone(l.cfg.Namespaces),
		Sent: st.Sent.Load(), Resent: st.Resent.Load(), Acked: st.Acked.Load(), RefusedUpstream: st.Refused.Load(),
		TooLarge: st.TooLarge.Load(), Reconnects: st.Reconnects.Load(), ConnFailures: st.Failures.Load(),
		Received: st.Received.Load(), ReceivedRefused: st.ReceivedRefused.Load(),
		SubscribeRefused: st.SubscribeRefused.Load(), Queries: st.Queries.Load(), QueriesFailed: st.QueriesFailed.Load(),
	}
	l.mu.Lock()
	ls.Connected = l.cur != nil
	ls.Since = l.since
	ls.LastError = l.lastErr
	ls.Subscriptions = len(l.upstream)
	l.mu.Unlock()
	if info, ok := l.b.Session(config.TrunkClientID(l.cfg.Name)); ok {
		ls.Queued, ls.QueuedBytes, ls.Inflight = info.Queued, info.QueuedBytes, info.Inflight
		ls.DroppedFull, ls.RefusedFull, ls.Expired = info.Dropped, info.Refused, info.Expired
		ls.DownDuplicates, ls.DownGaps = info.RoutedDuplicates, info.RoutedGaps
		if info.Oldest > 0 {
			ls.OldestAgeSeconds = max(0, time.Since(time.Unix(0, info.Oldest)).Seconds())
		}
	}
	return ls
}
