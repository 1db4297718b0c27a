// Package server assembles a running tern from a configuration: the core, its faces and their
// listeners. `tern serve` and the integration tests both start tern through it.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/certs"
	"github.com/ternmq/tern/internal/clock"
	"github.com/ternmq/tern/internal/cluster"
	"github.com/ternmq/tern/internal/config"
	"github.com/ternmq/tern/internal/httpapi"
	"github.com/ternmq/tern/internal/mailbox"
	"github.com/ternmq/tern/internal/mbus"
	"github.com/ternmq/tern/internal/metrics"
	"github.com/ternmq/tern/internal/mqtt"
	"github.com/ternmq/tern/internal/netio"
	"github.com/ternmq/tern/internal/store"
	"github.com/ternmq/tern/internal/store/memstore"
	"github.com/ternmq/tern/internal/store/pebblestore"
	"github.com/ternmq/tern/internal/tlsrec"
	"github.com/ternmq/tern/internal/uplink"
	"github.com/ternmq/tern/internal/webhook"
)

// Server is a running tern.
type Server struct {
	cfg    config.Config
	log    *slog.Logger
	Broker *broker.Broker
	MQTT   *mqtt.Server
	MBus   *mbus.Server
	HTTP   *httpapi.Server
	// Mailboxes holds one durable queue per identity.
	Mailboxes *mailbox.Service
	// Webhooks delivers durable subscriptions to HTTP endpoints.
	Webhooks *webhook.Manager
	Store    store.Store
	// Auth holds users, groups and tokens and decides who clients are.
	Auth *auth.Authenticator
	// Cluster is this tern's cluster node, nil when it runs alone (cluster.go).
	Cluster *cluster.Node
	// Uplinks forward namespaces to designated routers (nil without [[route.uplink]]);
	// RouterID is this router's id when it routes (uplinks or route.listen).
	Uplinks  *uplink.Manager
	RouterID string

	// tls holds each TLS listener's certificates by listener name; Reload swaps them.
	tls map[string]*certs.ServerTLS

	listeners []net.Listener
	https     []*http.Server
	// httpCtx is every HTTP request's base context; Close cancels it (cause
	// broker.ErrServerShuttingDown) so streams, long-polls and WebSockets end before anything
	// they use is closed. handlers counts the requests being served, hijacked ones too.
	httpCtx   context.Context
	stopHTTP  context.CancelCauseFunc
	handlers  inflight
	addrs     map[string]net.Addr
	wg        sync.WaitGroup
	closeOnce sync.Once
	// profileRates: serveDebug set the block or mutex profiling rate, which Close resets.
	profileRates bool
	// web is what every HTTP listener shares: the console's sessions and the WebSocket counts
	// (httpwrap.go).
	web webShared
}

// Option adjusts how Start builds tern beyond its configuration.
type Option func(*options)

type options struct {
	clock clock.Clock
}

// WithClock runs the core and authentication on c instead of the system clock (tests move a fake
// one by hand).
func WithClock(c clock.Clock) Option { return func(o *options) { o.clock = c } }

