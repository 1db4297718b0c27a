package broker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/message"
	"github.com/ternmq/tern/internal/topic"
)

// Authenticator turns what a client presented into a principal (auth.Authenticator does).
type Authenticator interface {
	Authenticate(ctx context.Context, c auth.Credentials) (*auth.Principal, error)
}

// AbuseLimits bound what one identity, and everybody together, may take from the broker. Zero
// means no limit. Clients without an identity (anonymous) are limited one session at a time.
type AbuseLimits struct {
	// MaxConnections caps connected clients in total; MaxConnectionsPerIdentity caps the
	// connections of one authenticated identity.
	MaxConnections            int
	MaxConnectionsPerIdentity int
	// PublishRate is messages per second per identity, with bursts of PublishBurst (default:
	// one second's worth). PublishBytesRate is payload bytes per second, bursts of one second.
	PublishRate      float64
	PublishBurst     int
	PublishBytesRate float64
	// MaxThrottle is how far ahead of its rate a publisher may get: within it a publish is
	// accepted and the face pauses the publisher for the excess (TCP then slows the client
	// down, nothing is lost); beyond it the publish is refused. Default one second.
	MaxThrottle time.Duration
	// MaxPayload caps a message's payload in bytes, for every face.
	MaxPayload int
}

// The refusals of access control and abuse limits. Each wraps the error faces already map
// (ErrNotAuthorized, ErrQuotaExceeded), so a face that knows only those still answers correctly.
var (
	// ErrClientIDInUse: a session with this client id belongs to another identity.
	ErrClientIDInUse = errors.New("client identifier belongs to another identity")
	// ErrClientIDReserved: client ids starting with '$' are the broker's own.
	ErrClientIDReserved = errors.New("client identifiers starting with $ are reserved")
	// ErrCredentialsExpired ends a connection whose token (or other credentials) expired.
	ErrCredentialsExpired = fmt.Errorf("%w: credentials expired", ErrNotAuthorized)
	// ErrWillNotAuthorized refuses a connect whose will the client may not publish (or retain).
	ErrWillNotAuthorized = fmt.Errorf("%w: will topic", ErrNotAuthorized)
	// ErrConnectionLimit refuses a connect beyond MaxConnections or MaxConnectionsPerIdentity.
	ErrConnectionLimit = fmt.Errorf("%w: too many connections", ErrQuotaExceeded)
	// ErrRateLimited refuses a publish far beyond the identity's rate.
	ErrRateLimited = fmt.Errorf("%w: publish rate limit", ErrQuotaExceeded)
	// ErrPayloadTooLarge refuses a publish above MaxPayload.
	ErrPayloadTooLarge = fmt.Errorf("%w: payload too large", ErrQuotaExceeded)
)

// authenticate asks the configured authenticator; without one every client is unrestricted and
// known by its certificate alone (a user name nobody checked is no identity).
func (b *Broker) authenticate(ctx context.Context, c auth.Credentials) (*auth.Principal, error) {
	if b.cfg.Auth == nil {
		return auth.UnrestrictedClient(auth.SourceInternal, c.CertIdentity, c.ClientID), nil
	}
	return b.cfg.Auth.Authenticate(ctx, c)
}

// allowWill reports whether p may publish its will (and retain it, if flagged).
func allowWill(p *auth.Principal, w *Will) bool {
	if w == nil {
		return true
	}
	if topic.ValidName(w.Msg.Topic) != nil {
		return true // the publish refuses it later as an invalid topic
	}
	return p.Allow(auth.Publish, w.Msg.Topic) && (!w.Msg.Retain || p.Allow(auth.Retain, w.Msg.Topic))
}

// identityUse is what one authenticated identity holds: its connections and its rate budget,
// shared by all its connections so that opening more connections buys no more throughput.
type identityUse struct {
	conns int
	rate  *rateLimiter
}

