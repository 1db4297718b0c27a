package broker

import (
	"log/slog"
	"math"
	"path"
	"sync"
	"time"

	"github.com/ternmq/tern/internal/clock"
)

// FullPolicy says what happens to a message for a session whose queue is full.
type FullPolicy int

const (
	// DropOldest makes room by dropping the oldest queued messages; each is counted.
	DropOldest FullPolicy = iota
	// RefuseNew keeps the queue and refuses the new message: its publisher is told the quota is
	// exceeded (MQTT reason 0x97) if it asked for an acknowledgement.
	RefuseNew
)

// QueueLimits bound one session's queue of pending deliveries. Zero means no bound.
type QueueLimits struct {
	MaxMessages int
	MaxBytes    int64
	// MaxAge drops messages that waited longer than this since they were published.
	MaxAge time.Duration
	Policy FullPolicy
}

// QueueRule gives the sessions whose client id matches ClientID (a path.Match pattern, such as
// "sensor-*") their own limits.
type QueueRule struct {
	ClientID string
	Limits   QueueLimits
}

// maxQueueRules is the most queue rules a broker takes: a session names its rule in 16 bits.
const maxQueueRules = math.MaxUint16

// limitRule says which limits apply to a client id: 1 + the index of the first matching rule,
// or 0 for the default. A session keeps the number (two bytes) rather than a pointer to the
// limits (eight), which costs every session a size class.
func (b *Broker) limitRule(clientID string) uint16 {
	for i := range b.cfg.QueueRules {
		if ok, _ := path.Match(b.cfg.QueueRules[i].ClientID, clientID); ok {
			return uint16(i + 1)
		}
	}
	return 0
}

// limits are the session's queue limits: its rule's, else the default. Sessions share the
// configuration's value, which nothing changes after New.
func (s *Session) limits() *QueueLimits {
	if s.limitRule == 0 {
		return &s.b.cfg.Queue
	}
	return &s.b.cfg.QueueRules[s.limitRule-1].Limits
}

// rateLimitedLog logs each cause at most once per interval, so a failing disk or a full queue
// tells the operator why without flooding the log.
type rateLimitedLog struct {
	logger *slog.Logger
	clock  clock.Clock
	every  time.Duration
	mu     sync.Mutex
	last   map[string]time.Time
}

// due reports whether cause may be logged now, and if so starts its interval. Callers on a
// per-message path ask first, so the log arguments are built only when a line is written.
func (r *rateLimitedLog) due(cause string) bool {
	t := r.clock.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last == nil {
		r.last = map[string]time.Time{}
	}
	if prev, ok := r.last[cause]; ok && t.Sub(prev) < r.every {
		return false
	}
	r.last[cause] = t
	return true
}

func (r *rateLimitedLog) log(cause, msg string, args ...any) {
	if r.due(cause) {
		r.logger.Warn(msg, args...)
	}
}
