package auth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Errors returned by Authenticate. A face maps them to its protocol: MQTT "bad user name or
// password" / "not authorized" / "server unavailable", HTTP 401 / 403 / 429 / 503.
var (
	// ErrBadCredentials: the credentials are wrong, unknown, expired or revoked. Wrong password
	// and unknown user are deliberately the same error.
	ErrBadCredentials = errors.New("auth: bad credentials")
	// ErrNotAuthorized: the client presented no credentials and anonymous access is off.
	ErrNotAuthorized = errors.New("auth: not authorized")
	// ErrBackoff: too many recent failures from the client's address; nothing was checked.
	ErrBackoff = errors.New("auth: too many failures, try later")
	// ErrUnavailable: the decision could not be made (the external URL is down, slow or
	// misbehaving, or the store failed); the client is refused.
	ErrUnavailable = errors.New("auth: authorization unavailable")
	// ErrNotFound is returned by the management methods for a missing user, group or token.
	ErrNotFound = errors.New("auth: not found")
)

// Credentials are what a face collected from a connecting client.
//
// MQTT has no field for a bearer token, so a client sends one as the password with the user name
// empty or "token" (the name "token" is therefore reserved). Authenticate applies that rule itself
// when Token is empty, so a face can copy the CONNECT fields as they are.
type Credentials struct {
	Face         string // "mqtt", "http", "mbus"
	ClientID     string // the client's id (fills %c)
	Username     string // user name, "" if none
	Password     []byte // password as sent (MQTT passwords are binary)
	Token        string // a bearer token (HTTP "Authorization: Bearer ...")
	CertIdentity string // identity of a verified client certificate, "" if none
	RemoteAddr   string // host:port, for back-off and the external URL
}

// token returns the bearer token the credentials carry, if any.
func (c *Credentials) token() string {
	if c.Token != "" {
		return c.Token
	}
	if len(c.Password) > 0 && (c.Username == "" || c.Username == tokenUsername) {
		return string(c.Password)
	}
	return ""
}

const tokenUsername = "token"

// Config configures an Authenticator. The zero value is usable: default argon2 parameters and
// back-off, no anonymous access, no URL.
type Config struct {
	// Argon2 sets the cost of new password hashes; zero fields take DefaultArgon2's.
	Argon2 Argon2Params
	// MaxConcurrentHashes bounds simultaneous argon2 computations (each holds Argon2.Memory);
	// further logins wait. Default GOMAXPROCS.
	MaxConcurrentHashes int
	// AllowAnonymous admits clients without credentials, with AnonymousGrants only (none
	// means they may connect but do nothing).
	AllowAnonymous bool
	// AnonymousGrants are the grants of anonymous clients (%c works; %u, empty, does not).
	AnonymousGrants []Grant
	// DefaultGrants are added to every authenticated (not anonymous) principal, e.g.
	// "push:inbox/%u" so everybody can use a mailbox of their own.
	DefaultGrants []Grant
	// SuperGroup, if set, names a group whose members may do everything on every topic, '$'
	// topics included (unlike a "#" grant, which follows MQTT's rule for '$').
	SuperGroup string
	// URL configures the external authorization URL; empty URL.URL disables it.
	URL URLConfig
	// Backoff limits guessing per address.
	Backoff BackoffConfig
	// VerifiedTTL is how long a successfully checked password is remembered, so a client sending
	// the same credentials again (HTTP Basic on every request) costs no new hash. Default one
	// minute; negative disables it.
	VerifiedTTL time.Duration
	// LogInterval is the least time between two log lines about the same kind of refusal.
	// Default one minute.
	LogInterval time.Duration
	// Clock returns the current time; nil means time.Now. Tests move it by hand.
	Clock func() time.Time
}

// Authenticator turns credentials into principals and manages users, groups and tokens. It is
// safe for concurrent use.
type Authenticator struct {
	cfg     Config
	st      Store
	log     *slog.Logger
	now     func() time.Time
	hasher  *hasher
	backoff *backoff
	url     *urlAuth // nil without a URL
	rlog    *rateLog
	stats   Stats
	// verified remembers recently checked passwords (as hashes of user, password and stored
	// hash) for VerifiedTTL.
	verified *verifiedCache

	// open is decided by New and becomes false when the first user or token is created. It never
	// becomes true again while running: deleting the last user must not silently open the
	// broker to everybody.
	open atomic.Bool
	// writeMu serialises read-modify-write of user records (a login upgrading a hash while an
	// administrator changes the same user's groups).
	writeMu sync.Mutex
}

