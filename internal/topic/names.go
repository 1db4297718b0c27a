// Package topic implements MQTT topic semantics for tern: validation of topic names and
// subscription filters (MQTT 3.1.1 and 5, including $share shared subscriptions), matching of
// one filter against one topic, and Index, the concurrent subscription trie with a match cache
// that every published message is routed through.
package topic

import (
	"errors"
	"strings"
	"unicode/utf8"
)

// MaxLen is the longest topic name or filter MQTT can carry: its strings are length-prefixed with
// two bytes.
const MaxLen = 65535

// sharePrefix introduces an MQTT 5 shared subscription: $share/{group}/{filter}.
const sharePrefix = "$share/"

// Validation errors. They are sentinels rather than formatted errors so that rejecting a
// malformed PUBLISH on the hot path costs no allocation; callers map them to reason codes.
var (
	ErrEmpty             = errors.New("topic: empty")
	ErrTooLong           = errors.New("topic: longer than 65535 bytes")
	ErrInvalidUTF8       = errors.New("topic: invalid UTF-8")
	ErrNUL               = errors.New("topic: contains U+0000")
	ErrWildcardInName    = errors.New("topic: wildcard '+' or '#' in a topic name")
	ErrWildcardPlacement = errors.New("topic: '+' and '#' must occupy a whole level and '#' must be the last level")
	ErrShareGroup        = errors.New("topic: shared subscription group is empty or contains '/', '+' or '#'")
	ErrShareFilter       = errors.New("topic: shared subscription has no filter")
)

// ValidName checks a PUBLISH topic name: 1..65535 bytes, no '+' or '#', valid UTF-8, no U+0000.
//
// Control characters and Unicode non-characters are allowed: the specification only says they
// SHOULD NOT be used, and rejecting them would break clients that other brokers accept.
func ValidName(name string) error {
	if len(name) == 0 {
		return ErrEmpty
	}
	if len(name) > MaxLen {
		return ErrTooLong
	}
	return scan(name, false)
}

// scan checks the characters of a name or filter in one pass. Bytes of a multi-byte UTF-8
// sequence are all >= 0x80, so a byte-wise search for '+', '#' and NUL stays correct on
// non-ASCII text; UTF-8 itself is verified once, from the first non-ASCII byte on.
func scan(s string, wildcardsOK bool) error {
	utf8Checked := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= utf8.RuneSelf {
			if !utf8Checked {
				if !utf8.ValidString(s[i:]) {
					return ErrInvalidUTF8
				}
				utf8Checked = true
			}
			continue
		}
		switch c {
		case 0:
			return ErrNUL
		case '+', '#':
			if !wildcardsOK {
				return ErrWildcardInName
			}
			// A wildcard must be a whole level: preceded by '/' or the start, followed by
			// '/' or the end, and '#' only at the very end.
			if i > 0 && s[i-1] != '/' {
				return ErrWildcardPlacement
			}
			if i+1 < len(s) && (c == '#' || s[i+1] != '/') {
				return ErrWildcardPlacement
			}
		}
	}
	return nil
}

// Filter is a parsed subscription filter.
type Filter struct {
	// Group is the shared subscription group; "" for a plain subscription.
	Group string
	// Path is the filter proper, without any "$share/{group}/" prefix.
	Path string
}

// ParseFilter validates a SUBSCRIBE/UNSUBSCRIBE filter and splits off a $share prefix. Wildcards
// must occupy a whole level and '#' must be last; the filter must be 1..65535 bytes of valid UTF-8
// without U+0000. For "$share/{group}/{filter}" the group must be non-empty without '+' or '#'
// (it cannot contain '/' by construction) and the filter must be non-empty and valid.
//
// The returned strings are substrings of s; no allocation happens.
func ParseFilter(s string) (Filter, error) {
	if len(s) == 0 {
		return Filter{}, ErrEmpty
	}
	if len(s) > MaxLen {
		return Filter{}, ErrTooLong
	}
	if !strings.HasPrefix(s, sharePrefix) {
		if err := scan(s, true); err != nil {
			return Filter{}, err
		}
		return Filter{Path: s}, nil
	}
	rest := s[len(sharePrefix):]
	i := strings.IndexByte(rest, '/')
	group, path := rest, ""
	if i >= 0 {
		group, path = rest[:i], rest[i+1:]
	}
	if group == "" || strings.ContainsAny(group, "+#") {
		return Filter{}, ErrShareGroup
	}
	if err := scan(group, false); err != nil {
		return Filter{}, err
	}
	if path == "" {
		return Filter{}, ErrShareFilter
	}
	if err := scan(path, true); err != nil {
		return Filter{}, err
	}
	return Filter{Group: group, Path: path}, nil
}

// String returns the filter in its original form, with the $share prefix for a shared one.
func (f Filter) String() string {
	if f.Group == "" {
		return f.Path
	}
	return sharePrefix + f.Group + "/" + f.Path
}

// Shared reports whether f is a shared subscription.
func (f Filter) Shared() bool { return f.Group != "" }

// Match reports whether the filter matches the topic name. filter is a plain filter path (a
// Filter's Path; a "$share/..." string is not unwrapped), topic a topic name. Neither is validated:
// malformed input gives a meaningless answer but never panics. Match does not allocate.
func Match(filter, topic string) bool {
	// A filter starting with a wildcard level must not match a topic starting with '$' (MQTT
	// 4.7.2): "#" and "+/..." do not see $SYS and friends.
	if len(topic) > 0 && topic[0] == '$' && len(filter) > 0 && (filter[0] == '+' || filter[0] == '#') &&
		(len(filter) == 1 || filter[1] == '/') {
		return false
	}
	topicDone := false
	for {
		fl, frest, fmore := cut(filter)
		if fl == "#" {
			// '#' matches the parent level and any number of children, including none.
			return true
		}
		if topicDone {
			return false
		}
		tl, trest, tmore := cut(topic)
		if fl != "+" && fl != tl {
			return false
		}
		if !fmore {
			return !tmore
		}
		filter = frest
		if tmore {
			topic = trest
		} else {
			// The topic is used up but the filter is not: only a trailing '#' can still match.
			topicDone = true
		}
	}
}

// cut splits off the first level of s; more reports whether a '/' (and so another level, possibly
// empty) follows it.
func cut(s string) (level, rest string, more bool) {
	if i := strings.IndexByte(s, '/'); i >= 0 {
		return s[:i], s[i+1:], true
	}
	return s, "", false
}

// EscapeLevel makes any string one topic level: '%', '/', '+', '#' and NUL are percent-encoded,
// so distinct strings give distinct levels, and "" becomes "%00". Faces use it to map names of
// other protocols (isimud publishers, mBus identifiers) into topics injectively.
func EscapeLevel(s string) string {
	if s == "" {
		return "%00"
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '%', '/', '+', '#', 0:
			const hex = "0123456789ABCDEF"
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
