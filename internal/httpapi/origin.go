package httpapi

import (
	"net/http"
	"net/url"
	"path"
	"strings"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/httpauth"
)

// A browser attaches some credentials to every request to a site by itself: Basic credentials it
// was given before, its client certificate, cookies. A page from another origin that opens a
// WebSocket to tern would be served with them (cross-site WebSocket hijacking), and WebSockets,
// unlike other cross-origin requests, are not held back by CORS. So on the WebSocket endpoints
// those credentials count only for a trusted origin, and a page from any other one
// authenticates inside the connection, with what it knows itself.

// TrustedOrigin reports whether the credentials a browser attaches by itself may count for r:
// r has no Origin header (it is not from a browser page), or its Origin is the server's own
// (the Origin's host equals the Host header, as coder/websocket decides), or the Origin's host
// matches one of patterns (path.Match, case-insensitive, e.g. "app.example.com",
// "*.example.com"; the port is part of the host).
func TrustedOrigin(r *http.Request, patterns []string) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false // "null" (sandboxed frames, files) and anything unreadable
	}
	host := strings.ToLower(u.Host)
	if host == strings.ToLower(r.Host) {
		return true
	}
	for _, p := range patterns {
		if ok, _ := path.Match(strings.ToLower(p), host); ok {
			return true
		}
	}
	return false
}

// WithoutAmbient returns c without the credentials a browser attaches by itself (Basic and a
// client certificate's identity). A bearer token stays: a page cannot make a browser send an
// Authorization header on a WebSocket, so one there was put by a program that knows it.
func WithoutAmbient(c auth.Credentials) auth.Credentials {
	c.Username, c.Password, c.CertIdentity = "", nil, ""
	return c
}

// wsCredentials is what the upgrade request r presents for the WebSocket endpoints of this
// face: all of it from a trusted origin, no ambient credentials from another.
func (s *Server) wsCredentials(r *http.Request) auth.Credentials {
	c := httpauth.Credentials(r, s.identify, "http")
	if !TrustedOrigin(r, s.cfg.WebSocketOrigins) {
		c = WithoutAmbient(c)
	}
	return c
}
