package auth

import (
	"bytes"
	"encoding/binary"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/topic"
)

func FuzzParseGrant(f *testing.F) {
	for _, s := range []string{"publish:a/b", "subscribe:+/x/#", "admin:#", "call:svc:%u/%c", "x", ":", "push:$SYS/#", "publish:a/#/b",
		"deny:subscribe:test/nosubscribe", "deny:x", "DENY:admin:%u", "deny:deny:a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		g, err := ParseGrant(s)
		if err != nil {
			return
		}
		// What parses prints back to something that parses to the same grant.
		g2, err := ParseGrant(g.String())
		if err != nil || g2 != g {
			t.Fatalf("%q -> %v -> %v, %v", s, g, g2, err)
		}
		allow := Grant{Action: g.Action, Filter: g.Filter}
		p, err := NewPrincipal("u", "c", []Grant{allow, g})
		if err != nil {
			t.Fatal(err)
		}
		// An allow covers its own filter; a deny of the same filter beside it refuses it.
		f := strings.ReplaceAll(strings.ReplaceAll(g.Filter, "%u", "u"), "%c", "c")
		if p.AllowFilter(g.Action, f) == g.Deny {
			t.Fatalf("grant %v, filter %q: AllowFilter = %v", g, f, !g.Deny)
		}
	})
}

func FuzzParsePHC(f *testing.F) {
	f.Add("$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g")
	f.Add("$argon2id$v=19$m=64,t=1,p=1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA")
	f.Add("$argon2id$v=19$m=1,t=1,p=1$$")
	f.Add("$argon2i$v=19$m=64,t=1,p=1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA")
	f.Add("$argon2id$v=19$t=1,m=64,p=1,p=1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA")
	f.Fuzz(func(t *testing.T, s string) {
		h, err := parsePHC(s)
		if err != nil {
			return
		}
		if h.params.check() != nil {
			t.Fatalf("out-of-bounds parameters accepted: %+v", h.params)
		}
		h2, err := parsePHC(h.String())
		if err != nil || h2.params != h.params || !bytes.Equal(h2.salt, h.salt) || !bytes.Equal(h2.hash, h.hash) {
			t.Fatalf("%q does not round-trip: %v", s, err)
		}
		if !validStoredHash(s) {
			t.Fatal("parsePHC and validStoredHash disagree")
		}
	})
}

func FuzzParseULWMQ(f *testing.F) {
	f.Add([]byte("alice|f52fbd32b2b3b86ff88ef6c490628285f482af15ddcb29541f94bcf526a3f6c7\n# c\n\nbob|x|y\n"))
	if db, err := os.ReadFile("testdata/users.db"); err == nil {
		f.Add(db)
	}
	// Three 512-byte pages: small enough for the fuzzer to mutate every structure cheaply.
	if db, err := os.ReadFile("testdata/small.db"); err == nil {
		f.Add(db)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rows, _, err := parseULWMQ(data)
		if err != nil {
			return
		}
		for _, r := range rows {
			if _, ok := ulwmqUser(r.name, r.hash); !ok || r.hash != strings.ToLower(r.hash) {
				t.Fatalf("invalid row returned: %+v", r)
			}
		}
	})
}

func FuzzSQLiteRecord(f *testing.F) {
	f.Add([]byte{9, 0, 1, 2, 8, 9, 17, 7, 14, 0xff, 0x01, 0x00, 'h', 'i', 0x3f, 0xf8, 0, 0, 0, 0, 0, 0, 'z'})
	f.Add([]byte{3, 0x81, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		vals, err := decodeRecord(b)
		if err != nil {
			return
		}
		total := 0
		for _, v := range vals {
			total += len(v.text)
		}
		if len(vals) > len(b) || total > 30*len(b) {
			t.Fatalf("%d values, %d bytes from a %d-byte record", len(vals), total, len(b))
		}
	})
}

