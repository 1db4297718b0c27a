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

// Grant allows one action on every topic an MQTT topic filter matches. The filter may contain the
// placeholders %u (the principal's identity) and %c (its client id), replaced when a Principal is
// built; a placeholder whose value is empty or contains '/', '+' or '#' would widen or blur the
// grant, so such a grant is left out of that principal instead.
type Grant struct {
	Action Action `json:"action"` // what is allowed
	Filter string `json:"filter"` // where: an MQTT topic filter, possibly with %u and %c
}

// String returns the grant as "action:filter", the form ParseGrant reads.
func (g Grant) String() string { return g.Action.String() + ":" + g.Filter }

// ErrBadGrant is wrapped by every error about a malformed grant.
var ErrBadGrant = errors.New("auth: bad grant")

// ParseGrant reads "action:filter", e.g. "publish:sensors/%u/#". The action ends at the first ':',
// so the filter may itself contain ':'.
func ParseGrant(s string) (Grant, error) {
	name, filter, ok := strings.Cut(s, ":")
	if !ok {
		return Grant{}, fmt.Errorf("%w: %q is not action:filter", ErrBadGrant, s)
	}
	a, err := ParseAction(strings.TrimSpace(name))
	if err != nil {
		return Grant{}, fmt.Errorf("%w: %v", ErrBadGrant, err)
	}
	g := Grant{Action: a, Filter: filter}
	return g, g.Validate()
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
