// Package httpapi is tern's HTTP face: publish with a POST, subscribe by Server-Sent Events,
// NDJSON streaming or long-poll, read retained messages and make requests that wait for a reply,
// all on the same core as MQTT. Requests authenticate with Basic, Bearer or a client certificate
// (internal/httpauth); the core decides what they may do.
package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/config"
	"github.com/ternmq/tern/internal/httpauth"
)

// Config holds the face's limits.
type Config struct {
	// MaxBody caps a request body (a published payload); larger gets 413.
	MaxBody int64
	// StreamBuffer is how many messages may wait for one streaming subscriber before further
	// ones are dropped (counted by the core as slow-consumer drops).
	StreamBuffer int
	// Heartbeat is how often an idle stream sends a comment or an empty line, so proxies keep it.
	Heartbeat time.Duration
	// PollWait is the longest a long-poll waits for a first message; RequestTimeout the default
	// (and MaxRequestTimeout the longest) wait for a reply.
	PollWait          time.Duration
	RequestTimeout    time.Duration
	MaxRequestTimeout time.Duration
	// MailboxWait is one wait of uLightWMQ's /front?wait=1 and /waitForReply.
	MailboxWait time.Duration
	// WebSocketOrigins are the Origin host patterns besides the server's own whose browser
	// credentials count on /v1/ws and /sub (see TrustedOrigin).
	WebSocketOrigins []string
}

// DefaultConfig returns the limits `tern serve` uses when nothing is configured: config.Default's.
func DefaultConfig() Config { return ConfigFrom(config.Default().HTTP) }

// ConfigFrom is the face's part of the configuration. The longest request timeout a caller may
// ask for is not configurable.
func ConfigFrom(h config.HTTP) Config {
	return Config{MaxBody: h.MaxBody, StreamBuffer: h.StreamBuffer, Heartbeat: h.Heartbeat,
		PollWait: h.PollWait, RequestTimeout: h.RequestTimeout, MaxRequestTimeout: 5 * time.Minute,
		MailboxWait: h.MailboxWait, WebSocketOrigins: h.WebSocketOrigins}
}

// Stats are the face's counters.
type Stats struct {
	Published atomic.Uint64
	Streams   atomic.Int64
	Requests  atomic.Uint64
	// Parked counts the subscribers waiting in the poller without a goroutine: WebSockets of
	// /v1/ws and /sub, and SSE and NDJSON streams over HTTP/1.x.
	Parked atomic.Int64
}

// Server serves the HTTP API for one core.
type Server struct {
	b        *broker.Broker
	cfg      Config
	log      *slog.Logger
	identify httpauth.Identify
	stats    *Stats
	mqgo     *mqgoState
	// base ends when the server shuts down: a WebSocket, which outlives its request's handler,
	// closes then (going away).
	base context.Context
}

// New returns the HTTP face.
func New(b *broker.Broker, cfg Config, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := DefaultConfig()
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = d.MaxBody
	}
	if cfg.StreamBuffer <= 0 {
		cfg.StreamBuffer = d.StreamBuffer
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = d.Heartbeat
	}
	if cfg.PollWait <= 0 {
		cfg.PollWait = d.PollWait
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = d.RequestTimeout
	}
	if cfg.MailboxWait <= 0 {
		cfg.MailboxWait = d.MailboxWait
	}
	if cfg.MaxRequestTimeout < cfg.RequestTimeout {
		cfg.MaxRequestTimeout = max(d.MaxRequestTimeout, cfg.RequestTimeout)
	}
	return &Server{b: b, cfg: cfg, log: log, stats: &Stats{}, mqgo: &mqgoState{},
		base: context.Background()}
}

// SetBase gives the context that ends when the server shuts down (its HTTP server's base
// context): WebSockets, whose connections outlive their requests' handlers, close then (going
// away). The server waits for them as for running handlers when it counts them (Outlive).
func (s *Server) SetBase(ctx context.Context) { s.base = ctx }

// Stats returns the face's counters.
func (s *Server) Stats() *Stats { return s.stats }

// Register adds the face's routes to one listener's mux. identify names that listener's clients
// by their TLS certificates (nil without TLS).
func (s *Server) Register(mux *http.ServeMux, identify httpauth.Identify) {
	v := *s
	v.identify = identify
	s = &v
	mux.HandleFunc("POST /v1/pub/{topic...}", s.publish)
	mux.HandleFunc("GET /v1/sub/{filter...}", s.subscribe)
	mux.HandleFunc("GET /v1/retained/{filter...}", s.retained)
	mux.HandleFunc("POST /v1/req/{topic...}", s.request)
	mux.HandleFunc("GET /v1/ws", s.websocketAPI)
	mux.HandleFunc("POST /v1/call/{ns}/{proc}", s.call)
	mux.HandleFunc("GET /v1/services", func(w http.ResponseWriter, r *http.Request) {
		if s.principal(w, r) != nil {
			writeJSON(w, http.StatusOK, s.b.Services())
		}
	})
}

// principal authenticates the request, or answers it (401, 429, 503) and returns nil.
func (s *Server) principal(w http.ResponseWriter, r *http.Request) *auth.Principal {
	p, err := s.b.Authenticate(r.Context(), httpauth.Credentials(r, s.identify, "http"))
	if err != nil {
		httpauth.Refuse(w, err)
		return nil
	}
	return p
}

// ended answers a request whose context ended while it waited: 503 when the server is closing
// (whoever assembles the server cancels the requests' base context with
// broker.ErrServerShuttingDown), nothing when the client left.
func ended(w http.ResponseWriter, r *http.Request) {
	if shuttingDown(r.Context()) {
		fail(w, broker.ErrServerShuttingDown)
	}
}

func shuttingDown(ctx context.Context) bool {
	return errors.Is(context.Cause(ctx), broker.ErrServerShuttingDown)
}
