package auth

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/ternmq/tern/internal/topic"
)

func TestParseDenyGrant(t *testing.T) {
	good := map[string]Grant{
		"deny:subscribe:test/nosubscribe": {Action: Subscribe, Filter: "test/nosubscribe", Deny: true},
		" DENY : Publish :a/#":            {Action: Publish, Filter: "a/#", Deny: true},
		"deny:call:svc:x/%u":              {Action: Call, Filter: "svc:x/%u", Deny: true},
		"publish:deny:x":                  {Action: Publish, Filter: "deny:x"}, // a filter may say "deny"
	}
	for s, want := range good {
		g, err := ParseGrant(s)
		if err != nil || g != want {
			t.Errorf("ParseGrant(%q) = %v, %v; want %v", s, g, err, want)
		}
		if again, err := ParseGrant(g.String()); err != nil || again != g {
			t.Errorf("ParseGrant(%q) = %v, %v: String does not round-trip", g.String(), again, err)
		}
	}
	if s := (Grant{Action: Subscribe, Filter: "a", Deny: true}).String(); s != "deny:subscribe:a" {
		t.Errorf("String = %q", s)
	}
	for _, s := range []string{"deny", "deny:", "deny:publish", "deny:fly:x", "deny:publish:a/#/b",
		"deny:publish:", "deny:deny:publish:x", "deny:publish:$share/g/a"} {
		if _, err := ParseGrant(s); !errors.Is(err, ErrBadGrant) {
			t.Errorf("ParseGrant(%q) error = %v, want ErrBadGrant", s, err)
		}
	}
	// JSON: the allow form is unchanged, a deny adds "deny": true.
	in := []Grant{{Action: Subscribe, Filter: "#"}, {Action: Subscribe, Filter: "x", Deny: true}}
	b, _ := json.Marshal(in)
	if want := `[{"action":"subscribe","filter":"#"},{"action":"subscribe","filter":"x","deny":true}]`; string(b) != want {
		t.Fatalf("JSON = %s, want %s", b, want)
	}
	var out []Grant
	if err := json.Unmarshal(b, &out); err != nil || !slices.Equal(in, out) {
		t.Fatalf("round trip = %v, %v", out, err)
	}
}

// TestDenyTable: a deny refuses a topic name it matches, and a filter it covers; a filter that
// only overlaps a deny is judged by the allows alone. The order of the grants does not matter.
func TestDenyTable(t *testing.T) { eachMatcher(t, testDenyTable) }

