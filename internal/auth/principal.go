package auth

import (
	"slices"
	"strings"
	"time"

	"github.com/ternmq/tern/internal/topic"
)

// Source says how a principal was authenticated.
type Source string

// The sources of a Principal.
const (
	SourceOpen        Source = "open"        // nothing is configured: every client may do everything
	SourceAnonymous   Source = "anonymous"   // no credentials, allowed by Config.AllowAnonymous
	SourceCertificate Source = "certificate" // a verified client certificate
	SourcePassword    Source = "password"    // a stored user and password
	SourceToken       Source = "token"       // a token issued by tern
	SourceURL         Source = "url"         // the external authorization URL
	SourceInternal    Source = "internal"    // built by NewPrincipal or Unrestricted, not by a client
)

// Principal is an authenticated client and what it may do. It is immutable once built, so the core
// can share it between goroutines and ask it on every message without locking.
type Principal struct {
	// Identity is who the client is: a user name, a certificate's identity, or what the external
	// URL answered. Empty for anonymous clients.
	Identity string
	// Groups are the identity's groups (informational: their grants are already compiled in).
	Groups []string
	// ClientID is the client id the principal was built for (it fills %c); empty in the shared
	// principal of an unrestricted client without an identity (UnrestrictedClient).
	ClientID string
	// Source says how the client was authenticated.
	Source Source
	// Expires is when the credentials stop being valid (a token's expiry); zero if they do not.
	// The core may disconnect the client then; Allow does not look at it.
	Expires time.Time

	unrestricted bool
	// acl is what the grants compile to; nil for an unrestricted principal, which is what every
	// connection in open mode has, so that it costs a connection a hundred bytes, not several
	// hundred.
	*acl
}

// acl is a principal's compiled grants.
type acl struct {
	grants []Grant
	// matchers holds the compiled allow and deny grants of the actions that have any; rule[a]
	// and deny[a] are an action's places in it plus one (0: none, so nothing is allowed, or
	// nothing denied). A principal has grants for two or three of the nine actions, and a
	// matcher for each action and kind took 432 bytes of every authenticated connection.
	matchers   []matcher
	rule, deny [numActions]uint8
	// denyAll marks an action denied everywhere (a deny whose first level had no usable
	// placeholder value, see expandDeny).
	denyAll [numActions]bool
	// listed: the grants are few and walked instead (listed.go); there are no matchers.
	listed bool
}

// noMatcher allows nothing and denies nothing: the matcher of an action without grants.
var noMatcher matcher

// rules are the allow grants of action a.
func (c *acl) rules(a Action) *matcher { return c.at(c.rule[a]) }

// denies are the deny grants of action a, asked before rules.
func (c *acl) denies(a Action) *matcher { return c.at(c.deny[a]) }

func (c *acl) at(place uint8) *matcher {
	if place == 0 {
		return &noMatcher
	}
	return &c.matchers[place-1]
}

// add compiles filters into a matcher of c and returns its place (0 for no filters).
func (c *acl) add(filters []string) uint8 {
	if len(filters) == 0 {
		return 0
	}
	c.matchers = append(c.matchers, compileFilters(filters))
	return uint8(len(c.matchers))
}

// NewPrincipal builds a principal from explicit grants, for the broker's own clients and tests.
// %u and %c are replaced by identity and clientID.
func NewPrincipal(identity, clientID string, grants []Grant) (*Principal, error) {
	if err := validateGrants(grants); err != nil {
		return nil, err
	}
	return buildPrincipal(identity, clientID, SourceInternal, grants), nil
}

// Unrestricted returns a principal allowed every action on every topic, '$' topics included.
func Unrestricted(identity string) *Principal {
	return &Principal{Identity: identity, Source: SourceInternal, unrestricted: true}
}

// The unrestricted principals of clients without an identity, one of each source, shared by all
// of them: with no authentication configured every connection has one, and a principal of its
// own cost each idle connection 112 bytes. A principal is never changed once built, and an
// unrestricted one's client id fills no placeholder (it has no grants), so it is left empty.
var (
	anonOpen     = &Principal{Source: SourceOpen, unrestricted: true}
	anonInternal = &Principal{Source: SourceInternal, unrestricted: true}
)

// UnrestrictedClient is the principal of a client that nothing restricts, from src (SourceOpen
// or SourceInternal), known by its certificate's identity alone (empty: none). Without an
// identity it is a shared value whose ClientID is empty.
func UnrestrictedClient(src Source, certIdentity, clientID string) *Principal {
	if certIdentity == "" {
		switch src {
		case SourceOpen:
			return anonOpen
		case SourceInternal:
			return anonInternal
		}
	}
	return &Principal{Identity: certIdentity, ClientID: clientID, Source: src, unrestricted: true}
}

