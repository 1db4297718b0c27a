package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ternmq/tern/internal/adminapi"
	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/httpapi"
	"github.com/ternmq/tern/internal/httpauth"
	"github.com/ternmq/tern/internal/netio"
	"github.com/ternmq/tern/internal/wsconn"
)

// routes is the HTTP listener's handler: the console, the HTTP API, MQTT and mBus over
// WebSocket, metrics and health; CORS and console sessions around them (see httpHandler).
func (s *Server) routes(reg *prometheus.Registry, id netio.Identify) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /mqtt", func(w http.ResponseWriter, r *http.Request) { s.serveMQTTWebSocket(w, r, id) })
	mux.HandleFunc("GET /mbus", func(w http.ResponseWriter, r *http.Request) { s.serveMBusWebSocket(w, r, id) })
	// /metrics and /healthz stay open for scrapers and load balancers (counters, no names),
	// unless metrics.require_auth asks for admin:metrics.
	var scrape http.Handler = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	if s.cfg.Metrics.RequireAuth {
		scrape = httpauth.Require(s.Auth, httpauth.Identify(id), auth.Admin, func(*http.Request) string { return "metrics" }, scrape)
	}
	mux.Handle("GET /metrics", scrape)
	s.registerFaceMetrics(reg)
	// Stats list client ids and identities: admin only once authentication is on.
	mux.Handle("GET /v1/stats", httpauth.Require(s.Auth, httpauth.Identify(id), auth.Admin,
		func(*http.Request) string { return "stats" }, http.HandlerFunc(s.serveStats)))
	mux.Handle("/v1/admin/", adminapi.New(s.Auth, httpauth.Identify(id), s.log,
		adminapi.WithBroker(s.Broker), adminapi.WithWebhooks(s.Webhooks)))
	s.registerCluster(mux, id)
	s.HTTP.Register(mux, httpauth.Identify(id))
	s.HTTP.RegisterIsimud(mux, httpauth.Identify(id))
	s.HTTP.RegisterWebhooks(mux, s.Webhooks, httpauth.Identify(id))
	// mq-go registrations, like the webhooks they are, are the cluster's on a cluster node.
	regs := s.Store.Records()
	if s.Cluster != nil {
		regs = s.Cluster.Records()
	}
	s.HTTP.RegisterMQGo(mux, s.Webhooks, regs, httpauth.Identify(id))
	s.HTTP.RegisterMailboxes(mux, s.Mailboxes, httpauth.Identify(id))
	mux.HandleFunc("GET /readyz", s.serveReady)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
	})
	con := s.consoleFor()
	con.Register(mux, httpauth.Identify(id))
	return s.httpHandler(mux, con, httpauth.Identify(id))
}

// counted runs h for each request while the server is not closing, so Close can wait for the
// handlers (see inflight).
func (s *Server) counted(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.handlers.enter() {
			w.Header().Set("Connection", "close")
			httpauth.WriteError(w, http.StatusServiceUnavailable, "unavailable", broker.ErrServerShuttingDown.Error())
			return
		}
		if r.Method != http.MethodGet {
			defer s.handlers.leave()
			h.ServeHTTP(w, r)
			return
		}
		// A WebSocket or a stream may outlive its handler (httpapi.Keep): it is waited for until
		// it ends. (Both come as GET requests.)
		r, done := httpapi.Outlive(r, s.handlers.leave)
		defer done()
		h.ServeHTTP(w, r)
	})
}

// serveMBusWebSocket runs an mBus connection over WebSocket (subprotocol "mbus", binary
// messages). The face reads a byte stream, so a frame may span messages and a message may hold
// several frames. The framing is wsconn's, as on every WebSocket endpoint; the mBus face closes
// its connections itself when the server closes, with its own goodbye.
func (s *Server) serveMBusWebSocket(w http.ResponseWriter, r *http.Request, id netio.Identify) {
	// Any origin may connect; one not trusted with the browser's client certificate
	// authenticates in command.create.
	ws, err := wsconn.Upgrade(w, r, wsconn.Options{Subprotocols: []string{"mbus"}, AnyOrigin: true})
	if err != nil {
		return
	}
	if !httpapi.TrustedOrigin(r, s.cfg.HTTP.WebSocketOrigins) {
		id = nil
	}
	// The connection is the face's from here, on a goroutine of its own: this handler returns,
	// and net/http lets go of the request and the buffers it kept for it (about 13 KiB). The
	// connection stays counted, and waited for at shutdown, until it ends (httpapi.Keep).
	release, cs := httpapi.Keep(r), r.TLS
	go func() {
		defer release()
		s.MBus.ServeConn(ws, cs, id)
	}()
}

// serveMQTTWebSocket upgrades to WebSocket and runs an MQTT connection over binary messages. A
// WebSocket message may hold several MQTT packets or part of one; the face reads a byte stream.
// The framing is wsconn's: an idle MQTT connection over it parks in the poller like one over
// TCP (docs/decisions.md, "MQTT over WebSocket parks").
func (s *Server) serveMQTTWebSocket(w http.ResponseWriter, r *http.Request, id netio.Identify) {
	origins := s.cfg.MQTT.WebSocketOrigins
	ws, err := wsconn.Upgrade(w, r, wsconn.Options{
		// "mqtt" is the standard name; "mqttv3.1" is what older clients offer.
		Subprotocols: []string{"mqtt", "mqttv3.1"},
		// MQTT authenticates in CONNECT, so any origin may connect unless mqtt.websocket_origins
		// lists the allowed ones.
		AnyOrigin:      len(origins) == 0,
		OriginPatterns: origins,
	})
	if err != nil {
		return
	}
	// The browser's client certificate names the client only for a trusted origin (the
	// server's own, http.websocket_origins, or one mqtt.websocket_origins lets in); a page
	// elsewhere authenticates in CONNECT.
	if !httpapi.TrustedOrigin(r, append(slices.Clip(s.cfg.HTTP.WebSocketOrigins), origins...)) {
		id = nil
	}
	// The MQTT face closes its connections itself when the server closes, with a DISCONNECT;
	// once the connection parks this handler returns (the connection is no longer HTTP's), and
	// the connection is counted until the face closes it.
	ws.OnClose(httpapi.Keep(r))
	s.MQTT.ServeConnTLS(ws, r.TLS, id)
}

// serveReady answers GET /readyz: 200 while the broker takes clients and its store accepts
// writes, 503 otherwise (a load balancer then sends clients elsewhere).
func (s *Server) serveReady(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	if err := s.ready(); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		_ = json.NewEncoder(w).Encode(map[string]string{"status": "unavailable", "reason": err.Error()})
		return
	}
	_, _ = w.Write([]byte(`{"status":"ready"}` + "\n"))
}

func (s *Server) ready() error {
	if err := s.Store.Health(); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}