// Start builds tern from cfg and starts every configured listener. Listener addresses with port 0
// get a free port; Addr tells which.
func Start(cfg config.Config, log *slog.Logger, opts ...Option) (*Server, error) {
	var o options
	for _, f := range opts {
		f(&o)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	st, err := openStore(cfg, log)
	if err != nil {
		return nil, err
	}
	// On a cluster node users, groups and tokens are the cluster's replicated records.
	var node *cluster.Node
	records := st.Records()
	if cfg.Cluster.Enabled() {
		if node, err = openCluster(cfg, st, log); err != nil {
			_ = st.Close()
			return nil, err
		}
		records = node.Records()
	}
	a, err := newAuthenticator(cfg, records, log, o.clock)
	if err == nil && node == nil {
		err = checkOpen(cfg, a, log)
	}
	if err != nil {
		closeAll(node, st)
		return nil, err
	}
	bc := broker.ConfigFrom(cfg)
	bc.Auth = a
	bc.Clock = o.clock
	// Only uplinks and the cluster ask which filters the sessions subscribe to.
	bc.NoInterest = node == nil && len(cfg.Route.Uplinks) == 0
	// A cluster node's core keeps client sessions in the cluster's replica (server/cluster.go).
	core, err := coreStore(node, st)
	if err != nil {
		closeAll(node, st)
		return nil, err
	}
	b, err := broker.New(bc, core, log)
	// On a cluster node mailboxes live in the replicated records too: readable on every node,
	// their waiters woken by writes made anywhere.
	mboxes := mailbox.New(records, mailbox.Config{TTL: cfg.Mailbox.TTL})
	if err == nil && node != nil {
		node.WatchRecords(mboxes.RecordsChanged)
		// Open mode is decided once the node holds the cluster's users.
		if err = startCluster(node, a, b, log); err == nil {
			err = checkOpen(cfg, a, log)
		}
	}
	if err != nil {
		closeAll(node, st)
		return nil, err
	}
	s := &Server{cfg: cfg, log: log, Broker: b, Store: st, Auth: a, Cluster: node, addrs: map[string]net.Addr{},
		tls: map[string]*certs.ServerTLS{}}
	s.httpCtx, s.stopHTTP = context.WithCancelCause(context.Background())
	s.MQTT = mqtt.NewServer(b, mqtt.ConfigFrom(cfg.MQTT), log)
	s.MBus = mbus.NewServer(b, mbus.Config{}, log)
	s.HTTP = httpapi.New(b, httpapi.ConfigFrom(cfg.HTTP), log)
	s.HTTP.SetBase(s.httpCtx)
	s.Mailboxes = mboxes
	s.Mailboxes.Notify = s.notifyMailbox
	if s.Webhooks, err = newWebhooks(cfg, node, b, st, log); err != nil {
		_ = s.Close()
		return nil, err
	}
	if err := s.startRoute(); err != nil {
		_ = s.Close()
		return nil, err
	}
	if err := s.listen(); err != nil {
		_ = s.Close()
		return nil, err
	}
	if s.Uplinks != nil {
		s.Uplinks.Start()
	}
	return s, nil
}

// closeAll closes what Start opened before it failed.
func closeAll(node *cluster.Node, st store.Store) {
	if node != nil {
		_ = node.Close()
	}
	_ = st.Close()
}

// openStore opens the durable store in the data directory, or a memory store without one.
func openStore(cfg config.Config, log *slog.Logger) (store.Store, error) {
	if cfg.DataDir == "" {
		log.Warn("no data directory: sessions, queues and retained messages are kept in memory only")
		return memstore.New(), nil
	}
	opts := pebblestore.Options{Logger: log, CacheBytes: cfg.Store.CacheBytes, AcceptCorruption: cfg.Store.AcceptCorruption}
	if cfg.Store.Sync == "interval" {
		opts.Sync, opts.Interval = pebblestore.SyncInterval, cfg.Store.SyncInterval
	}
	st, err := pebblestore.Open(cfg.DataDir, opts)
	if err != nil {
		return nil, fmt.Errorf("data directory %s: %w", cfg.DataDir, err)
	}
	log.Info("durable store open", "data_dir", cfg.DataDir, "sync", cfg.Store.Sync)
	return st, nil
}

// loadTLS reads the certificates of a TLS listener ([tls] with its tls.listeners override).
func (s *Server) loadTLS(name string) (*certs.ServerTLS, error) {
	t := s.cfg.TLS.ForListener(name)
	opts := certs.ServerTLSOptions{CertFile: t.CertFile, KeyFile: t.KeyFile,
		ClientCAFile: t.ClientCAFile, RequireClientCert: t.RequireClientCert, IdentitySAN: t.IdentitySAN}
	if name == "https" {
		// HTTP/2 for HTTPS clients; WebSocket upgrades still use HTTP/1.1 connections.
		opts.NextProtos = []string{"h2", "http/1.1"}
	}
	st, err := certs.NewServerTLS(opts)
	if err != nil {
		return nil, fmt.Errorf("TLS for listener %s: %w", name, err)
	}
	s.tls[name] = st
	s.log.Info("TLS certificate loaded", "listener", name, "cert", st.String(), "client_ca", t.ClientCAFile,
		"require_client_cert", t.RequireClientCert)
	return st, nil
}

// identify is how a listener names clients by their certificates; nil without TLS.
func identify(st *certs.ServerTLS) netio.Identify {
	if st == nil {
		return nil
	}
	return st.Identity
}

func (s *Server) listen() error {
	l := s.cfg.Listen
	if l.MQTT != "" {
		if err := s.serveMQTT("mqtt", "tcp", l.MQTT, nil); err != nil {
			return err
		}
	}
	if l.MQTTTLS != "" {
		st, err := s.loadTLS("mqtt_tls")
		if err != nil {
			return err
		}
		if err := s.serveMQTT("mqtt_tls", "tcp", l.MQTTTLS, st); err != nil {
			return err
		}
	}
	if l.Unix != "" {
		if err := removeStaleSocket(l.Unix); err != nil {
			return err
		}
		if err := s.serveMQTT("unix", "unix", l.Unix, nil); err != nil {
			return err
		}
	}
	if l.MBus != "" {
		if err := s.serveMBus("mbus", "tcp", l.MBus); err != nil {
			return err
		}
	}
	if l.MBusTLS != "" {
		st, err := s.loadTLS("mbus_tls")
		if err != nil {
			return err
		}
		if err := s.serveMBusTLS("mbus_tls", l.MBusTLS, st); err != nil {
			return err
		}
	}
	if l.MBusUnix != "" {
		if err := removeStaleSocket(l.MBusUnix); err != nil {
			return err
		}
		if err := s.serveMBus("mbus_unix", "unix", l.MBusUnix); err != nil {
			return err
		}
	}
	if l.MBusUnixTLS != "" {
		st, err := s.loadTLS("mbus_unix_tls")
		if err != nil {
			return err
		}
		if err := removeStaleSocket(l.MBusUnixTLS); err != nil {
			return err
		}
		if err := s.serveMBusOn("mbus_unix_tls", "unix", l.MBusUnixTLS, st); err != nil {
			return err
		}
	}
	if err := s.servePeers(); err != nil {
		return err
	}
	if l.HTTP != "" {
		if err := s.serveHTTP("http", l.HTTP, nil); err != nil {
			return err
		}
	}
	if l.MBusWS != "" {
		if err := s.serveMBusWS("mbus_ws", l.MBusWS, nil); err != nil {
			return err
		}
	}
	if l.MBusWSS != "" {
		st, err := s.loadTLS("mbus_wss")
		if err != nil {
			return err
		}
		if err := s.serveMBusWS("mbus_wss", l.MBusWSS, st); err != nil {
			return err
		}
	}
	if l.HTTPS != "" {
		st, err := s.loadTLS("https")
		if err != nil {
			return err
		}
		if err := s.serveHTTP("https", l.HTTPS, st); err != nil {
			return err
		}
	}
	return s.serveDebug()
}

func (s *Server) serveMQTT(name, network, addr string, st *certs.ServerTLS) error {
	ln, err := s.listenOn(network, addr)
	if err != nil {
		return fmt.Errorf("listen %s on %s: %w", name, addr, err)
	}
	if st != nil {
		// MQTT's own record layer: an idle connection sheds its cipher state (see tlsrec).
		ln = tlsrec.NewListener(ln, st.Config())
	}
	s.track(name, ln)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_ = s.MQTT.Serve(ln, identify(st))
	}()
	return nil
}