func FuzzDecodeAnswer(f *testing.F) {
	f.Add([]byte(`{"result":"allow","identity":"x","grants":[{"action":"publish","filter":"a/#"}],"ttl":30}`))
	f.Add([]byte(`{"result":"deny"}`))
	f.Add([]byte(`{"result":"ignore","ttl":-1}`))
	f.Add([]byte(`{"result":"allow","grants":[{"action":"fly","filter":"#/a"}],"ttl":1e308}`))
	f.Add([]byte(`{"result":"allow","grants":["subscribe:#",{"action":"subscribe","filter":"x","deny":true},"deny:publish:y"]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, _, err := decodeAnswer(b, time.Minute, time.Hour)
		if err != nil {
			return
		}
		if d.ttl < 0 || d.ttl > time.Hour {
			t.Fatalf("ttl %v", d.ttl)
		}
		if err := validateGrants(d.grants); err != nil {
			t.Fatal(err)
		}
		if d.verdict != verdictAllow && (d.grants != nil || d.identity != "") {
			t.Fatal("a refusal carries grants or an identity")
		}
	})
}

// FuzzMatcher checks the compiled matchers against topic.Match and against each other: both
// automata (deterministic and fallback) must agree on every topic and filter, Allow must equal
// "some grant matches", and AllowFilter must never claim a filter that matches the topic when
// Allow refuses that topic.
func FuzzMatcher(f *testing.F) {
	f.Add("a/+/c", "a/#", "$s/x", "a/b/c", "a/+")
	f.Add("#", "+/+", "x", "$SYS/a", "#")
	f.Add("+/#", "/a", "a//b", "a//b", "+/+/#")
	f.Fuzz(func(t *testing.T, g1, g2, g3, name, filter string) {
		var filters []string
		for _, g := range []string{g1, g2, g3} {
			if (Grant{Action: Publish, Filter: g}).Validate() == nil {
				filters = append(filters, g)
			}
		}
		if topic.ValidName(name) != nil {
			return
		}
		det, nfa := compileFilters(filters), compileLimited(filters, 0)
		want := slices.ContainsFunc(filters, func(f string) bool { return topic.Match(f, name) })
		if got := det.match(name); got != want {
			t.Fatalf("grants %q: match(%q) = %v, want %v", filters, name, got, want)
		}
		if got := nfa.match(name); got != want {
			t.Fatalf("grants %q: fallback match(%q) = %v, want %v", filters, name, got, want)
		}
		if (Grant{Action: Publish, Filter: filter}).Validate() != nil {
			return
		}
		c := det.covers(filter)
		if c != nfa.covers(filter) {
			t.Fatalf("grants %q: automata disagree on covers(%q)", filters, filter)
		}
		if c && topic.Match(filter, name) && !want {
			t.Fatalf("grants %q: covers(%q) but %q, which it matches, is refused", filters, filter, name)
		}
		if slices.Contains(filters, filter) && !c {
			t.Fatalf("grants %q do not cover their own %q", filters, filter)
		}
		// The walk of a few grants (listed.go) answers as the automata do; its one-grant
		// checks are exact, and overlaps never misses a topic both filters match.
		l := listedACL(Publish, filters)
		if got := l.allowListed(Publish, name); got != want {
			t.Fatalf("grants %q: listed allow(%q) = %v, want %v", filters, name, got, want)
		}
		if got := l.coversListed(Publish, filter, false); got != c {
			t.Fatalf("grants %q: listed covers(%q) = %v, automata %v", filters, filter, got, c)
		}
		for _, g := range filters {
			one := compileFilters([]string{g})
			if got, want := subsumes(g, filter), one.covers(filter); got != want {
				t.Fatalf("subsumes(%q, %q) = %v, automaton %v", g, filter, got, want)
			}
			both := topic.Match(g, name) && topic.Match(filter, name)
			if both && (!overlaps(g, filter) || !overlaps(filter, g)) {
				t.Fatalf("%q and %q both match %q but do not overlap", g, filter, name)
			}
		}
	})
}

// FuzzApplyWAL feeds the WAL reader arbitrary database and WAL files: it must not panic, must
// keep to its limit, must return an image that no longer says WAL mode, and the image must go
// through the users.db reader without panicking. Seeds are the fixtures sqlite3 wrote, cut to a
// few frames so that the fuzzer can mutate them cheaply, with the checksum chain kept valid.
func FuzzApplyWAL(f *testing.F) {
	const limit = 1 << 20
	for _, name := range []string{"wal", "walreset"} {
		db, err1 := os.ReadFile("testdata/" + name + ".db")
		wal, err2 := os.ReadFile("testdata/" + name + ".db-wal")
		if err1 != nil || err2 != nil {
			continue
		}
		f.Add(db, wal[:min(len(wal), walHeaderSize+6*(24+512))])
		f.Add([]byte(nil), wal[:min(len(wal), walHeaderSize+3*(24+512))])
	}
	if small, err := os.ReadFile("testdata/small.db"); err == nil {
		f.Add(small, []byte(nil))
	}
	check := func(t *testing.T, db, wal []byte) {
		image, frames, err := applyWAL(db, wal, limit)
		if err != nil {
			return
		}
		if len(image) > max(limit, len(db)) || frames < 0 || walMode(image) {
			t.Fatalf("image of %d bytes, %d frames, WAL mode %v", len(image), frames, walMode(image))
		}
		if frames == 0 && len(image) != len(db) {
			t.Fatalf("no frame used, yet the image is %d bytes, the database %d", len(image), len(db))
		}
		_, _, _ = parseULWMQ(image)
	}
	f.Fuzz(func(t *testing.T, db, wal []byte) {
		check(t, db, wal)
		// Mutations rarely keep the checksum chain valid; with it recomputed, the frames' page
		// numbers, commit sizes and pages are what the fuzzer explores.
		if len(wal) >= walHeaderSize {
			check(t, db, reChecksum(wal, walMagicLE|binary.BigEndian.Uint32(wal)&1))
		}
	})
}
