package mbus

import (
	"crypto/tls"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/netio"
)

// Config holds the face's limits.
type Config struct {
	// OutBufferBytes bounds the bytes waiting for one client; a client that lets it fill is
	// closed (mBus keeps unbounded lists; tern does not).
	OutBufferBytes int
	// CreateTimeout bounds the wait for command.create after the connection opens.
	CreateTimeout time.Duration
	// WriteTimeout bounds one write to a client.
	WriteTimeout time.Duration
}

// Stats are the face's counters.
type Stats struct {
	Accepted  atomic.Uint64
	Open      atomic.Int64
	BadInput  atomic.Uint64 // clients closed with internal_error
	SlowDrops atomic.Uint64 // clients closed because their buffer filled
}

// Server serves mBus clients for one core.
type Server struct {
	b     *broker.Broker
	cfg   Config
	log   *slog.Logger
	stats Stats
	// outStats and out are the connections' outgoing counters, and their bounds and buffers.
	outStats netio.Stats
	out      netio.Shared
	conns    *netio.Registry[*conn]

	mu    sync.Mutex
	relay *relay
	// relayOnce starts the relay with the first connection: a tern without mBus clients has no
	// org.mbus.server events to publish.
	relayOnce sync.Once
}

// NewServer returns the mBus face of b.
func NewServer(b *broker.Broker, cfg Config, log *slog.Logger) *Server {
	if cfg.OutBufferBytes <= 0 {
		// Room for a few frames of the largest size a client may send.
		cfg.OutBufferBytes = 4 * MaxFrame
	}
	if cfg.CreateTimeout <= 0 {
		cfg.CreateTimeout = 10 * time.Second
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 10 * time.Second
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{b: b, cfg: cfg, log: log, conns: netio.NewRegistry[*conn](log),
		out: netio.Shared{Lim: netio.Limits{WriteTimeout: cfg.WriteTimeout, Linger: 2 * time.Second}, Pool: frameBufs}}
	s.out.Stats = &s.outStats
	return s
}

// Stats returns the counters.
func (s *Server) Stats() *Stats { return &s.stats }

// Serve accepts mBus connections on ln until it or the server closes.
func (s *Server) Serve(ln net.Listener, identify netio.Identify) error {
	return s.conns.Serve(ln, func(nc net.Conn) { s.ServeConn(nc, nil, identify) })
}

// ServeConn runs one connection until it ends; cs is the TLS state of a connection whose TLS the
// face cannot see (a WebSocket on HTTPS).
func (s *Server) ServeConn(nc net.Conn, cs *tls.ConnectionState, identify netio.Identify) {
	s.relayOnce.Do(s.startRelay)
	c := newConn(s, nc, cs, identify)
	if !s.conns.Add(c) {
		_ = nc.Close()
		return
	}
	s.stats.Accepted.Add(1)
	s.stats.Open.Add(1)
	defer func() {
		s.stats.Open.Add(-1)
		s.conns.Remove(c)
	}()
	c.serve()
}

// byID finds the connected client with an identifier.
func (s *Server) byID(id string) *conn {
	for _, c := range s.conns.All() {
		if c.identifier() == id {
			return c
		}
	}
	return nil
}

// all lists the connections.
func (s *Server) all() []*conn { return s.conns.All() }

// Close stops the listeners and closes every client.
func (s *Server) Close() error {
	bye := func(c *conn) { c.close("connection_closed") }
	s.conns.Close(bye, bye, 2*time.Second)
	s.relayOnce.Do(func() {}) // no relay may start after this
	s.mu.Lock()
	r := s.relay
	s.mu.Unlock()
	if r != nil {
		r.stop()
	}
	return nil
}
