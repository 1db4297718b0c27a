// Package mqtt is tern's MQTT face: it speaks MQTT 3.1, 3.1.1 and 5 on any net.Conn (TCP, TLS,
// Unix socket, WebSocket) and translates packets into calls on the core.
package mqtt

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/config"
	"github.com/ternmq/tern/internal/mqtt/packet"
	"github.com/ternmq/tern/internal/netio"
)

// Config holds the face's protocol limits.
type Config struct {
	// MaxPacketSize is the largest packet a client may send (announced in MQTT 5 CONNACK).
	MaxPacketSize int
	// ReceiveMax is how many QoS 2 publishes a client may have awaiting release.
	ReceiveMax uint16
	// MaxKeepAlive caps the keep alive a client may ask for (MQTT 5 clients are told); 0: no cap.
	MaxKeepAlive uint16
	// MaxInboundAliases is the topic alias maximum offered to clients; MaxOutboundAliases caps
	// the aliases the server assigns toward a client.
	MaxInboundAliases  uint16
	MaxOutboundAliases uint16
	MaxClientIDLength  int
	// ConnectTimeout bounds the wait for CONNECT after the connection opens: the whole packet
	// must have arrived by then.
	ConnectTimeout time.Duration
	// MaxConnectSize is the largest CONNECT accepted (a client is not trusted with
	// MaxPacketSize before it has logged in); ConnectMemory bounds the bytes that all
	// connections that have not logged in may hold together.
	MaxConnectSize int
	ConnectMemory  int64
	// WriteTimeout bounds one write to a client; a client that cannot take bytes for this long
	// is disconnected.
	WriteTimeout time.Duration
	// OutboundBuffer is how many bytes may wait for one client before QoS 0 messages to it are
	// dropped.
	OutboundBuffer int
	// SlowConsumerTimeout disconnects a client whose buffer stayed full (dropping QoS 0
	// messages) for this long; 0: never.
	SlowConsumerTimeout time.Duration
	// PublishStall is the longest a publisher is paused while a receiver's buffer is more than
	// half full, once per such episode; 0 never pauses (receivers drop sooner).
	PublishStall time.Duration
	// DetachIdle is how long a TCP or Unix connection parked in the poller stays quiet (no
	// bytes from the client) before it lets go of Go's socket object and keeps only its
	// descriptor (netio.Conn.Detach); such connections are also accepted that way (Serve).
	// The socket under a TLS (tlsrec) or WebSocket connection does the same
	// (netio.ParkConn.Detach). 0: neither.
	DetachIdle time.Duration
}

// DefaultConfig returns the limits `tern serve` uses when nothing is configured: config.Default's.
func DefaultConfig() Config { return ConfigFrom(config.Default().MQTT) }

// ConfigFrom is the face's part of the configuration.
func ConfigFrom(m config.MQTT) Config {
	return Config{
		MaxPacketSize:       m.MaxPacketSize,
		ReceiveMax:          uint16(m.ReceiveMaximum),
		MaxKeepAlive:        uint16(m.MaxKeepAlive),
		MaxInboundAliases:   uint16(m.TopicAliasMaximum),
		MaxOutboundAliases:  uint16(m.TopicAliasMaximum),
		MaxClientIDLength:   m.MaxClientIDLength,
		ConnectTimeout:      m.ConnectTimeout,
		MaxConnectSize:      m.MaxConnectSize,
		ConnectMemory:       m.ConnectMemory,
		WriteTimeout:        m.WriteTimeout,
		OutboundBuffer:      m.OutboundBuffer,
		SlowConsumerTimeout: m.SlowConsumerTimeout,
		PublishStall:        m.PublishStall,
		DetachIdle:          m.DetachIdle,
	}
}

// limits are the connections' outgoing bounds. The hard limit is where a connection's queue is
// past any legitimate use: the QoS 0 buffer, a full in-flight window of the largest packets, and
// room for acknowledgements.
func (c *Config) limits() netio.Limits {
	return netio.Limits{
		Soft:         c.OutboundBuffer,
		Stall:        c.PublishStall,
		SlowTimeout:  c.SlowConsumerTimeout,
		Hard:         2*c.OutboundBuffer + 4*c.MaxPacketSize + (8 << 20),
		WriteTimeout: c.WriteTimeout,
		Linger:       lingerTimeout,
	}
}

// lingerTimeout bounds how long a closing connection waits for the client to close its side.
const lingerTimeout = 2 * time.Second

// Stats are the face's counters.
type Stats struct {
	Accepted       atomic.Uint64
	Open           atomic.Int64
	ConnectRefused atomic.Uint64
	// ConnectTooLarge counts CONNECTs over MaxConnectSize; ConnectMemoryFull connections closed
	// before login because the connecting budget was spent.
	ConnectTooLarge   atomic.Uint64
	ConnectMemoryFull atomic.Uint64
	ProtocolErrors    atomic.Uint64
	// netio.Stats counts slow consumers and bytes sent.
	netio.Stats
	PublishStalls atomic.Uint64
	// StoreFailures counts acknowledgements that reported a store failure instead of success.
	StoreFailures atomic.Uint64
	PacketsIn     atomic.Uint64
	// Parked counts the connections waiting in the poller without a goroutine.
	Parked atomic.Int64
}

// Server serves MQTT connections for one core.
type Server struct {
	broker *broker.Broker
	cfg    Config
	log    *slog.Logger
	stats  Stats
	// maxQoS is the core's, kept here because every MQTT 5 PUBLISH is checked against it.
	maxQoS byte

	// reading is what the connections' readers share: the count of lazy waiters and the
	// connecting budget.
	reading readerShared
	// parkHook, when set (by tests), sees each connection on its own goroutine as it parks, after
	// it has given back what it does not keep while parked.
	parkHook atomic.Pointer[func(*conn)]
	// out is what the connections' outgoing sides share: limits, counters, buffers.
	out   netio.Shared
	conns *netio.Registry[*conn]
	// poller holds idle TCP and Unix connections without a goroutine each (nil: none here).
	poller *netio.Poller
}

