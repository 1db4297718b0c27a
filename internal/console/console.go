// Package console serves tern's web console: a page at / and its assets, embedded in the binary
// (plain HTML, CSS and JavaScript modules; nothing is fetched from elsewhere), and the console's
// login sessions. The pages read and change the core through the same HTTP API as any client
// (/v1/...), plus the admin API: Wrap lets a console session's cookie stand for the credentials
// the person logged in with, so every route decides what they may see and do as it would for
// them.
//
// Safety: the session cookie is HttpOnly and SameSite=Strict (and Secure, with the __Host-
// prefix, over HTTPS); it counts only on same-origin requests that are not WebSocket upgrades;
// every request that may change something (any method but GET, HEAD and OPTIONS) must carry the
// session's CSRF token in the X-Tern-CSRF header; the login itself is refused from other origins
// (net/http's CrossOriginProtection). Pages and assets go out with a Content-Security-Policy that
// allows only the server's own scripts and styles, none inline; the scripts put data into pages
// as text (textContent), never as markup. No secret is ever in a URL.
package console

import (
	"context"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/httpauth"
)

//go:embed static
var static embed.FS

// CSRFHeader carries a console session's CSRF token on requests that change something.
const CSRFHeader = "X-Tern-CSRF"

// contentSecurityPolicy allows the console's own scripts, styles, images and connections only.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// Authenticator is what the console asks (auth.Authenticator is one).
type Authenticator interface {
	Authenticate(ctx context.Context, c auth.Credentials) (*auth.Principal, error)
	Open() bool
}

// Console serves the console's pages and keeps its sessions; one serves every HTTP listener.
type Console struct {
	a        Authenticator
	log      *slog.Logger
	sessions *table
	assets   http.Handler
	index    []byte
}

// New returns the console. now may be nil (the system clock).
func New(a Authenticator, log *slog.Logger, now func() time.Time) *Console {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree is part of the binary
	}
	index, err := fs.ReadFile(sub, "index.html")
	if err != nil {
		panic(err)
	}
	return &Console{a: a, log: log, sessions: newTable(now), index: index,
		assets: http.StripPrefix("/console/assets/", http.FileServerFS(sub))}
}

// Register adds the console's routes to one listener's mux; identify names that listener's
// clients by their TLS certificates (nil without TLS).
func (c *Console) Register(mux *http.ServeMux, identify httpauth.Identify) {
	mux.HandleFunc("GET /{$}", c.serveIndex)
	mux.Handle("GET /console/assets/", secureHeaders(c.assets))
	login := http.NewCrossOriginProtection()
	mux.Handle("POST /console/api/login", login.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.login(w, r, identify)
	})))
	mux.HandleFunc("POST /console/api/logout", c.logout)
	mux.HandleFunc("GET /console/api/session", func(w http.ResponseWriter, r *http.Request) { c.whoami(w, r, identify) })
}

func secureHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		setSecurityHeaders(w.Header())
		h.ServeHTTP(w, r)
	})
}

func setSecurityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	// Assets change with the binary; revalidating is cheap (Last-Modified is the embed's zero
	// time, so "no-cache" is what keeps an upgraded server's scripts from being stale).
	h.Set("Cache-Control", "no-cache")
}

func (c *Console) serveIndex(w http.ResponseWriter, _ *http.Request) {
	setSecurityHeaders(w.Header())
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(c.index)
}

// cookieName is __Host-tern on HTTPS (the browser then insists on Secure, Path=/ and no Domain)
// and tern_console on plain HTTP, where the prefix is not allowed.
func cookieName(r *http.Request) string {
	if r.TLS != nil {
		return "__Host-tern"
	}
	return "tern_console"
}

func sessionCookie(r *http.Request) string {
	ck, err := r.Cookie(cookieName(r))
	if err != nil {
		return ""
	}
	return ck.Value
}

// LoginBody is what POST /console/api/login takes: a user name and password, or a token, or
// neither (a client certificate, open mode or anonymous access).
type LoginBody struct {
	Username string `json:"username"`
	Password string `json:"password"`
	Token    string `json:"token"`
}

// SessionInfo is what GET /console/api/session and a login answer.
type SessionInfo struct {
	LoggedIn bool `json:"logged_in"`
	// Open: nothing is configured, so anybody who reaches the port may do everything.
	Open     bool   `json:"open"`
	Identity string `json:"identity,omitempty"`
	// Method is how the session authenticates: password, token, certificate or none.
	Method string `json:"method,omitempty"`
	CSRF   string `json:"csrf,omitempty"`
	// Certificate is the identity of the client certificate this request came with, so the login
	// page can offer it.
	Certificate string `json:"certificate,omitempty"`
	// Admin says which admin resources the person may manage, so the pages show what they
	// may use (the API decides anyway).
	Admin map[string]bool `json:"admin,omitempty"`
}

var methodNames = map[kind]string{kindNone: "none", kindPassword: "password", kindToken: "token", kindCert: "certificate"}

