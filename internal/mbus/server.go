package mbus

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ternmq/tern/internal/broker"
)

// Config holds the face's limits.
type Config struct {
	// OutBuffer is how many messages may wait for one client; a client that lets it fill is
	// closed (mBus keeps unbounded lists; tern does not).
	OutBuffer int
	// OutBufferBytes bounds the bytes waiting for one client in the same way.
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

// Identify names the client of a TLS connection by its verified certificate ("" for none).
type Identify func(tls.ConnectionState) string

// Server serves mBus clients for one core.
type Server struct {
	b     *broker.Broker
	cfg   Config
	log   *slog.Logger
	stats Stats

	mu        sync.Mutex
	conns     map[*conn]struct{}
	listeners map[net.Listener]struct{}
	closed    bool
	wg        sync.WaitGroup
	relay     *relay
	// relayOnce starts the relay with the first connection: a tern without mBus clients has no
	// org.mbus.server events to publish.
	relayOnce sync.Once
}

// NewServer returns the mBus face of b.
func NewServer(b *broker.Broker, cfg Config, log *slog.Logger) *Server {
	if cfg.OutBuffer <= 0 {
		cfg.OutBuffer = 1024
	}
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
	return &Server{b: b, cfg: cfg, log: log, conns: map[*conn]struct{}{}, listeners: map[net.Listener]struct{}{}}
}

// Stats returns the counters.
func (s *Server) Stats() *Stats { return &s.stats }

// Serve accepts mBus connections on ln until it or the server closes.
func (s *Server) Serve(ln net.Listener, identify Identify) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return net.ErrClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		go s.ServeConn(nc, nil, identify)
	}
}

// ServeConn runs one connection until it ends; cs is the TLS state of a connection whose TLS the
// face cannot see (a WebSocket on HTTPS).
func (s *Server) ServeConn(nc net.Conn, cs *tls.ConnectionState, identify Identify) {
	s.relayOnce.Do(s.startRelay)
	c := newConn(s, nc, cs, identify)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = nc.Close()
		return
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	s.stats.Accepted.Add(1)
	s.stats.Open.Add(1)
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		s.stats.Open.Add(-1)
		s.wg.Done()
	}()
	c.serve()
}

// byID finds the connected client with an identifier.
func (s *Server) byID(id string) *conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if c.identifier() == id {
			return c
		}
	}
	return nil
}

// all lists the connections.
func (s *Server) all() []*conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		out = append(out, c)
	}
	return out
}

// Close stops the listeners and closes every client.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	for ln := range s.listeners {
		_ = ln.Close()
	}
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.close("connection_closed")
	}
	s.wg.Wait()
	s.relayOnce.Do(func() {}) // no relay may start after this
	s.mu.Lock()
	r := s.relay
	s.mu.Unlock()
	if r != nil {
		r.stop()
	}
	return nil
}