func testDenyTable(t *testing.T) {
	gs := mustGrants(t,
		"subscribe:#", "deny:subscribe:test/nosubscribe", "deny:subscribe:private/#",
		"subscribe:$SYS/#", "deny:subscribe:$SYS/secret/#",
		"publish:#", "deny:publish:secret/#", "deny:publish:a/+/private",
		"publish:$ctl/#", "deny:publish:#", // '#' does not reach '$' topics, for denies either
		"admin:#", "deny:admin:users",
		"deny:retain:x", // a deny alone allows nothing
	)
	cases := []struct {
		a      Action
		s      string
		filter bool // AllowFilter rather than Allow
		want   bool
	}{
		{Subscribe, "#", true, true},
		{Subscribe, "test/nosubscribe", true, false},
		{Subscribe, "$share/g/test/nosubscribe", true, false},
		{Subscribe, "test/+", true, true}, // overlaps the deny: allowed
		{Subscribe, "test/#", true, true},
		{Subscribe, "+/nosubscribe", true, true},
		{Subscribe, "test/nosubscribe/x", true, true}, // the deny names one level, not below
		{Subscribe, "test/nosubscribe", false, false},
		{Subscribe, "test/other", false, true},
		{Subscribe, "private", true, false}, // "private/#" covers "private" itself
		{Subscribe, "private/+", true, false},
		{Subscribe, "private/#", true, false},
		{Subscribe, "private/a/b", false, false},
		{Subscribe, "$SYS/#", true, true},
		{Subscribe, "$SYS/secret/+", true, false},
		{Subscribe, "$SYS/secrets", true, true},
		{Publish, "x", false, false},
		{Publish, "secret", false, false},
		{Publish, "$ctl/go", false, true},
		{Publish, "$ctl/+", true, true},
		{Admin, "users", false, false},
		{Admin, "tokens", false, true},
		{Admin, "users/x", false, true},
		{Retain, "x", false, false},
		{Retain, "y", false, false},
	}
	reversed := slices.Clone(gs)
	slices.Reverse(reversed)
	for _, order := range [][]Grant{gs, reversed} {
		p, err := NewPrincipal("alice", "c1", order)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cases {
			var got bool
			if c.filter {
				got = p.AllowFilter(c.a, c.s)
			} else {
				got = p.Allow(c.a, c.s)
			}
			if got != c.want {
				t.Errorf("%v %q (filter %v) = %v, want %v", c.a, c.s, c.filter, got, c.want)
			}
		}
	}
	// Other publish denies, without "deny:publish:#".
	p, _ := NewPrincipal("alice", "c1", mustGrants(t, "publish:#", "deny:publish:secret/#", "deny:publish:a/+/private"))
	for tp, want := range map[string]bool{
		"secret": false, "secret/x/y": false, "secrets": true, "a/b/private": false, "a/b/public": true,
		"a/b/private/x": true, "public": true,
	} {
		if got := p.Allow(Publish, tp); got != want {
			t.Errorf("Allow(publish, %q) = %v, want %v", tp, got, want)
		}
	}
	if p.AllowFilter(Publish, "secret/+") || !p.AllowFilter(Publish, "a/+/+") {
		t.Error("publish filters: a covered one allowed, or an overlapping one refused")
	}
	// An unrestricted principal (super group, open mode) has no grants, so no denies.
	if u := Unrestricted("root"); !u.AllowFilter(Subscribe, "test/nosubscribe") {
		t.Error("unrestricted principal refused")
	}
}

// TestDenyPlaceholders: a deny whose placeholder has a usable value denies that value's topics; one
// without is widened rather than dropped, so a strange identity never gains access.
func TestDenyPlaceholders(t *testing.T) { eachMatcher(t, testDenyPlaceholders) }

func testDenyPlaceholders(t *testing.T) {
	gs := mustGrants(t, "publish:#", "deny:publish:users/%u/private/#", "deny:subscribe:%c/#", "subscribe:#")
	p, _ := NewPrincipal("alice", "dev1", gs)
	for tp, want := range map[string]bool{
		"users/alice/private/x": false, "users/bob/private/x": true, "users/alice/public": true,
	} {
		if got := p.Allow(Publish, tp); got != want {
			t.Errorf("alice: Allow(publish, %q) = %v, want %v", tp, got, want)
		}
	}
	if p.AllowFilter(Subscribe, "dev1/#") || !p.AllowFilter(Subscribe, "dev2/#") {
		t.Errorf("alice: the %%c deny not applied to its client id only")
	}
	for _, bad := range []string{"", "a/b", "+", "#"} {
		p, _ := NewPrincipal(bad, bad, gs)
		// users/%u/... widens to users/#; %c in the first level denies the action everywhere.
		if p.Allow(Publish, "users/bob/private/x") || p.Allow(Publish, "users") || !p.Allow(Publish, "other") {
			t.Errorf("identity %q: publish deny not widened to users/#", bad)
		}
		if p.AllowFilter(Subscribe, "x") || p.Allow(Subscribe, "$SYS/x") {
			t.Errorf("client id %q: subscribe deny in the first level not widened to everything", bad)
		}
		var denies []string
		for _, g := range p.Grants() {
			if g.Deny {
				denies = append(denies, g.String())
			}
		}
		if want := []string{"deny:publish:users/#", "deny:subscribe:#"}; !slices.Equal(denies, want) {
			t.Errorf("identity %q: denies listed as %q, want %q", bad, denies, want)
		}
	}
}

// TestDenyAgainstOracle cross-checks Allow and AllowFilter with allows and denies drawn at random
// against topic.Match: Allow is "no deny matches and some allow does"; AllowFilter is "not every
// topic of the filter is denied, and every one is allowed".
func TestDenyAgainstOracle(t *testing.T) { eachMatcher(t, testDenyAgainstOracle) }

