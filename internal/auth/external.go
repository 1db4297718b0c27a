package auth

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// URLConfig configures the external authorization URL, in one of two styles:
//
//   - "bearer" (as isimud's AUTH_URL): for credentials carrying a token, GET the URL with
//     "Authorization: Bearer <token>". 2xx allows, with BearerGrants; 401 or 403 denies.
//     Credentials without a token are left to the local sources.
//   - "json" (the default, modelled on EMQX's HTTP authentication): POST a JSON object with
//     username, password (password_base64 instead if it is not UTF-8), token, client_id, face
//     and remote_addr; a 2xx answer is {"result": "allow"|"deny"|"ignore", "identity": "...",
//     "grants": [{"action": "publish", "filter": "a/#"}], "ttl": seconds}. "ignore" hands the
//     client on to the local sources; 401 or 403 denies.
//
// Any other status, a redirect, a malformed answer, a transport error or no answer within Timeout
// refuses the client with ErrUnavailable (failing closed) and is not cached. Decisions, denials
// included, are cached for their TTL under a hash of the credentials.
type URLConfig struct {
	URL   string // absolute http or https URL; empty disables the external source
	Style string // "json" or "bearer"; default "json"
	// Timeout bounds one request. Default 5 seconds.
	Timeout time.Duration
	// CacheTTL is how long a decision is kept when the answer names no ttl (always, for bearer).
	// Default one minute; negative disables the cache.
	CacheTTL time.Duration
	// MaxTTL caps the ttl an answer may ask for. Default one hour.
	MaxTTL time.Duration
	// CacheSize bounds the cached decisions. Default 10,000.
	CacheSize int
	// BearerGrants are the grants of a client a bearer-style URL allowed.
	BearerGrants []Grant
	// Client sends the requests; nil means a client of its own that does not follow redirects.
	Client *http.Client
}

const maxAnswerBytes = 64 << 10

type verdict uint8

const (
	verdictAllow verdict = iota
	verdictDeny
	verdictIgnore
)

type urlDecision struct {
	verdict  verdict
	identity string
	grants   []Grant
	ttl      time.Duration // how long the decision may be reused
}

type urlCached struct {
	d       urlDecision
	expires time.Time
}

// urlCall is one request in flight. Clients presenting the same credentials at once (a fleet
// reconnecting after a restart) wait for it instead of each sending their own.
type urlCall struct {
	done chan struct{}
	d    urlDecision
	err  error
}

type urlAuth struct {
	cfg    URLConfig
	a      *Authenticator
	client *http.Client

	mu       sync.Mutex
	cache    *simplelru.LRU[string, urlCached]
	inflight map[string]*urlCall
	// onWait, if set, is called when a caller starts waiting for another's request (tests).
	onWait func()
}

func newURLAuth(cfg URLConfig, a *Authenticator) (*urlAuth, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("auth: URL %q is not an absolute http(s) URL", cfg.URL)
	}
	switch cfg.Style {
	case "":
		cfg.Style = "json"
	case "json", "bearer":
	default:
		return nil, fmt.Errorf("auth: URL style %q is neither json nor bearer", cfg.Style)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.CacheTTL == 0 {
		cfg.CacheTTL = time.Minute
	}
	if cfg.MaxTTL <= 0 {
		cfg.MaxTTL = time.Hour
	}
	if cfg.CacheSize <= 0 {
		cfg.CacheSize = 10000
	}
	c := cfg.Client
	if c == nil {
		c = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	return &urlAuth{cfg: cfg, a: a, client: c, cache: newLRU[urlCached](cfg.CacheSize), inflight: make(map[string]*urlCall)}, nil
}

// authenticate asks the URL (or the cache). decided is false when the local sources should
// continue: the answer was "ignore", or a bearer URL was configured and there is no token.
func (u *urlAuth) authenticate(ctx context.Context, c Credentials, tok string) (p *Principal, why cause, err error, decided bool) {
	var key string
	if u.cfg.Style == "bearer" {
		if tok == "" {
			return nil, 0, nil, false
		}
		key = credentialKey("bearer", tok)
	} else {
		host := c.RemoteAddr
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h // the port changes with every connection and must not defeat the cache
		}
		key = credentialKey("json", c.Face, c.ClientID, c.Username, string(c.Password), tok, host)
	}
	d, err := u.decide(ctx, key, c, tok)
	if err != nil {
		return nil, causeUnavailable, fmt.Errorf("%w: %v", ErrUnavailable, err), true
	}
	switch d.verdict {
	case verdictIgnore:
		return nil, 0, nil, false
	case verdictDeny:
		return nil, causeURLDenied, fmt.Errorf("%w: denied by the authorization URL", ErrBadCredentials), true
	}
	id, grants := d.identity, d.grants
	if u.cfg.Style == "bearer" {
		// The URL names nobody; a digest of the token is a stable name for %u and logs that does
		// not reveal the token.
		id, grants = "bearer-"+hashToken(tok)[:16], u.cfg.BearerGrants
	} else if id == "" {
		id = c.Username
	}
	all := append(append([]Grant{}, u.a.cfg.DefaultGrants...), grants...)
	return buildPrincipal(id, c.ClientID, SourceURL, all), 0, nil, true
}