func (s *Server) serveMBus(name, network, addr string) error {
	return s.serveMBusOn(name, network, addr, nil)
}

func (s *Server) serveMBusTLS(name, addr string, st *certs.ServerTLS) error {
	return s.serveMBusOn(name, "tcp", addr, st)
}

func (s *Server) serveMBusOn(name, network, addr string, st *certs.ServerTLS) error {
	ln, err := s.listenOn(network, addr)
	if err != nil {
		return fmt.Errorf("listen %s on %s: %w", name, addr, err)
	}
	var id netio.Identify
	if st != nil {
		ln = tls.NewListener(ln, st.Config())
		id = st.Identity
	}
	s.track(name, ln)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_ = s.MBus.Serve(ln, id)
	}()
	return nil
}

func (s *Server) serveHTTP(name, addr string, st *certs.ServerTLS) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics.Register(reg, s.Broker.Stats(), s.MQTT.Stats(), s.Auth.Stats())
	s.registerClusterMetrics(reg)
	if s.Uplinks != nil {
		metrics.RegisterUplinks(reg, s.Uplinks.Stats)
	}
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tern_store_disk_bytes",
		Help: "Size of the durable store on disk."}, func() float64 { return float64(s.Store.DiskBytes()) }))
	return s.serveHTTPHandler(name, addr, st, s.routes(reg, identify(st)))
}

