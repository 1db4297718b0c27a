// Package httpauth authenticates HTTP requests with tern's auth package and writes its refusals
// as JSON errors: Basic credentials, a Bearer token or a verified client certificate become
// auth.Credentials; the decision stays with auth.
package httpauth

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/ternmq/tern/internal/auth"
)

// Authenticator is what Require asks (auth.Authenticator is one).
type Authenticator interface {
	Authenticate(ctx context.Context, c auth.Credentials) (*auth.Principal, error)
}

// Identify names the client of a TLS connection by its verified certificate ("" for none).
type Identify func(tls.ConnectionState) string

// Credentials collects what the request presents: Basic credentials, or else a Bearer token; the
// identity of a client certificate; the remote address; and face. A certificate counts only when
// the handshake verified it (VerifiedChains): a listener that merely requests certificates gets
// unverified ones too, and an identity from those would let anybody claim any name. identify may
// be nil (no certificate identities).
func Credentials(r *http.Request, identify Identify, face string) auth.Credentials {
	c := auth.Credentials{Face: face, RemoteAddr: r.RemoteAddr}
	if user, pw, ok := r.BasicAuth(); ok {
		c.Username, c.Password = user, []byte(pw)
	} else if h := r.Header.Get("Authorization"); len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		c.Token = strings.TrimSpace(h[7:])
	}
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && identify != nil {
		c.CertIdentity = identify(*r.TLS)
	}
	return c
}

// Error is the JSON body of every error: {"error": {"code": "...", "message": "..."}}. Codes are
// stable; messages are for people.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// WriteError writes status with a JSON error body.
func WriteError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(struct {
		Error Error `json:"error"`
	}{Error{Code: code, Message: message}})
}

// Status maps an authentication error to an HTTP status and error code.
func Status(err error) (int, string) {
	switch {
	case errors.Is(err, auth.ErrBadCredentials), errors.Is(err, auth.ErrNotAuthorized):
		return http.StatusUnauthorized, "unauthorized"
	case errors.Is(err, auth.ErrBackoff):
		return http.StatusTooManyRequests, "too_many_attempts"
	default:
		return http.StatusServiceUnavailable, "auth_unavailable"
	}
}

// Refuse answers a failed authentication: 401 with a challenge, 429 with Retry-After, or 503.
// Retry-After is one second: auth reports the back-off's end only in its message, and a client
// retrying early is refused again without any password being checked, so a short hint costs
// nothing.
func Refuse(w http.ResponseWriter, err error) {
	status, code := Status(err)
	switch status {
	case http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", `Basic realm="tern", Bearer realm="tern"`)
	case http.StatusTooManyRequests:
		w.Header().Set("Retry-After", "1")
	}
	WriteError(w, status, code, err.Error())
}

type principalKey struct{}

// PrincipalFrom returns the principal Require authenticated, nil outside it.
func PrincipalFrom(ctx context.Context) *auth.Principal {
	p, _ := ctx.Value(principalKey{}).(*auth.Principal)
	return p
}

// Require lets a request through to next only if its client authenticates and may do action on
// resource(r); otherwise 401/429/503 (authentication) or 403 (not granted). The principal is in
// the request's context for next (PrincipalFrom). An open Authenticator (nothing configured)
// admits every request as an unrestricted principal, so everything passes then.
func Require(a Authenticator, identify Identify, action auth.Action, resource func(*http.Request) string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := a.Authenticate(r.Context(), Credentials(r, identify, "http"))
		if err != nil {
			Refuse(w, err)
			return
		}
		if res := resource(r); !p.Allow(action, res) {
			WriteError(w, http.StatusForbidden, "forbidden", "not granted: "+action.String()+" on "+res)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	})
}