// decide returns a cached decision or asks the URL, once per key at a time.
func (u *urlAuth) decide(ctx context.Context, key string, c Credentials, tok string) (urlDecision, error) {
	u.mu.Lock()
	if e, ok := u.cache.Get(key); ok {
		if u.a.now().Before(e.expires) {
			u.mu.Unlock()
			u.a.stats.URLCacheHits.Add(1)
			return e.d, nil
		}
		u.cache.Remove(key)
	}
	call := u.inflight[key]
	if call != nil {
		u.mu.Unlock()
		if u.onWait != nil {
			u.onWait()
		}
	} else {
		call = &urlCall{done: make(chan struct{})}
		u.inflight[key] = call
		u.mu.Unlock()
		// The request runs on its own, bounded by Timeout, so that every caller, the first
		// included, can give up when its own ctx ends while the others still get the answer.
		// It may outlive Authenticate, so it gets its own copy of the password: a face may
		// reuse its buffer.
		c.Password = bytes.Clone(c.Password)
		go u.run(call, key, c, tok)
	}
	select {
	case <-call.done:
		return call.d, call.err
	case <-ctx.Done():
		return urlDecision{}, ctx.Err()
	}
}

// run sends one request, caches its decision and wakes the callers waiting for it.
func (u *urlAuth) run(call *urlCall, key string, c Credentials, tok string) {
	ctx, cancel := context.WithTimeout(context.Background(), u.cfg.Timeout)
	call.d, call.err = u.request(ctx, c, tok)
	cancel()
	u.a.stats.URLRequests.Add(1)
	u.mu.Lock()
	delete(u.inflight, key)
	if call.err == nil && u.cfg.CacheTTL > 0 && call.d.ttl > 0 {
		u.cache.Add(key, urlCached{d: call.d, expires: u.a.now().Add(call.d.ttl)})
	}
	u.mu.Unlock()
	close(call.done)
}

// urlRequest is the body of a json-style request.
type urlRequest struct {
	Username       string `json:"username"`
	Password       string `json:"password,omitempty"`
	PasswordBase64 string `json:"password_base64,omitempty"`
	Token          string `json:"token,omitempty"`
	ClientID       string `json:"client_id"`
	Face           string `json:"face"`
	RemoteAddr     string `json:"remote_addr"`
}

func (u *urlAuth) request(ctx context.Context, c Credentials, tok string) (urlDecision, error) {
	var req *http.Request
	var err error
	if u.cfg.Style == "bearer" {
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, u.cfg.URL, nil)
		if err == nil {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
	} else {
		body := urlRequest{Username: c.Username, Token: tok, ClientID: c.ClientID, Face: c.Face, RemoteAddr: c.RemoteAddr}
		if utf8.Valid(c.Password) {
			body.Password = string(c.Password)
		} else {
			body.PasswordBase64 = base64.StdEncoding.EncodeToString(c.Password)
		}
		b, _ := json.Marshal(body) // strings only: cannot fail
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, u.cfg.URL, bytes.NewReader(b))
		if err == nil {
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json")
		}
	}
	if err != nil {
		return urlDecision{}, err
	}
	resp, err := u.client.Do(req)
	if err != nil {
		return urlDecision{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes+1))
	if err != nil {
		return urlDecision{}, err
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return urlDecision{verdict: verdictDeny, ttl: u.cfg.CacheTTL}, nil
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return urlDecision{}, fmt.Errorf("authorization URL answered %s", resp.Status)
	case u.cfg.Style == "bearer":
		return urlDecision{verdict: verdictAllow, ttl: u.cfg.CacheTTL}, nil
	}
	if len(body) > maxAnswerBytes {
		return urlDecision{}, errors.New("authorization URL answer too long")
	}
	d, bad, err := decodeAnswer(body, u.cfg.CacheTTL, u.cfg.MaxTTL)
	for _, g := range bad {
		u.a.rlog.event(causeBadGrant, "authorization URL sent a bad grant; it is left out",
			slog.String("grant", g), slog.String("username", c.Username))
	}
	return d, err
}

