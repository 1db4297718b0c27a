package topic

import (
	"errors"
	"strings"
	"testing"
)

func TestValidName(t *testing.T) {
	tests := []struct {
		name string
		want error
	}{
		{"a", nil},
		{"a/b/c", nil},
		{"/", nil},
		{"a//b", nil},
		{"/a", nil},
		{"a/", nil},
		{"$SYS/broker", nil},
		{"é/日本/😀", nil},
		{" ", nil},
		{"\x01control\x7f", nil},
		{strings.Repeat("a", MaxLen), nil},

		{"", ErrEmpty},
		{strings.Repeat("a", MaxLen+1), ErrTooLong},
		{"+", ErrWildcardInName},
		{"a/+/b", ErrWildcardInName},
		{"a/#", ErrWildcardInName},
		{"a+b", ErrWildcardInName},
		{"é#", ErrWildcardInName},
		{"a\x00b", ErrNUL},
		{"é\x00", ErrNUL},
		{"a\xffb", ErrInvalidUTF8},
		{"a/\xc3", ErrInvalidUTF8},           // truncated sequence
		{"\xed\xa0\x80", ErrInvalidUTF8},     // UTF-16 surrogate U+D800
		{"\xc0\xaf", ErrInvalidUTF8},         // overlong '/'
		{"\xf4\x90\x80\x80", ErrInvalidUTF8}, // beyond U+10FFFF
	}
	for _, tt := range tests {
		if got := ValidName(tt.name); !errors.Is(got, tt.want) {
			t.Errorf("ValidName(%.40q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestParseFilter(t *testing.T) {
	tests := []struct {
		in    string
		group string
		path  string
		err   error
	}{
		{"a", "", "a", nil},
		{"a/b/c", "", "a/b/c", nil},
		{"+", "", "+", nil},
		{"#", "", "#", nil},
		{"+/+", "", "+/+", nil},
		{"a/+/b", "", "a/+/b", nil},
		{"a/#", "", "a/#", nil},
		{"+/#", "", "+/#", nil},
		{"/", "", "/", nil},
		{"a//b", "", "a//b", nil},
		{"/#", "", "/#", nil},
		{"$SYS/#", "", "$SYS/#", nil},
		{"$share", "", "$share", nil},           // no slash: an ordinary filter
		{"$shared/g/a", "", "$shared/g/a", nil}, // not the $share/ prefix
		{"$share/g/a", "g", "a", nil},
		{"$share/g/a/+/#", "g", "a/+/#", nil},
		{"$share/g/#", "g", "#", nil},
		{"$share/g//", "g", "/", nil},
		{"$share/$g/a", "$g", "a", nil},
		{"$share/日本/a", "日本", "a", nil},

		{"", "", "", ErrEmpty},
		{strings.Repeat("a", MaxLen+1), "", "", ErrTooLong},
		{"a+", "", "", ErrWildcardPlacement},
		{"+a", "", "", ErrWildcardPlacement},
		{"a/b+/c", "", "", ErrWildcardPlacement},
		{"a/#/b", "", "", ErrWildcardPlacement},
		{"#/", "", "", ErrWildcardPlacement},
		{"a#", "", "", ErrWildcardPlacement},
		{"##", "", "", ErrWildcardPlacement},
		{"++", "", "", ErrWildcardPlacement},
		{"a/\x00", "", "", ErrNUL},
		{"a/\xff", "", "", ErrInvalidUTF8},
		{"$share/", "", "", ErrShareGroup},
		{"$share//a", "", "", ErrShareGroup},
		{"$share/g", "", "", ErrShareFilter},
		{"$share/g/", "", "", ErrShareFilter},
		{"$share/+/a", "", "", ErrShareGroup},
		{"$share/#/a", "", "", ErrShareGroup},
		{"$share/g+/a", "", "", ErrShareGroup},
		{"$share/g\x00/a", "", "", ErrNUL},
		{"$share/g/a+", "", "", ErrWildcardPlacement},
		{"$share/g/#/a", "", "", ErrWildcardPlacement},
	}
	for _, tt := range tests {
		f, err := ParseFilter(tt.in)
		if !errors.Is(err, tt.err) {
			t.Errorf("ParseFilter(%.40q) error = %v, want %v", tt.in, err, tt.err)
			continue
		}
		if err != nil {
			if f != (Filter{}) {
				t.Errorf("ParseFilter(%q) = %+v with error, want zero Filter", tt.in, f)
			}
			continue
		}
		if f.Group != tt.group || f.Path != tt.path {
			t.Errorf("ParseFilter(%q) = %+v, want {%q %q}", tt.in, f, tt.group, tt.path)
		}
		if f.String() != tt.in {
			t.Errorf("ParseFilter(%q).String() = %q", tt.in, f.String())
		}
		if f.Shared() != (tt.group != "") {
			t.Errorf("ParseFilter(%q).Shared() = %v", tt.in, f.Shared())
		}
	}
}

// matchCases is shared by the Match table test and the Index table test, so the trie and the
// reference matcher are held to the same semantics.
var matchCases = []struct {
	filter, topic string
	want          bool
}{
	// Literal.
	{"a", "a", true},
	{"a", "b", false},
	{"a/b", "a/b", true},
	{"a/b", "a", false},
	{"a", "a/b", false},
	{"a/b", "a/bc", false},
	{"ab", "a", false},

	// '+': exactly one level, possibly empty.
	{"+", "a", true},
	{"+", "a/b", false},
	{"+", "/", false},
	{"+/+", "/", true},
	{"a/+", "a/b", true},
	{"a/+", "a/", true},
	{"a/+", "a", false},
	{"a/+", "a/b/c", false},
	{"a/+/c", "a/b/c", true},
	{"a/+/c", "a//c", true},
	{"a/+/c", "a/b/d", false},
	{"+/b", "/b", true},
	{"+/+/+", "a/b/c", true},
	{"+/+/+", "a/b", false},

	// '#': the parent level and any number of children.
	{"#", "a", true},
	{"#", "a/b/c", true},
	{"#", "/", true},
	{"#", "/a", true},
	{"a/#", "a", true},
	{"a/#", "a/", true},
	{"a/#", "a/b", true},
	{"a/#", "a/b/c", true},
	{"a/#", "ab", false},
	{"a/#", "b/a", false},
	{"a/b/#", "a", false},
	{"a/b/#", "a/b", true},
	{"+/#", "a", true},
	{"+/#", "a/b/c", true},
	{"a/+/#", "a/b", true},
	{"a/+/#", "a", false},
	{"/#", "/", true},
	{"/#", "a", false},

	// Empty levels.
	{"a//b", "a//b", true},
	{"a//b", "a/b", false},
	{"/a", "/a", true},
	{"/a", "a", false},
	{"a/", "a/", true},
	{"a/", "a", false},
	{"/", "/", true},
	{"//", "//", true},
	{"+", "", true}, // not a valid name, but one empty level

	// The '$' rule: wildcard first levels do not match '$' topics; literal ones do.
	{"#", "$SYS", false},
	{"#", "$SYS/broker", false},
	{"+", "$SYS", false},
	{"+/broker", "$SYS/broker", false},
	{"+/#", "$SYS/broker", false},
	{"$SYS/#", "$SYS", true},
	{"$SYS/#", "$SYS/broker/load", true},
	{"$SYS/+", "$SYS/broker", true},
	{"$SYS/broker", "$SYS/broker", true},
	{"#", "a/$b", true},
	{"a/+", "a/$b", true},
	{"+", "a$", true},
}

func TestMatch(t *testing.T) {
	for _, tt := range matchCases {
		if got := Match(tt.filter, tt.topic); got != tt.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tt.filter, tt.topic, got, tt.want)
		}
	}
}

func TestNameAndFilterAllocs(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() {
		_ = ValidName("device/1234/é/temperature")
		_, _ = ParseFilter("$share/g/device/+/temperature/#")
		_ = Match("device/+/temperature/#", "device/1234/temperature")
	}); n != 0 {
		t.Fatalf("validation and Match allocate %v times, want 0", n)
	}
}
