package console

import (
	"net/http"
	"strings"

	"github.com/ternmq/tern/internal/httpauth"
)

// Wrap lets a console session's cookie authenticate requests to the rest of the listener (the
// API the pages use), as the credentials the person logged in with: each route then
// authenticates and authorizes them itself, exactly as for any client. A request that brings an
// Authorization header of its own, a WebSocket upgrade, or a request from another origin is
// passed on untouched: the cookie does not count for it.
//
// With the cookie, a request that may change something needs the session's CSRF token (403
// "csrf" otherwise); a cookie whose session ended gets 401 "session_expired". Answers to
// requests with the cookie, or marked X-Requested-With: tern-console (the console's scripts mark
// every request), lose any WWW-Authenticate challenge, so a browser never puts up its own login
// dialog over the console.
func (c *Console) Wrap(next http.Handler, identify httpauth.Identify) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cookie := sessionCookie(r)
		if r.Header.Get("X-Requested-With") == "tern-console" {
			// The console's own request (its session may have ended): no browser dialog.
			w = &noChallenge{ResponseWriter: w}
		}
		if cookie == "" || r.Header.Get("Authorization") != "" || r.Header.Get("Upgrade") != "" ||
			strings.HasPrefix(r.URL.Path, "/console/") || !sameOrigin(r) {
			next.ServeHTTP(w, r)
			return
		}
		s := c.sessions.get(cookie)
		if s == nil {
			httpauth.WriteError(w, http.StatusUnauthorized, "session_expired", "the console session has ended; log in again")
			return
		}
		if !safeMethod(r.Method) && !csrfOK(r, s) {
			httpauth.WriteError(w, http.StatusForbidden, "csrf", "the request lacks the console session's CSRF token")
			return
		}
		r = r.Clone(r.Context())
		switch s.kind {
		case kindPassword:
			r.SetBasicAuth(s.username, s.secret)
		case kindToken:
			r.Header.Set("Authorization", "Bearer "+s.secret)
		case kindCert:
			// The certificate comes with every request; it must still be the one logged in with.
			if httpauth.Credentials(r, identify, "http").CertIdentity != s.secret {
				httpauth.WriteError(w, http.StatusUnauthorized, "session_expired", "the client certificate changed; log in again")
				return
			}
		}
		next.ServeHTTP(&noChallenge{ResponseWriter: w}, r)
	})
}

// noChallenge drops WWW-Authenticate from an answer.
type noChallenge struct {
	http.ResponseWriter
}

func (n *noChallenge) WriteHeader(code int) {
	n.Header().Del("WWW-Authenticate")
	n.ResponseWriter.WriteHeader(code)
}

// Unwrap gives http.ResponseController (streams' Flush and deadlines) the real writer.
func (n *noChallenge) Unwrap() http.ResponseWriter { return n.ResponseWriter }
