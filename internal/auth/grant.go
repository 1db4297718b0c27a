package auth

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/ternmq/tern/internal/topic"
)

// Action is something a client may be allowed to do on a topic.
type Action uint8

// The actions a grant can allow. The core asks for each one separately: a retained publish needs
// both Publish and Retain, so granting Retain alone allows nothing.
const (
	Publish   Action = iota // send a message to a topic
	Subscribe               // subscribe with a filter (asked with AllowFilter)
	Retain                  // have a published message kept as the topic's retained message
	Call                    // send a request expecting a reply (request/reply over topics)
	Serve                   // answer requests sent to a topic
	Push                    // put a message into a mailbox (a per-identity queue)
	Query                   // read stored messages or state under a topic
	Route                   // forward messages between brokers for a topic
	Admin                   // administer the broker; conventionally granted on "#"
	numActions
)

var actionNames = [numActions]string{
	Publish: "publish", Subscribe: "subscribe", Retain: "retain", Call: "call", Serve: "serve",
	Push: "push", Query: "query", Route: "route", Admin: "admin",
}

// Actions lists every action, in order, for callers that iterate (help texts, admin listings).
func Actions() []Action {
	out := make([]Action, numActions)
	for i := range out {
		out[i] = Action(i)
	}
	return out
}

// String returns the action's lower-case name, as grants spell it.
func (a Action) String() string {
	if a < numActions {
		return actionNames[a]
	}
	return "action(" + strconv.Itoa(int(a)) + ")"
}

// ParseAction returns the action named s (case-insensitive).
func ParseAction(s string) (Action, error) {
	for i, n := range actionNames {
		if strings.EqualFold(s, n) {
			return Action(i), nil
		}
	}
	return 0, fmt.Errorf("auth: unknown action %q", s)
}

// MarshalText encodes the action by name, so grants read well in JSON and TOML.
func (a Action) MarshalText() ([]byte, error) {
	if a >= numActions {
		return nil, fmt.Errorf("auth: unknown action %d", a)
	}
	return []byte(actionNames[a]), nil
}

// UnmarshalText decodes an action name.
func (a *Action) UnmarshalText(b []byte) error {
	v, err := ParseAction(string(b))
	if err != nil {
		return err
	}
	*a = v
	return nil
}

// Grant allows one action on every topic an MQTT topic filter matches, or, with Deny, refuses it
// there whatever else allows it. The filter may contain the placeholders %u (the principal's
// identity) and %c (its client id), replaced when a Principal is built; a placeholder whose value
// is empty or contains '/', '+' or '#' would widen or blur the grant, so such an allow grant is
// left out of that principal instead, and such a deny grant is widened (see compilePrincipal).
type Grant struct {
	Action Action `json:"action"`         // what is allowed or denied
	Filter string `json:"filter"`         // where: an MQTT topic filter, possibly with %u and %c
	Deny   bool   `json:"deny,omitempty"` // refuse instead of allow; checked before every allow
}

// String returns the grant as "action:filter" or "deny:action:filter", the forms ParseGrant reads.
func (g Grant) String() string {
	s := g.Action.String() + ":" + g.Filter
	if g.Deny {
		return denyPrefix + s
	}
	return s
}

// denyPrefix starts a deny grant's written form. "deny" is no action, so the two forms cannot be
// confused.
const denyPrefix = "deny:"

// ErrBadGrant is wrapped by every error about a malformed grant.
var ErrBadGrant = errors.New("auth: bad grant")

// ParseGrant reads "action:filter", e.g. "publish:sensors/%u/#", or "deny:action:filter", e.g.
// "deny:subscribe:test/nosubscribe". The action ends at the first ':' after it, so the filter may
// itself contain ':'. Every place that accepts grants as text (configuration, the admin API, the
// CLI, the external URL's answer) reads them here.
func ParseGrant(s string) (Grant, error) {
	name, filter, ok := strings.Cut(s, ":")
	if !ok {
		return Grant{}, fmt.Errorf("%w: %q is not action:filter or deny:action:filter", ErrBadGrant, s)
	}
	deny := strings.EqualFold(strings.TrimSpace(name), "deny")
	if deny {
		if name, filter, ok = strings.Cut(filter, ":"); !ok {
			return Grant{}, fmt.Errorf("%w: %q is not deny:action:filter", ErrBadGrant, s)
		}
	}
	a, err := ParseAction(strings.TrimSpace(name))
	if err != nil {
		return Grant{}, fmt.Errorf("%w: %v", ErrBadGrant, err)
	}
	g := Grant{Action: a, Filter: filter, Deny: deny}
	return g, g.Validate()
}