// buildPrincipal expands and compiles validated grants.
func buildPrincipal(identity, clientID string, src Source, grants []Grant) *Principal {
	return compilePrincipal(identity, clientID, placeholderOK(identity), placeholderOK(clientID), src, grants)
}

// compilePrincipal is buildPrincipal with the placeholder checks decided by the caller.
func compilePrincipal(identity, clientID string, uOK, cOK bool, src Source, grants []Grant) *Principal {
	p := &Principal{Identity: identity, ClientID: clientID, Source: src, acl: &acl{}}
	for _, g := range grants {
		if g.Deny {
			f, all := expandDeny(g.Filter, identity, clientID, uOK, cOK)
			if all {
				p.denyAll[g.Action] = true
				f = "#"
			}
			p.grants = append(p.grants, Grant{Action: g.Action, Filter: f, Deny: true})
			continue
		}
		if f, ok := expand(g.Filter, identity, clientID, uOK, cOK); ok {
			p.grants = append(p.grants, Grant{Action: g.Action, Filter: f})
		}
	}
	if len(p.grants) <= maxListed {
		p.listed = true
		return p
	}
	var allow, deny [numActions][]string
	for _, g := range p.grants {
		switch {
		case !g.Deny:
			allow[g.Action] = append(allow[g.Action], g.Filter)
		case !p.denyAll[g.Action]: // an action denied everywhere needs no deny matcher
			deny[g.Action] = append(deny[g.Action], g.Filter)
		}
	}
	n := 0
	for a := range numActions {
		n += min(len(allow[a]), 1) + min(len(deny[a]), 1)
	}
	p.matchers = make([]matcher, 0, n)
	for a := range numActions {
		p.rule[a] = p.add(allow[a])
		p.deny[a] = p.add(deny[a])
	}
	return p
}

// Unrestricted reports whether the principal may do everything (open mode, a superuser).
func (p *Principal) Unrestricted() bool { return p != nil && p.unrestricted }

// Grants returns the principal's grants with %u and %c replaced (nil for an unrestricted one); a
// widened deny grant is listed as widened.
func (p *Principal) Grants() []Grant {
	if p == nil || p.acl == nil {
		return nil
	}
	return slices.Clone(p.grants)
}

// Allow reports whether the principal may do a on the topic name (validated by the caller: not
// empty, no wildcards): no deny grant of a matches it and some allow grant does. It costs one map
// lookup per topic level, however many grants there are, and allocates nothing. A nil principal
// is allowed nothing.
//
// A grant whose filter begins with '+' or '#' does not match a topic beginning with '$' (the MQTT
// rule for subscriptions, applied to every action and to deny grants alike), so "#" does not open
// $SYS: grant "$SYS/#" for that.
func (p *Principal) Allow(a Action, topic string) bool {
	if p == nil {
		return false
	}
	if p.unrestricted {
		return true
	}
	if p.acl == nil || a >= numActions || topic == "" || p.denyAll[a] {
		return false
	}
	if p.listed {
		return p.allowListed(a, topic)
	}
	return !p.denies(a).match(topic) && p.rules(a).match(topic)
}

// AllowFilter reports whether a filter may be used for a (subscribe, serve): "a/+" is allowed by
// a grant "a/+" or "a/#", not by "a/b". It is refused when the deny grants of a cover the filter,
// that is when every topic it can match is denied ("a/b" or "a/+" under a deny "a/#"); a filter
// that only overlaps a deny ("#" with a deny on "a/b") is judged by the allow grants alone, which
// must cover every topic it can match. A shared subscription "$share/{group}/{filter}" is judged
// by its filter. The cost is O(filter depth + depth of the grants below a '#'); it allocates
// nothing unless the grants were too irregular to determinize.
func (p *Principal) AllowFilter(a Action, filter string) bool {
	if p == nil {
		return false
	}
	if p.unrestricted {
		return true
	}
	if p.acl == nil || a >= numActions || filter == "" || p.denyAll[a] {
		return false
	}
	if strings.HasPrefix(filter, "$share/") {
		f, err := topic.ParseFilter(filter)
		if err != nil {
			return false
		}
		filter = f.Path
	}
	if p.listed {
		return !p.coversListed(a, filter, true) && p.coversListed(a, filter, false)
	}
	return !p.denies(a).covers(filter) && p.rules(a).covers(filter)
}