// urlAnswer is the json-style answer as sent; grants are decoded one by one so that one bad
// allow grant costs only itself. Each is an object {"action", "filter", "deny"} or a string in
// ParseGrant's form.
type urlAnswer struct {
	Result   string            `json:"result"`
	Identity string            `json:"identity"`
	Grants   []json.RawMessage `json:"grants"`
	TTL      *float64          `json:"ttl"`
}

// answerGrant is the object form of a grant in an answer.
type answerGrant struct {
	Action string `json:"action"`
	Filter string `json:"filter"`
	Deny   bool   `json:"deny"`
}

// decodeAnswerGrant reads one grant of an answer. written is the grant as text for logs; deny
// says it was meant as a deny grant, even when err says it is malformed. A value that is neither a
// string nor such an object is an error of the whole answer (errAnswerShape).
func decodeAnswerGrant(raw json.RawMessage) (g Grant, written string, deny bool, err error) {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		g, err := ParseGrant(s)
		return g, s, looksLikeDeny(s), err
	}
	var o answerGrant
	if err := json.Unmarshal(raw, &o); err != nil {
		return Grant{}, "", false, fmt.Errorf("%w: grant %s: %v", errAnswerShape, raw, err)
	}
	written = o.Action + ":" + o.Filter
	if o.Deny {
		written = denyPrefix + written
	}
	a, err := ParseAction(o.Action)
	g = Grant{Action: a, Filter: o.Filter, Deny: o.Deny}
	if err == nil {
		err = g.Validate()
	}
	return g, written, o.Deny, err
}

var errAnswerShape = errors.New("authorization URL answer")

// decodeAnswer reads a json-style answer. bad lists grants that were left out. A missing ttl means
// defTTL; the ttl is capped at maxTTL, and zero or negative means "do not cache".
func decodeAnswer(body []byte, defTTL, maxTTL time.Duration) (d urlDecision, bad []string, err error) {
	var ans urlAnswer
	if err := json.Unmarshal(body, &ans); err != nil {
		return urlDecision{}, nil, fmt.Errorf("authorization URL answer: %w", err)
	}
	switch strings.ToLower(ans.Result) {
	case "allow":
		d.verdict = verdictAllow
	case "deny":
		d.verdict = verdictDeny
	case "ignore":
		d.verdict = verdictIgnore
	default:
		return urlDecision{}, nil, fmt.Errorf("authorization URL answer: result %q is not allow, deny or ignore", ans.Result)
	}
	d.ttl = defTTL
	if ans.TTL != nil {
		// Compared as float seconds before converting, so a huge value cannot overflow.
		switch s := *ans.TTL; {
		case s <= 0:
			d.ttl = 0
		case s >= maxTTL.Seconds():
			d.ttl = maxTTL
		default:
			d.ttl = time.Duration(s * float64(time.Second))
		}
	}
	d.ttl = min(d.ttl, maxTTL)
	if d.verdict != verdictAllow {
		return d, nil, nil
	}
	d.identity = ans.Identity
	for _, raw := range ans.Grants {
		g, written, deny, err := decodeAnswerGrant(raw)
		switch {
		case err == nil:
			d.grants = append(d.grants, g)
		case errors.Is(err, errAnswerShape):
			return urlDecision{}, nil, err
		case deny:
			// Leaving out a deny would allow what the URL meant to refuse: the whole answer is
			// unusable, and the client is refused as when the URL misbehaves.
			return urlDecision{}, nil, fmt.Errorf("authorization URL answer: bad deny grant %q: %v", written, err)
		default:
			bad = append(bad, written)
		}
	}
	return d, bad, nil
}
