package topic

import (
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// refMatch is a deliberately naive reference for Match: split both sides and compare levels.
func refMatch(filter, topic string) bool {
	fl, tl := strings.Split(filter, "/"), strings.Split(topic, "/")
	if strings.HasPrefix(topic, "$") && (fl[0] == "+" || fl[0] == "#") {
		return false
	}
	for i, l := range fl {
		if l == "#" {
			return true // the topic has at least i levels, or an earlier level would have failed
		}
		if i >= len(tl) || l != "+" && l != tl[i] {
			return false
		}
	}
	return len(fl) == len(tl)
}

// refValidPath is a naive reference for the wildcard and character rules of a filter path.
func refValidPath(p string) bool {
	if p == "" || !utf8.ValidString(p) || strings.ContainsRune(p, 0) {
		return false
	}
	levels := strings.Split(p, "/")
	for i, l := range levels {
		if strings.ContainsAny(l, "+#") && l != "+" && l != "#" || l == "#" && i != len(levels)-1 {
			return false
		}
	}
	return true
}

func refValidFilter(s string) bool {
	if len(s) > MaxLen {
		return false
	}
	rest, ok := strings.CutPrefix(s, "$share/")
	if !ok {
		return refValidPath(s)
	}
	group, path, ok := strings.Cut(rest, "/")
	return ok && group != "" && !strings.ContainsAny(group, "+#\x00") && utf8.ValidString(group) && refValidPath(path)
}

func FuzzParseFilter(f *testing.F) {
	for _, tt := range matchCases {
		f.Add(tt.filter)
		f.Add(tt.topic)
	}
	for _, s := range []string{"$share/g/a/#", "$share//a", "$share/g", "a/#/b", "a+", "\xff", "a\x00", "$share/g+/x", "é/+"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		flt, err := ParseFilter(s)
		if (err == nil) != refValidFilter(s) {
			t.Fatalf("ParseFilter(%q) error = %v, reference valid = %v", s, err, refValidFilter(s))
		}
		nameErr := ValidName(s)
		if nameErr == nil && err != nil && !strings.HasPrefix(s, "$share/") {
			t.Fatalf("%q is a valid name but not a valid filter: %v", s, err)
		}
		if err != nil {
			return
		}
		if flt.String() != s {
			t.Fatalf("ParseFilter(%q).String() = %q", s, flt.String())
		}
		if again, err := ParseFilter(flt.String()); err != nil || again != flt {
			t.Fatalf("round trip of %q: %+v, %v", s, again, err)
		}
		if flt.Group == "" && !strings.ContainsAny(s, "+#") && nameErr != nil {
			t.Fatalf("%q is a wildcard-free filter but ValidName says %v", s, nameErr)
		}
		// A wildcard-free path matches itself and only itself.
		if !strings.ContainsAny(flt.Path, "+#") && !Match(flt.Path, flt.Path) {
			t.Fatalf("Match(%q, itself) = false", flt.Path)
		}
		// Subscribing it must work and find it again.
		x := NewIndex[int, int](8)
		x.Subscribe(flt, 1, 1)
		if !x.Unsubscribe(flt, 1) || x.nodeCount() != 0 {
			t.Fatalf("Subscribe/Unsubscribe(%q) left %d nodes", s, x.nodeCount())
		}
	})
}

// FuzzMatch feeds newline-separated filters and one topic. Lines starting with '-' unsubscribe
// the filter after the dash. The index (cached Match and MatchInto) must agree with brute force,
// and Match must agree with the naive reference.
func FuzzMatch(f *testing.F) {
	for _, tt := range matchCases {
		f.Add(tt.filter+"\n#\n+/+\n$share/g/"+tt.filter, tt.topic)
	}
	f.Add("a/b\na/+\n-a/b\n$share/g/#\n$share/h/#\n-$share/g/#", "a/b")
	f.Add("$SYS/#\n#\n+/x", "$SYS/x")
	f.Fuzz(func(t *testing.T, filters, topic string) {
		x := NewIndex[int, int](4)
		m := newModel()
		lines := strings.Split(filters, "\n")
		if len(lines) > 32 {
			lines = lines[:32]
		}
		for i, line := range lines {
			s, unsub := strings.CutPrefix(line, "-")
			flt, err := ParseFilter(s)
			if err != nil {
				continue
			}
			if got, want := Match(flt.Path, topic), refMatch(flt.Path, topic); got != want {
				t.Fatalf("Match(%q, %q) = %v, reference %v", flt.Path, topic, got, want)
			}
			key := i % 3
			if unsub {
				for k := range 3 {
					if got, want := x.Unsubscribe(flt, k), m.unsubscribe(flt, k); got != want {
						t.Fatalf("Unsubscribe(%q, %d) = %v, model %v", s, k, got, want)
					}
				}
				continue
			}
			if got, want := x.Subscribe(flt, key, i), m.subscribe(flt, key, i); got != want {
				t.Fatalf("Subscribe(%q, %d) replaced = %v, model %v", s, key, got, want)
			}
			_ = x.Match(topic) // cache a result that the next change must invalidate
		}
		checkAgree(t, x, m, topic)
		// A cache hit returns the same thing.
		if a, b := canon(t, x.Match(topic)), m.expect(topic); !slices.Equal(a, b) {
			t.Fatalf("cached Match(%q) = %q, want %q", topic, a, b)
		}
		if x.Len() != len(m.subs) {
			t.Fatalf("Len = %d, model %d", x.Len(), len(m.subs))
		}
	})
}