// NewServer returns an MQTT face for b.
func NewServer(b *broker.Broker, cfg Config, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxPacketSize <= 0 || cfg.MaxPacketSize > packet.MaxRemaining+5 {
		cfg.MaxPacketSize = packet.MaxRemaining + 5
	}
	if cfg.ReceiveMax == 0 {
		cfg.ReceiveMax = 65535
	}
	d := DefaultConfig()
	if cfg.MaxConnectSize <= 0 {
		cfg.MaxConnectSize = d.MaxConnectSize
	}
	cfg.MaxConnectSize = min(cfg.MaxConnectSize, cfg.MaxPacketSize)
	if cfg.ConnectMemory <= 0 {
		cfg.ConnectMemory = d.ConnectMemory
	}
	s := &Server{
		broker: b,
		maxQoS: b.Config().MaxQoS,
		cfg:    cfg,
		log:    log,
		out:    netio.Shared{Lim: cfg.limits(), Pool: writeBufs},
		conns:  netio.NewRegistry[*conn](log),
	}
	s.out.Stats = &s.stats.Stats
	s.reading.connecting.max = cfg.ConnectMemory
	if p, err := netio.DefaultPoller(); err == nil {
		s.poller = p
	} else {
		log.Debug("connections wait on goroutines", "err", err)
	}
	return s
}

// Stats returns the face's counters.
func (s *Server) Stats() *Stats { return &s.stats }

// Serve accepts connections on ln until ln or the server closes. identify names the clients of a
// TLS listener by their certificates (nil: no client certificates).
//
// A plain TCP listener's connections are accepted as bare sockets when they would detach anyway
// (Config.DetachIdle set, a poller): they never have Go's socket object (netio.Registry.ServeBare).
func (s *Server) Serve(ln net.Listener, identify netio.Identify) error {
	if identify == nil && s.poller != nil && s.cfg.DetachIdle > 0 && netio.CanServeBare(ln) {
		return s.conns.ServeBare(ln, s.serveBare)
	}
	return s.conns.Serve(ln, func(nc net.Conn) { s.ServeConnTLS(nc, nil, identify) })
}

// serveBare runs a connection accepted as a bare socket: detached from the start, it reads
// CONNECT whenever the poller finds bytes (conn.login) and holds no goroutine in between.
func (s *Server) serveBare(sock *netio.Socket) {
	c := &conn{srv: s}
	c.rd.initRaw(sock.RawConn(), s.cfg.MaxConnectSize)
	c.out.InitBare(sock, &s.out, c)
	s.share(c)
	w, err := s.poller.Watch(sock.RawConn(), c)
	if err != nil || !s.admit(c) {
		c.out.CloseNow(errors.New("server closing"))
		if w != nil {
			w.Close()
		}
		return
	}
	c.watch = w
	c.login()
}

// share gives a new connection's reader what it shares with the server's other connections.
func (s *Server) share(c *conn) {
	c.rd.shared = &s.reading
}

// admit registers a new connection and counts it; false when the server is closing.
func (s *Server) admit(c *conn) bool {
	if !s.conns.Add(c) {
		return false
	}
	s.stats.Accepted.Add(1)
	s.stats.Open.Add(1)
	return true
}

// ServeConn runs one connection. For TCP and Unix sockets it may return while the connection
// lives on in goroutines of its own (see conn.loop); for any other net.Conn, such as the WebSocket
// listener's, it returns when the connection has ended.
func (s *Server) ServeConn(nc net.Conn) { s.ServeConnTLS(nc, nil, nil) }

// ServeConnTLS is ServeConn for a connection whose client certificate identify reads: nc is a
// *tls.Conn, or cs is the state of TLS the face cannot see (a WebSocket on an HTTPS request).
func (s *Server) ServeConnTLS(nc net.Conn, cs *tls.ConnectionState, identify netio.Identify) {
	s.serveConn(nc, cs, identify, nil)
}

// serveConn runs a client's connection, or another router's when pm is set (ServePeers).
func (s *Server) serveConn(nc net.Conn, cs *tls.ConnectionState, identify netio.Identify, pm *peerMode) {
	c := &conn{srv: s}
	c.rd.init(nc, s.cfg.MaxConnectSize)
	if pm != nil {
		c.rare, c.isPeer = &connRare{peer: pm}, true
	}
	c.out.Init(nc, &s.out, c)
	s.share(c)
	if s.poller != nil {
		// Without a watch the connection waits on goroutines, as elsewhere.
		if c.rd.raw != nil {
			c.watch, _ = s.poller.Watch(c.rd.raw, c)
		} else if p := c.rd.parkConn(); p != nil {
			c.watch, _ = s.poller.Watch(p.RawConn(), c)
		}
	}
	if !s.admit(c) {
		_ = nc.Close()
		return
	}
	c.serve(cs, identify)
}

// connClosed is the last thing a connection does.
func (s *Server) connClosed(c *conn) {
	s.stats.Open.Add(-1)
	s.conns.Remove(c)
}

// Close stops the listeners and closes every connection, waiting for their goroutines; clients
// that do not take their DISCONNECT within 2 s are cut off.
func (s *Server) Close() error {
	s.conns.Close(
		func(c *conn) { c.disconnect(packet.ServerShuttingDown, "server shutting down") },
		func(c *conn) { c.out.CloseNow(errors.New("server shutting down")) },
		2*time.Second)
	return nil
}