// serveMBusWS serves mBus over WebSocket on a listener of its own where any path is mBus, as
// mbus-broker's WebSocket listener is: mBus's own browser client connects to ws://host:port/
// with no path.
func (s *Server) serveMBusWS(name, addr string, st *certs.ServerTLS) error {
	id := identify(st)
	return s.serveHTTPHandler(name, addr, st, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.serveMBusWebSocket(w, r, id)
	}))
}

// serveHTTPHandler serves h over HTTP (HTTPS with st) on addr.
func (s *Server) serveHTTPHandler(name, addr string, st *certs.ServerTLS, h http.Handler) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s on %s: %w", name, addr, err)
	}
	if st != nil {
		// Parkable underneath, for MQTT over WebSocket (serveMQTTWebSocket).
		ln = netio.NewTLSListener(ln, st.Config())
	}
	s.track(name, ln)
	hs := &http.Server{
		Handler:           s.counted(h),
		BaseContext:       func(net.Listener) context.Context { return s.httpCtx },
		ReadHeaderTimeout: s.cfg.HTTP.ReadHeaderTimeout,
		// The whole request, body included: a client trickling a body gets 408 (the faces map
		// the read error). net/http lifts this deadline once the body has been read and when
		// a WebSocket takes the connection over, and HTTP/2 applies it to request bodies
		// only, so it never ends a stream, a long-poll or a WebSocket (TestHTTPReadTimeouts).
		// No WriteTimeout: streams set a deadline per write instead.
		ReadTimeout: s.cfg.HTTP.ReadTimeout,
		// Request line and headers together; longer gets 431.
		MaxHeaderBytes: 64 << 10,
		IdleTimeout:    2 * time.Minute,
		ErrorLog:       slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		Protocols:      new(http.Protocols),
	}
	hs.Protocols.SetHTTP1(true)
	hs.Protocols.SetHTTP2(st != nil)
	hs.Protocols.SetUnencryptedHTTP2(st == nil && s.cfg.HTTP.H2C)
	s.https = append(s.https, hs)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("http listener stopped", "addr", addr, "err", err)
		}
	}()
	return nil
}

// listenOn listens on a TCP address or a Unix socket path; a socket file gets listen.unix_mode.
func (s *Server) listenOn(network, addr string) (net.Listener, error) {
	// netio.Listen: MQTT's bare accept takes a connect storm's backlog with accept4.
	ln, err := netio.Listen(network, addr)
	if err != nil || network != "unix" {
		return ln, err
	}
	mode, _ := s.cfg.Listen.SocketMode() // validated
	if err := os.Chmod(addr, mode); err != nil {
		_ = ln.Close()
		return nil, err
	}
	return ln, nil
}

func (s *Server) track(name string, ln net.Listener) {
	s.listeners = append(s.listeners, ln)
	s.addrs[name] = ln.Addr()
	s.log.Info("listening", "listener", name, "addr", ln.Addr().String())
}