// claimLocked decides whether a client of identity may have the session s (nil: none yet) and
// count as one more connection. The caller holds b.mu.
//
// A session belongs to the identity that made it: another may neither take over its connection
// nor inherit its subscriptions and queue. Sessions made without an identity (open mode,
// anonymous clients) can be claimed, so that turning authentication on keeps them usable.
func (b *Broker) claimLocked(s *Session, identity, clientID string) error {
	replacing := false
	if s != nil {
		s.mu.Lock()
		owner := s.identity
		replacing = s.sink != nil
		s.mu.Unlock()
		if owner != "" && owner != identity {
			b.stats.RefusedClientID.Add(1)
			b.warn.log("client id in use", "connect refused: client id belongs to another identity",
				"client", clientID, "identity", identity)
			return ErrClientIDInUse
		}
	}
	if strings.HasPrefix(clientID, "$") {
		return nil // the broker's own sessions (webhooks, relays) are not clients
	}
	return b.admitLocked(identity, replacing)
}

// credentialsDue ends a connection whose credentials (a token) expired while it was connected.
func (b *Broker) credentialsDue(s *Session, gen uint32) {
	s.mu.Lock()
	sink := s.sink
	if s.gen != gen || sink == nil {
		s.mu.Unlock()
		return
	}
	if s.rare != nil {
		s.rare.credTimer = nil
	}
	s.mu.Unlock()
	b.log.Info("disconnecting client: credentials expired", "client", s.id, "identity", s.identity)
	sink.Close(ErrCredentialsExpired)
}

// admitLocked counts a new connection of identity against the limits, unless it replaces a
// connection of the same session (a takeover changes no total). The caller holds b.mu.
func (b *Broker) admitLocked(identity string, replacing bool) error {
	l := &b.cfg.Limits
	if replacing {
		return nil
	}
	if l.MaxConnections > 0 && b.stats.Connected.Load() >= int64(l.MaxConnections) {
		b.stats.RefusedConnections.Add(1)
		b.warn.log("max connections", "connection refused: limits.max_connections reached",
			"max", l.MaxConnections)
		return ErrConnectionLimit
	}
	if identity != "" && l.MaxConnectionsPerIdentity > 0 {
		if u := b.identities[identity]; u != nil && u.conns >= l.MaxConnectionsPerIdentity {
			b.stats.RefusedConnections.Add(1)
			b.warn.log("max connections per identity", "connection refused: limits.max_connections_per_identity reached",
				"identity", identity, "max", l.MaxConnectionsPerIdentity)
			return ErrConnectionLimit
		}
	}
	return nil
}

// attachLocked records a connection of identity and returns its rate limiter (nil without rate
// limits). The caller holds b.mu; releaseLocked undoes it.
func (b *Broker) attachLocked(identity string) *rateLimiter {
	if identity == "" {
		return b.newRateLimiter()
	}
	u := b.identities[identity]
	if u == nil {
		u = &identityUse{rate: b.newRateLimiter()}
		b.identities[identity] = u
	}
	u.conns++
	return u.rate
}

func (b *Broker) releaseLocked(identity string) {
	if identity == "" {
		return
	}
	if u := b.identities[identity]; u != nil {
		if u.conns--; u.conns <= 0 {
			delete(b.identities, identity)
		}
	}
}

// Authenticate asks the configured authenticator, for faces that authenticate each request
// (HTTP) rather than a connection.
func (b *Broker) Authenticate(ctx context.Context, c auth.Credentials) (*auth.Principal, error) {
	return b.authenticate(ctx, c)
}

// PublishAs routes a message from a principal that has no session (one HTTP request), with the
// same grants, payload limit and stamping as a client's publish. p must come from Authenticate.
// action is auth.Publish, or auth.Call for a request that expects a reply.
func (b *Broker) PublishAs(p *auth.Principal, action auth.Action, m *message.Message) (PublishResult, error) {
	if _, err := b.checkPublish(p, action, p.ClientID, nil, m); err != nil {
		return PublishResult{}, err
	}
	return b.publishChecked(nil, p, m, IsCall(m) && replyGranted(p, p.ClientID, m.Props.ResponseTopic), nil)
}