// New returns an Authenticator over st. log may be nil.
func New(cfg Config, st Store, log *slog.Logger) (*Authenticator, error) {
	if st == nil {
		return nil, errors.New("auth: nil store")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg.Argon2 = cfg.Argon2.withDefaults()
	if err := cfg.Argon2.check(); err != nil {
		return nil, err
	}
	if cfg.MaxConcurrentHashes <= 0 {
		cfg.MaxConcurrentHashes = runtime.GOMAXPROCS(0)
	}
	if cfg.LogInterval <= 0 {
		cfg.LogInterval = time.Minute
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	for _, gs := range [][]Grant{cfg.AnonymousGrants, cfg.DefaultGrants, cfg.URL.BearerGrants} {
		if err := validateGrants(gs); err != nil {
			return nil, err
		}
	}
	cfg.Backoff = cfg.Backoff.withDefaults()
	a := &Authenticator{
		cfg:     cfg,
		st:      st,
		log:     log,
		now:     cfg.Clock,
		hasher:  newHasher(cfg.Argon2, cfg.MaxConcurrentHashes),
		backoff: newBackoff(cfg.Backoff),
	}
	a.verified = newVerifiedCache(cfg.VerifiedTTL, 10000)
	a.rlog = &rateLog{log: log, interval: cfg.LogInterval, now: cfg.Clock}
	if cfg.URL.URL != "" {
		u, err := newURLAuth(cfg.URL, a)
		if err != nil {
			return nil, err
		}
		a.url = u
	}
	open := a.url == nil && !cfg.AllowAnonymous
	if open {
		for _, ns := range []string{nsUsers, nsTokens} {
			found, err := a.nonEmpty(ns)
			if err != nil {
				return nil, fmt.Errorf("auth: reading %s: %w", ns, err)
			}
			open = open && !found
		}
	}
	a.open.Store(open)
	return a, nil
}

func (a *Authenticator) nonEmpty(ns string) (bool, error) {
	found := false
	err := a.st.Scan(ns, func(string, []byte) error { found = true; return errStopScan })
	if errors.Is(err, errStopScan) {
		err = nil
	}
	return found, err
}

// Open reports that nothing is configured: Authenticate admits every client, with or without
// credentials, as an unrestricted principal. The broker should warn about it.
func (a *Authenticator) Open() bool { return a.open.Load() }

// Stats returns the live counters.
func (a *Authenticator) Stats() *Stats { return &a.stats }

// Authenticate identifies the client and builds its principal, or says why not (one of the Err
// values, possibly wrapped). It may wait for argon2 (bounded by MaxConcurrentHashes) and for the
// external URL (bounded by its timeout); ctx ends either wait. It keeps nothing of c after it
// returns, so a face may reuse the password's buffer.
//
// Token, when set, is used instead of user name and password.
func (a *Authenticator) Authenticate(ctx context.Context, c Credentials) (*Principal, error) {
	if a.Open() {
		// Nothing to check a user name against, so it is not an identity: stamping it on messages
		// would let anybody sign as anybody. Only a verified certificate names the client.
		p := UnrestrictedClient(SourceOpen, c.CertIdentity, c.ClientID)
		a.stats.Accepted.Add(1)
		return p, nil
	}
	// The TLS handshake already proved a certificate, so it needs no back-off: an address shared
	// with a guesser (NAT) must not lock certificate clients out.
	if c.CertIdentity != "" {
		p, err := a.userPrincipal(c.CertIdentity, c.ClientID, SourceCertificate)
		if err != nil {
			return nil, a.refuse(causeUnavailable, fmt.Errorf("%w: %v", ErrUnavailable, err), c)
		}
		a.stats.Accepted.Add(1)
		return p, nil
	}
	key := addressKey(c.RemoteAddr)
	if c.RemoteAddr == "" {
		key = ""
	}
	now := a.now()
	if blocked, until := a.backoff.blocked(key, now); blocked {
		return nil, a.refuse(causeBackoff, fmt.Errorf("%w (for %s)", ErrBackoff, until.Sub(now).Round(time.Second)), c)
	}
	p, cause, err := a.authenticate(ctx, c)
	if err != nil {
		if errors.Is(err, ErrBadCredentials) {
			a.backoff.fail(key, now)
		}
		return nil, a.refuse(cause, err, c)
	}
	a.backoff.success(key)
	a.stats.Accepted.Add(1)
	return p, nil
}

// refuse counts and (rate-limited) logs a refusal, and returns err.
func (a *Authenticator) refuse(c cause, err error, cr Credentials) error {
	if n := a.stats.counter(c); n != nil {
		n.Add(1)
	}
	a.rlog.event(c, "authentication refused",
		slog.String("face", cr.Face), slog.String("remote", cr.RemoteAddr),
		slog.String("username", cr.Username), slog.String("client_id", cr.ClientID),
		slog.String("error", err.Error()))
	return err
}

// authenticate tries the sources after the certificate, in order.
func (a *Authenticator) authenticate(ctx context.Context, c Credentials) (*Principal, cause, error) {
	tok := c.token()
	if isTernToken(tok) {
		return a.tokenPrincipal(tok, c.ClientID)
	}
	if a.url != nil {
		p, cause, err, decided := a.url.authenticate(ctx, c, tok)
		if decided {
			return p, cause, err
		}
	}
	switch {
	case tok != "":
		// A token tern did not issue and no URL vouched for.
		return nil, causeBadToken, fmt.Errorf("%w: unknown token", ErrBadCredentials)
	case c.Username != "":
		return a.passwordPrincipal(ctx, c)
	case a.cfg.AllowAnonymous:
		return buildPrincipal("", c.ClientID, SourceAnonymous, a.cfg.AnonymousGrants), 0, nil
	default:
		return nil, causeAnonymous, ErrNotAuthorized
	}
}

// passwordPrincipal checks a stored user's password.
func (a *Authenticator) passwordPrincipal(ctx context.Context, c Credentials) (*Principal, cause, error) {
	rec, ok, err := a.getUser(c.Username)
	if err != nil {
		return nil, causeUnavailable, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if !ok || rec.Hash == "" {
		a.hasher.burn(ctx, c.Password)
		return nil, causeUnknownUser, ErrBadCredentials
	}
	// A password checked moments ago against the same stored hash is not hashed again: HTTP
	// clients send Basic credentials with every request, and argon2 is deliberately slow. The key
	// covers the stored hash, so a changed password misses.
	key := credentialKey("pw", c.Username, string(c.Password), rec.Hash)
	if a.verified.recent(key, a.now()) {
		p, err := a.userPrincipal(c.Username, c.ClientID, SourcePassword)
		if err != nil {
			return nil, causeUnavailable, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		return p, 0, nil
	}
	match, rehash, err := a.hasher.verify(ctx, rec.Hash, c.Password)
	if err != nil && ctx.Err() != nil {
		return nil, causeUnavailable, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if err != nil {
		// A stored hash that cannot be read refuses the login; it is not the client's fault,
		// but nothing else is safe.
		a.log.Error("auth: stored password hash is unreadable", "user", c.Username, "error", err)
		return nil, causeWrongPassword, ErrBadCredentials
	}
	if !match {
		return nil, causeWrongPassword, ErrBadCredentials
	}
	if rehash {
		a.upgradeHash(ctx, c.Username, rec.Hash, c.Password)
	} else {
		a.verified.add(key, a.now())
	}
	p, err := a.userPrincipal(c.Username, c.ClientID, SourcePassword)
	if err != nil {
		return nil, causeUnavailable, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return p, 0, nil
}

// upgradeHash replaces a legacy or outdated hash after a successful login. Failure only costs the
// upgrade: the login itself already succeeded.
func (a *Authenticator) upgradeHash(ctx context.Context, name, old string, pw []byte) {
	h, err := a.hasher.hash(ctx, pw)
	if err != nil {
		a.log.Warn("auth: re-hashing password failed", "user", name, "error", err)
		return
	}
	a.writeMu.Lock()
	defer a.writeMu.Unlock()
	rec, ok, err := a.getUser(name)
	if err != nil || !ok || rec.Hash != old {
		return // changed meanwhile: the newer record wins
	}
	rec.Hash = h
	if err := a.putUser(rec); err != nil {
		a.log.Warn("auth: storing re-hashed password failed", "user", name, "error", err)
		return
	}
	a.stats.LegacyUpgraded.Add(1)
}

// userPrincipal builds the principal of a known identity from its user record (if any), its
// groups and the default grants. A certificate identity needs no user record (the CA vouches
// for it); then it has the default grants only.
func (a *Authenticator) userPrincipal(name, clientID string, src Source) (*Principal, error) {
	grants, groups, super, err := a.effectiveGrants(name)
	if err != nil {
		return nil, err
	}
	if super {
		return &Principal{Identity: name, Groups: groups, ClientID: clientID, Source: src, unrestricted: true}, nil
	}
	p := buildPrincipal(name, clientID, src, grants)
	p.Groups = groups
	return p, nil
}

// effectiveGrants collects a user's own, group and default grants.
func (a *Authenticator) effectiveGrants(name string) (grants []Grant, groups []string, super bool, err error) {
	rec, ok, err := a.getUser(name)
	if err != nil {
		return nil, nil, false, err
	}
	grants = slices.Clone(a.cfg.DefaultGrants)
	if !ok {
		return grants, nil, false, nil
	}
	grants = append(grants, rec.Grants...)
	for _, g := range rec.Groups {
		if a.cfg.SuperGroup != "" && g == a.cfg.SuperGroup {
			super = true
		}
		gr, ok, err := a.getGroup(g)
		if err != nil {
			return nil, nil, false, err
		}
		if ok {
			grants = append(grants, gr.Grants...)
		}
	}
	return grants, slices.Clone(rec.Groups), super, nil
}

// credentialKey hashes the parts of credentials a decision depends on, for cache keys: the
// cache then holds no password or token in the clear. Each part is length-prefixed so that
// moving bytes between parts changes the key.
func credentialKey(parts ...string) string {
	h := sha256.New()
	var n [8]byte
	for _, p := range parts {
		l := len(p)
		for i := range n {
			n[i] = byte(l >> (8 * i))
		}
		h.Write(n[:])
		h.Write([]byte(p))
	}
	return hex.EncodeToString(h.Sum(nil))
}