// Reload reads the TLS certificates, keys and client CAs again (on SIGHUP); new handshakes use
// them, established connections keep theirs. A listener whose files fail keeps its old ones.
func (s *Server) Reload() error {
	var errs []error
	for name, st := range s.tls {
		if err := st.Reload(); err != nil {
			errs = append(errs, fmt.Errorf("listener %s: %w", name, err))
			continue
		}
		s.log.Info("TLS certificate reloaded", "listener", name, "cert", st.String())
	}
	if s.Cluster != nil {
		if err := s.Cluster.ReloadTLS(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Addr returns the bound address of a listener: "mqtt", "mqtt_tls", "unix", "http", "https",
// "route" or "pprof".
func (s *Server) Addr(name string) string {
	if a, ok := s.addrs[name]; ok {
		return a.String()
	}
	return ""
}

// Close stops listening, disconnects every client and waits for the listeners to stop. HTTP
// streams are told to end first and are waited for, so they save their sessions while the store
// is open; the store closes last.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		if s.stopHTTP != nil {
			s.stopHTTP(broker.ErrServerShuttingDown)
		}
		for _, hs := range s.https {
			_ = hs.Shutdown(ctx)
		}
		for _, ln := range s.listeners {
			_ = ln.Close()
		}
		if s.Uplinks != nil {
			// The trunks go offline and keep their queues.
			s.Uplinks.Close()
		}
		if s.MQTT != nil {
			_ = s.MQTT.Close()
		}
		if s.MBus != nil {
			_ = s.MBus.Close()
		}
		// Shutdown does not wait for hijacked connections (WebSockets): their handlers are
		// counted here. One that ignores the end of its context is given up on at the deadline.
		if err := s.handlers.closeAndWait(ctx); err != nil {
			s.log.Warn("HTTP handlers still running at shutdown", "err", err)
		}
		if s.Webhooks != nil {
			s.Webhooks.Close()
		}
		if s.Broker != nil {
			_ = s.Broker.Close()
		}
		if s.Cluster != nil {
			// After the core, so what it saved of its sessions reaches the log; raft may still
			// apply into it until it stops, which a closed core takes (its store is open).
			if err := s.Cluster.Close(); err != nil {
				s.log.Error("closing the cluster node", "err", err)
			}
		}
		s.wg.Wait()
		s.stopProfileRates()
		// MQTT.Close waited for every connection to hand its last state to the core, so the
		// store can go now.
		if s.Store != nil {
			if err := s.Store.Close(); err != nil {
				s.log.Error("closing the store", "err", err)
			}
		}
		// Closing a Unix listener unlinks the socket file it created, so only files this
		// process bound go away: a tern that failed to start (its port taken, the socket in
		// use) must not delete the socket of one that runs, and removing a path again after
		// the close could delete a socket another process has bound there since.
	})
	return nil
}

// inflight counts running HTTP handlers so Close can wait for them; once closing, no new one
// starts (a request that slipped past the closed listeners gets 503).
type inflight struct {
	mu      sync.RWMutex // read-locked by requests, so they do not queue behind each other
	closing bool
	wg      sync.WaitGroup
}

func (f *inflight) enter() bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.closing {
		return false
	}
	f.wg.Add(1)
	return true
}

func (f *inflight) leave() { f.wg.Done() }

// closeAndWait refuses new handlers and waits for the running ones, at most until ctx ends.
func (f *inflight) closeAndWait(ctx context.Context) error {
	f.mu.Lock()
	f.closing = true
	f.mu.Unlock()
	done := make(chan struct{})
	go func() {
		f.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// removeStaleSocket deletes a socket file left by a tern that died, but refuses to steal one a
// live process still listens on.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("unix socket path %s exists and is not a socket", path)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		_ = c.Close()
		return fmt.Errorf("unix socket %s is in use by another process", path)
	}
	return os.Remove(path)
}