// looksLikeDeny reports whether s is written as a deny grant, even if it is malformed otherwise:
// a deny that cannot be read must not be dropped as silently as a bad allow.
func looksLikeDeny(s string) bool {
	name, _, _ := strings.Cut(s, ":")
	return strings.EqualFold(strings.TrimSpace(name), "deny")
}

// Validate checks the action and that the filter is a valid MQTT filter (wildcards on whole levels,
// '#' last, UTF-8 without U+0000, at most 65535 bytes). A "$share/..." filter is refused: sharing is
// how a subscriber receives, not what it may see, so grants name the plain filter.
func (g Grant) Validate() error {
	if g.Action >= numActions {
		return fmt.Errorf("%w: unknown action %d", ErrBadGrant, g.Action)
	}
	f, err := topic.ParseFilter(g.Filter)
	if err != nil {
		return fmt.Errorf("%w: filter %q: %v", ErrBadGrant, g.Filter, err)
	}
	if f.Shared() {
		return fmt.Errorf("%w: filter %q: grants name the filter without $share/{group}/", ErrBadGrant, g.Filter)
	}
	return nil
}

// validateGrants checks a list, naming the first bad grant.
func validateGrants(gs []Grant) error {
	for _, g := range gs {
		if err := g.Validate(); err != nil {
			return err
		}
	}
	return nil
}

// placeholderOK reports whether v may replace %u or %c: a non-empty single level without wildcards,
// so that substitution cannot turn "users/%u/#" into a grant on somebody else's levels.
func placeholderOK(v string) bool {
	return v != "" && !strings.ContainsAny(v, "/+#\x00")
}

// expand replaces %u and %c in filter. ok is false when the filter needs a value that is not
// usable (see placeholderOK); the caller then leaves the grant out. Values are trusted here: the
// token subset check passes a NUL-carrying stand-in for %c that no real filter level can equal.
func expand(filter, u, c string, uOK, cOK bool) (string, bool) {
	if strings.IndexByte(filter, '%') < 0 {
		return filter, true
	}
	var b strings.Builder
	for i := 0; i < len(filter); i++ {
		if filter[i] == '%' && i+1 < len(filter) {
			switch filter[i+1] {
			case 'u':
				if !uOK {
					return "", false
				}
				b.WriteString(u)
				i++
				continue
			case 'c':
				if !cOK {
					return "", false
				}
				b.WriteString(c)
				i++
				continue
			}
		}
		b.WriteByte(filter[i])
	}
	return b.String(), true
}

// expandDeny is expand for a deny grant. Leaving out a deny whose placeholder has no usable value
// would allow more, not less, so instead the deny is widened to everything the intended filter
// could have become: the levels before the first unusable placeholder, then '#' ("users/%u/#"
// with the identity "a/b" denies "users/#"). all reports a placeholder in the first level, where
// no prefix is left: the deny then covers every topic of its action, '$' topics included.
func expandDeny(filter, u, c string, uOK, cOK bool) (f string, all bool) {
	if f, ok := expand(filter, u, c, uOK, cOK); ok {
		return f, false
	}
	var b strings.Builder
	for i, level := range strings.Split(filter, "/") {
		x, ok := expand(level, u, c, uOK, cOK)
		if !ok {
			if i == 0 {
				return "", true
			}
			b.WriteString("/#")
			return b.String(), false
		}
		if i > 0 {
			b.WriteByte('/')
		}
		b.WriteString(x)
	}
	return b.String(), false // not reached: some level failed to expand
}
