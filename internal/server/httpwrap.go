package server

import (
	"bytes"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/cors"

	"github.com/ternmq/tern/internal/console"
	"github.com/ternmq/tern/internal/httpapi"
	"github.com/ternmq/tern/internal/httpauth"
	"github.com/ternmq/tern/internal/metrics"
)

// webShared is what the HTTP listeners share.
type webShared struct {
	once    sync.Once
	console *console.Console
	// ws counts open WebSocket connections by endpoint, for the metrics.
	ws map[string]*atomic.Int64
}

// wsEndpoints name the WebSocket endpoints in tern_websocket_clients.
var wsEndpoints = map[string]string{"/mqtt": "mqtt", "/mbus": "mbus", "/v1/ws": "api", "/sub": "isimud"}

func (s *Server) shared() *webShared {
	s.web.once.Do(func() {
		s.web.console = console.New(s.Auth, s.log, nil)
		s.web.ws = map[string]*atomic.Int64{}
		for _, e := range wsEndpoints {
			s.web.ws[e] = new(atomic.Int64)
		}
	})
	return &s.web
}

// consoleFor is the console every HTTP listener serves (one table of sessions).
func (s *Server) consoleFor() *console.Console { return s.shared().console }

// registerFaceMetrics adds the HTTP face's, the WebSockets', mBus's and the webhooks' counters to
// a listener's registry.
func (s *Server) registerFaceMetrics(reg prometheus.Registerer) {
	metrics.RegisterFaces(reg, metrics.Faces{HTTP: s.HTTP.Stats(), MBus: s.MBus.Stats(), WebSockets: s.shared().ws,
		Webhooks: s.Webhooks})
}

// httpHandler wraps a listener's mux: CORS first (http.cors_origins; a preflight is answered
// there), then console sessions, the WebSocket counts, and JSON errors for what no route serves.
func (s *Server) httpHandler(mux *http.ServeMux, con *console.Console, id httpauth.Identify) http.Handler {
	ws := s.shared().ws
	var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "" {
			if n := ws[wsEndpoints[r.URL.Path]]; n != nil {
				// Counted until the connection ends, which may be after the handler returns
				// (a parked WebSocket: httpapi.Keep).
				n.Add(1)
				var done func()
				r, done = httpapi.Outlive(r, func() { n.Add(-1) })
				defer done()
			}
		}
		if _, pattern := mux.Handler(r); pattern == "" {
			serveUnrouted(mux, w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
	h = con.Wrap(h, id)
	if origins := s.cfg.HTTP.CORSOrigins; len(origins) > 0 {
		h = cors.New(cors.Options{
			AllowedOrigins: origins,
			AllowedMethods: []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodDelete},
			// Authorization: a page on another origin authenticates itself (no credentials mode:
			// the browser adds no cookie, cached Basic or client certificate of its own).
			AllowedHeaders: []string{"Authorization", "Content-Type", "Last-Event-ID", "Accept"},
			ExposedHeaders: []string{"X-Tern-Stale", "Retry-After", "WWW-Authenticate", "Location"},
			MaxAge:         600,
		}).Handler(h)
	}
	return h
}

// serveUnrouted answers a request no route serves as ServeMux would (404, 405 with Allow, or a
// redirect to the cleaned path), but with the JSON error body every route uses.
func serveUnrouted(mux *http.ServeMux, w http.ResponseWriter, r *http.Request) {
	rec := &recorder{header: http.Header{}}
	mux.ServeHTTP(rec, r)
	switch rec.status {
	case http.StatusNotFound:
		httpauth.WriteError(w, http.StatusNotFound, "not_found", "no such route: "+r.Method+" "+r.URL.Path)
	case http.StatusMethodNotAllowed:
		w.Header().Set("Allow", rec.header.Get("Allow"))
		httpauth.WriteError(w, http.StatusMethodNotAllowed, "method_not_allowed",
			r.Method+" is not allowed on "+r.URL.Path+"; allowed: "+strings.ReplaceAll(rec.header.Get("Allow"), ",", ", "))
	default:
		for k, v := range rec.header {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.status)
		_, _ = w.Write(rec.body.Bytes())
	}
}

// recorder keeps what ServeMux's own small answers (404, 405, redirects) write.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}
func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	if r.body.Len() < 4096 {
		r.body.Write(b[:min(len(b), 4096-r.body.Len())])
	}
	return len(b), nil
}