func testDenyAgainstOracle(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	topics := allTopics(5)
	iters := 300
	if testing.Short() {
		iters = 40
	}
	anyMatch := func(fs []string, tp string) bool {
		return slices.ContainsFunc(fs, func(f string) bool { return topic.Match(f, tp) })
	}
	for it := range iters {
		var allow, deny []string
		var gs []Grant
		for range 1 + r.IntN(4) {
			f := randomFilter(r, true)
			allow = append(allow, f)
			gs = append(gs, Grant{Action: Subscribe, Filter: f})
		}
		for range 1 + r.IntN(3) {
			f := randomFilter(r, true)
			deny = append(deny, f)
			gs = append(gs, Grant{Action: Subscribe, Filter: f, Deny: true})
		}
		p, err := NewPrincipal("u", "c", gs)
		if err != nil {
			t.Fatal(err)
		}
		for _, tp := range topics {
			want := tp != "" && !anyMatch(deny, tp) && anyMatch(allow, tp)
			if got := p.Allow(Subscribe, tp); got != want {
				t.Fatalf("iter %d allow %q deny %q: Allow(%q) = %v, want %v", it, allow, deny, tp, got, want)
			}
		}
		for range 20 {
			f := randomFilter(r, true)
			allAllowed, allDenied := true, true
			for _, tp := range topics {
				if tp == "" || !topic.Match(f, tp) {
					continue
				}
				allAllowed = allAllowed && anyMatch(allow, tp)
				allDenied = allDenied && anyMatch(deny, tp)
			}
			if got, want := p.AllowFilter(Subscribe, f), allAllowed && !allDenied; got != want {
				t.Fatalf("iter %d allow %q deny %q: AllowFilter(%q) = %v, want %v", it, allow, deny, f, got, want)
			}
		}
	}
}

// TestDenyFromEverySource: denies in a user's grants, a group, default_grants and
// anonymous_grants all apply, and a superuser is not subject to them.
func TestDenyFromEverySource(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.DefaultGrants = mustGrants(t, "deny:publish:default/#")
		c.AllowAnonymous = true
		c.AnonymousGrants = mustGrants(t, "subscribe:public/#", "deny:subscribe:public/staff/#")
		c.SuperGroup = "root"
	})
	if err := e.a.PutGroup(Group{Name: "team", Grants: mustGrants(t, "deny:publish:team/locked")}); err != nil {
		t.Fatal(err)
	}
	e.addUser(t, "alice", "pw", []string{"team"}, "publish:#", "deny:publish:own/#")
	e.addUser(t, "boss", "pw", []string{"root"}, "deny:publish:own/#")
	p, err := e.login("alice", "pw")
	if err != nil {
		t.Fatal(err)
	}
	for tp, want := range map[string]bool{"own/x": false, "team/locked": false, "default/x": false, "team/open": true} {
		if got := p.Allow(Publish, tp); got != want {
			t.Errorf("alice: Allow(publish, %q) = %v, want %v", tp, got, want)
		}
	}
	anon, err := e.auth(Credentials{ClientID: "anon"})
	if err != nil {
		t.Fatal(err)
	}
	if !anon.AllowFilter(Subscribe, "public/#") || anon.AllowFilter(Subscribe, "public/staff/#") {
		t.Error("anonymous deny not applied")
	}
	boss, err := e.login("boss", "pw")
	if err != nil || !boss.Allow(Publish, "own/x") || !boss.Allow(Publish, "default/x") {
		t.Errorf("superuser held to a deny: %v", err)
	}
}

// TestDenyGrantsEdit: a deny and the allow of the same action and filter are different grants.
func TestDenyGrantsEdit(t *testing.T) {
	e := newEnv(t, nil)
	e.addUser(t, "alice", "pw", nil, "subscribe:x")
	got, err := e.a.EditGrants(true, "alice", mustGrants(t, "deny:subscribe:x"), true)
	if err != nil || len(got) != 2 {
		t.Fatalf("adding a deny: %v, %v", got, err)
	}
	got, err = e.a.EditGrants(true, "alice", mustGrants(t, "subscribe:x"), false)
	if err != nil || len(got) != 1 || !got[0].Deny {
		t.Fatalf("removing the allow kept %v, %v", got, err)
	}
}