// ResponsePrefix is the topic prefix reserved for a client's responses: "$response/<client id>".
// Every client may subscribe below its own, whatever its grants, so request/reply works for
// clients that may only call; client ids belong to identities, so nobody else can.
func ResponsePrefix(clientID string) string {
	return "$response/" + strings.ReplaceAll(strings.ReplaceAll(strings.ReplaceAll(clientID, "/", "_"), "+", "_"), "#", "_")
}

// ownResponseFilter reports whether filter lies below the client's response prefix.
func ownResponseFilter(clientID, filter string) bool {
	p := ResponsePrefix(clientID)
	return filter == p || strings.HasPrefix(filter, p+"/")
}

// checkPublish applies the publisher's grants and limits to m, and stamps the sender. It returns
// how long the face should pause the publisher (rate limits), or why the publish is refused.
func (b *Broker) checkPublish(p *auth.Principal, action auth.Action, clientID string, rate *rateLimiter, m *message.Message) (time.Duration, error) {
	if err := topic.ValidName(m.Topic); err != nil {
		return 0, ErrTopicInvalid
	}
	resource := m.Topic
	if r := rpcResource(m.Topic); r != "" && action == auth.Publish {
		// Publishing to a procedure is calling it.
		action, resource = auth.Call, r
	}
	if !p.Allow(action, resource) || (m.Retain && !p.Allow(auth.Retain, m.Topic)) {
		b.stats.NotAuthorized.Add(1)
		if b.warn.due("publish not authorized") {
			b.log.Warn("publish not authorized", "identity", p.Identity, "client", clientID,
				"topic", m.Topic, "retain", m.Retain)
		}
		return 0, ErrNotAuthorized
	}
	if max := b.cfg.Limits.MaxPayload; max > 0 && len(m.Payload) > max {
		b.stats.RefusedPayload.Add(1)
		if b.warn.due("max payload") {
			b.log.Warn("publish refused: limits.max_payload exceeded", "identity", p.Identity,
				"client", clientID, "size", len(m.Payload), "max", max)
		}
		return 0, ErrPayloadTooLarge
	}
	stampSender(m, p.Identity)
	if rate == nil {
		b.stats.Received.Add(1)
		return 0, nil
	}
	wait, ok := rate.take(b.now(), len(m.Payload))
	if !ok {
		b.stats.RefusedRate.Add(1)
		if b.warn.due("publish rate") {
			b.log.Warn("publish refused: rate limit", "identity", p.Identity, "client", clientID)
		}
		return 0, ErrRateLimited
	}
	if wait > 0 {
		b.stats.Throttled.Add(1)
	}
	b.stats.Received.Add(1)
	return wait, nil
}

// stampSender sets the sender to the publisher's authenticated identity and removes any user
// property claiming to be the sender, so receivers can trust message.SenderProperty. It edits
// the user properties in place (they are the face's scratch, borrowed for the call).
// stampExpiry turns a message's expiry interval into its expiry instant, counted from t.
func stampExpiry(m *message.Message, t int64) {
	if m.ExpiryInterval > 0 {
		m.Expires = t + int64(m.ExpiryInterval)*int64(time.Second)
		m.ExpiryInterval = 0
	}
}

func stampSender(m *message.Message, identity string) {
	m.Sender = identity
	users := m.Props.User
	for i, u := range users {
		if u.Key != message.SenderProperty {
			continue
		}
		kept := users[:i]
		for _, v := range users[i+1:] {
			if v.Key != message.SenderProperty {
				kept = append(kept, v)
			}
		}
		m.Props.User = kept
		return
	}
}

// mayReceive reports whether p, connected with clientID, may subscribe to filter: serving a
// procedure needs the serve grant on it, anything else the subscribe grant (deny grants
// included); its own response prefix and mailbox topic are always allowed. A peer router
// receives what it routes: its route grant decides, and it serves nothing.
func mayReceive(p *auth.Principal, clientID, filter string, peer bool) bool {
	if peer {
		return ownResponseFilter(clientID, filter) || rpcResource(filter) == "" && p.AllowFilter(auth.Route, filter)
	}
	if r := rpcResource(filter); r != "" {
		return p.AllowFilter(auth.Serve, r)
	}
	return p.AllowFilter(auth.Subscribe, filter) || ownResponseFilter(clientID, filter) ||
		(p.Identity != "" && filter == "$mailbox/"+p.Identity)
}