func (c *Console) login(w http.ResponseWriter, r *http.Request, identify httpauth.Identify) {
	var b LoginBody
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
	if err == nil {
		err = json.Unmarshal(raw, &b)
	}
	if err != nil {
		httpauth.WriteError(w, http.StatusBadRequest, "bad_json", "request body: "+err.Error())
		return
	}
	creds := auth.Credentials{Face: "http", RemoteAddr: r.RemoteAddr}
	s := &session{}
	switch {
	case b.Token != "":
		s.kind, s.secret = kindToken, b.Token
		creds.Token = b.Token
	case b.Username != "":
		s.kind, s.username, s.secret = kindPassword, b.Username, b.Password
		creds.Username, creds.Password = b.Username, []byte(b.Password)
	default:
		creds.CertIdentity = httpauth.Credentials(r, identify, "http").CertIdentity
		if creds.CertIdentity != "" {
			s.kind = kindCert
		}
	}
	p, err := c.a.Authenticate(r.Context(), creds)
	if err != nil {
		status, code := httpauth.Status(err)
		// No WWW-Authenticate: the browser must not put up its own password dialog.
		httpauth.WriteError(w, status, code, err.Error())
		return
	}
	s.identity = p.Identity
	if s.kind == kindCert {
		s.secret = creds.CertIdentity
	}
	cookie := c.sessions.add(s)
	http.SetCookie(w, &http.Cookie{Name: cookieName(r), Value: cookie, Path: "/", HttpOnly: true,
		Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode, MaxAge: int(maxLifetime / time.Second)})
	c.log.Info("console login", "identity", p.Identity, "method", methodNames[s.kind], "remote", r.RemoteAddr)
	writeJSON(w, c.info(s, p, ""))
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request) {
	cookie := sessionCookie(r)
	if s := c.sessions.get(cookie); s != nil {
		if !csrfOK(r, s) {
			httpauth.WriteError(w, http.StatusForbidden, "csrf", "the request lacks the console session's CSRF token")
			return
		}
		c.sessions.remove(cookie)
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName(r), Value: "", Path: "/", HttpOnly: true, Secure: r.TLS != nil,
		SameSite: http.SameSiteStrictMode, MaxAge: -1})
	w.WriteHeader(http.StatusNoContent)
}

// whoami answers GET /console/api/session: the session this browser has, if it still
// authenticates.
func (c *Console) whoami(w http.ResponseWriter, r *http.Request, identify httpauth.Identify) {
	w.Header().Set("Cache-Control", "no-store")
	cert := httpauth.Credentials(r, identify, "http").CertIdentity
	s := c.sessions.get(sessionCookie(r))
	if s == nil || (s.kind == kindCert && s.secret != cert) {
		writeJSON(w, SessionInfo{Open: c.a.Open(), Certificate: cert})
		return
	}
	p, err := c.a.Authenticate(r.Context(), s.credentials(r))
	if err != nil {
		c.sessions.remove(sessionCookie(r))
		writeJSON(w, SessionInfo{Open: c.a.Open(), Certificate: cert})
		return
	}
	writeJSON(w, c.info(s, p, cert))
}

// adminResources are what the pages ask about; "tokens/<identity>" is added per person.
var adminResources = []string{"users", "groups", "tokens", "sessions", "stats", "webhooks", "metrics"}

func (c *Console) info(s *session, p *auth.Principal, cert string) SessionInfo {
	in := SessionInfo{LoggedIn: true, Open: c.a.Open(), Identity: p.Identity, Method: methodNames[s.kind],
		CSRF: s.csrf, Certificate: cert, Admin: map[string]bool{}}
	for _, res := range adminResources {
		in.Admin[res] = p.Allow(auth.Admin, res)
	}
	in.Admin["own_tokens"] = p.Identity != "" && p.Allow(auth.Admin, "tokens/"+p.Identity)
	return in
}

// credentials are what the session presents for request r.
func (s *session) credentials(r *http.Request) auth.Credentials {
	c := auth.Credentials{Face: "http", RemoteAddr: r.RemoteAddr}
	switch s.kind {
	case kindPassword:
		c.Username, c.Password = s.username, []byte(s.secret)
	case kindToken:
		c.Token = s.secret
	case kindCert:
		c.CertIdentity = s.secret
	}
	return c
}

func csrfOK(r *http.Request, s *session) bool {
	got := r.Header.Get(CSRFHeader)
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(s.csrf)) == 1
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(v)
}

// safeMethod: a request that changes nothing, by HTTP's rules and tern's routes.
func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// sameOrigin reports whether a browser says r comes from a page of this server (or from the
// person, typing a URL). A request that says nothing of its origin (no browser, or an old
// one) counts too: what it could change is guarded by the CSRF token.
func sameOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "same-origin":
		return true
	case "none":
		return safeMethod(r.Method)
	case "":
	default:
		return false
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	return err == nil && u.Host != "" && strings.EqualFold(u.Host, r.Host)
}