// TestTokenKeepsUserDenies: a token's allows are checked against its user's grants, denies
// included, and at each use the user's denies of the moment are added, so a token never reaches
// what its user is denied.
func TestTokenKeepsUserDenies(t *testing.T) {
	e := newEnv(t, nil)
	e.addUser(t, "alice", "pw", nil, "subscribe:#", "deny:subscribe:secret/#", "publish:a/#")
	if _, _, err := e.a.CreateToken("alice", mustGrants(t, "subscribe:secret/x"), 0); err == nil {
		t.Fatal("a token was granted what its user is denied")
	}
	// A deny in a token only narrows it: accepted whatever the user has.
	tok, _, err := e.a.CreateToken("alice", mustGrants(t, "subscribe:#", "deny:publish:a/b", "publish:a/#"), 0)
	if err != nil {
		t.Fatal(err)
	}
	p, err := e.auth(Credentials{Token: tok})
	if err != nil {
		t.Fatal(err)
	}
	if !p.AllowFilter(Subscribe, "#") || p.AllowFilter(Subscribe, "secret/x") || p.Allow(Publish, "a/b") || !p.Allow(Publish, "a/c") {
		t.Fatalf("token principal: grants %v", p.Grants())
	}
	// A deny added to the user later reaches the token too.
	if _, err := e.a.EditGrants(true, "alice", mustGrants(t, "deny:subscribe:late"), true); err != nil {
		t.Fatal(err)
	}
	if p, err = e.auth(Credentials{Token: tok}); err != nil || p.AllowFilter(Subscribe, "late") {
		t.Fatalf("the user's new deny did not reach the token: %v", err)
	}
}

func TestDecodeAnswerDeny(t *testing.T) {
	d, bad, err := decodeAnswer([]byte(`{"result":"allow","grants":[{"action":"subscribe","filter":"#"},
		{"action":"subscribe","filter":"test/nosubscribe","deny":true},"deny:publish:x/#","publish:x/#",
		"fly:x",{"action":"fly","filter":"y"}]}`), 0, 0)
	want := mustGrants(t, "subscribe:#", "deny:subscribe:test/nosubscribe", "deny:publish:x/#", "publish:x/#")
	if err != nil || !slices.Equal(d.grants, want) || !slices.Equal(bad, []string{"fly:x", "fly:y"}) {
		t.Fatalf("decode = %v, bad %q, %v", d.grants, bad, err)
	}
	// A deny that cannot be read refuses the whole answer: leaving it out would allow more.
	for _, g := range []string{`"deny:fly:x"`, `"deny:publish:a/#/b"`, `{"action":"fly","filter":"x","deny":true}`,
		`{"action":"publish","filter":"","deny":true}`, `{"action":"publish","filter":"a","deny":"yes"}`, `5`} {
		if _, _, err := decodeAnswer([]byte(`{"result":"allow","grants":[`+g+`]}`), 0, 0); err == nil {
			t.Errorf("grant %s: answer accepted", g)
		}
	}
}

// TestURLDenyGrants: the URL's deny grants reach the principal, and an answer with a bad deny
// refuses the client as unavailable.
func TestURLDenyGrants(t *testing.T) {
	srv := newAuthServer(t, jsonAnswer(`{"result":"allow","grants":["subscribe:#","deny:subscribe:test/nosubscribe"]}`))
	e := urlEnv(t, srv, nil)
	p, err := e.auth(Credentials{Username: "u", Password: []byte("pw")})
	if err != nil {
		t.Fatal(err)
	}
	if !p.AllowFilter(Subscribe, "#") || p.AllowFilter(Subscribe, "test/nosubscribe") {
		t.Fatalf("URL grants %v", p.Grants())
	}
	srv.answer = jsonAnswer(`{"result":"allow","grants":["subscribe:#","deny:subscribe:a/#/b"]}`)
	if _, err := e.auth(Credentials{Username: "v", Password: []byte("pw")}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("bad deny from the URL: %v", err)
	}
}