// dropUnauthorizedLocked removes the subscriptions a resuming client may no longer have (its
// grants changed while it was away); a peer router's are checked against its route grant. The
// caller holds b.mu and s.mu.
func (b *Broker) dropUnauthorizedLocked(s *Session, p *auth.Principal, peer bool) {
	if p.Unrestricted() {
		return
	}
	var gone []*subscription
	for sub := range s.subs.all() {
		if !mayReceive(p, s.id, sub.Filter, peer) {
			gone = append(gone, sub)
		}
	}
	var dropped []string
	for _, sub := range gone {
		f := sub.Filter
		s.subs.remove(f)
		b.indexRemove(sub.filter(), s)
		b.stats.Subscriptions.Add(-1)
		b.stats.NotAuthorized.Add(1)
		b.log.Info("subscription dropped at resume: no longer granted", "client", s.id, "filter", f)
		dropped = append(dropped, f)
	}
	s.storeSubsLocked(nil, dropped)
}

// rateLimiter is a generic cell rate limiter (GCRA) on two budgets, messages and bytes: each
// publish moves a theoretical arrival time forward by its cost; the publisher is ahead of its
// rate by how far that time runs past now plus the burst allowance.
type rateLimiter struct {
	mu           sync.Mutex
	msgTAT       int64   // theoretical arrival time, Unix ns
	msgInterval  float64 // ns per message; 0: no message rate
	msgBurst     int64   // ns of burst allowance
	byteTAT      int64
	byteInterval float64 // ns per byte; 0: no byte rate
	byteBurst    int64
	maxAhead     int64
}

// newRateLimiter returns a limiter for the configured rates, or nil when there are none.
func (b *Broker) newRateLimiter() *rateLimiter {
	l := &b.cfg.Limits
	if l.PublishRate <= 0 && l.PublishBytesRate <= 0 {
		return nil
	}
	r := &rateLimiter{maxAhead: int64(l.MaxThrottle)}
	if r.maxAhead <= 0 {
		r.maxAhead = int64(time.Second)
	}
	if l.PublishRate > 0 {
		r.msgInterval = float64(time.Second) / l.PublishRate
		burst := l.PublishBurst
		if burst <= 0 {
			burst = max(1, int(l.PublishRate))
		}
		r.msgBurst = int64(float64(burst) * r.msgInterval)
	}
	if l.PublishBytesRate > 0 {
		r.byteInterval = float64(time.Second) / l.PublishBytesRate
		r.byteBurst = int64(time.Second)
	}
	return r
}

// take charges one message of n payload bytes at now. It returns how long the publisher should
// pause so that it keeps to its rate (at most maxAhead), or ok false (nothing charged) when it was
// already beyond its burst and this message would take it more than maxAhead ahead. A publisher
// within its budget is never refused, so one message larger than a second's bytes still passes,
// followed by a pause.
func (r *rateLimiter) take(now int64, n int) (wait time.Duration, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var msgTAT, byteTAT int64
	ahead, before := int64(0), int64(0)
	if r.msgInterval > 0 {
		before = r.msgTAT - now - r.msgBurst
		msgTAT = max(r.msgTAT, now) + int64(r.msgInterval)
		ahead = msgTAT - now - r.msgBurst
	}
	if r.byteInterval > 0 {
		before = max(before, r.byteTAT-now-r.byteBurst)
		byteTAT = max(r.byteTAT, now) + int64(r.byteInterval*float64(n))
		ahead = max(ahead, byteTAT-now-r.byteBurst)
	}
	if before > 0 && ahead > r.maxAhead {
		return 0, false
	}
	if r.msgInterval > 0 {
		r.msgTAT = msgTAT
	}
	if r.byteInterval > 0 {
		r.byteTAT = byteTAT
	}
	return time.Duration(min(max(ahead, 0), r.maxAhead)), true
}
