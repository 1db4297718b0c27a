package auth

import "github.com/ternmq/tern/internal/topic"

// A principal with a few grants, as a device has (its own tree to publish and subscribe in, a
// broadcast tree), is matched by walking its grant list instead of through compiled automata.
// The automata of a device's four grants took about 800 bytes for the connection's life, and
// compiling them 15 µs and 17 KB of garbage at every connect; the walk keeps nothing beyond
// the grants and costs a topic.Match per grant of the action. Past maxListed grants the
// automata's cost per topic level, whatever the number of grants, wins (match.go).

// maxListed is the most grants a principal walks; a variable so that tests can run the
// automata on principals of every size too.
var maxListed = 8

// allowListed is Allow for a listed principal: no deny grant of a matches name, and some allow
// grant does.
func (c *acl) allowListed(a Action, name string) bool {
	allowed := false
	for i := range c.grants {
		g := &c.grants[i]
		if g.Action != a || (allowed && !g.Deny) || !topic.Match(g.Filter, name) {
			continue
		}
		if g.Deny {
			return false
		}
		allowed = true
	}
	return allowed
}

// coversListed reports whether a listed principal's allow (or, with deny, deny) grants of a
// together cover every topic filter matches. Nearly always one grant covers it alone or none
// meets it at all; only when several meet it and none covers it alone ("a" and "a/+/#" together
// cover "a/#") are they compiled, for this answer only.
func (c *acl) coversListed(a Action, filter string, deny bool) bool {
	meeting := 0
	for i := range c.grants {
		g := &c.grants[i]
		if g.Action != a || g.Deny != deny || !overlaps(g.Filter, filter) {
			continue
		}
		if subsumes(g.Filter, filter) {
			return true
		}
		meeting++
	}
	if meeting < 2 {
		return false
	}
	var fs []string
	for _, g := range c.grants {
		if g.Action == a && g.Deny == deny {
			fs = append(fs, g.Filter)
		}
	}
	m := compileFilters(fs)
	return m.covers(filter)
}

// subsumes reports whether every topic name filter f matches is matched by filter g (both
// validated, not shared). It is exact: covers of a matcher compiled from g alone answers the same
// (FuzzMatcher checks it).
func subsumes(g, f string) bool {
	if f == "#" {
		// Every topic has a level, so "#" matches what "+/#" does; the rule below for a '#'
		// needs the parent level to exist.
		f = "+/#"
	}
	if dollarRule(g, f) {
		return false
	}
	for {
		gl, grest, gmore := cut(g)
		fl, frest, fmore := cut(f)
		switch {
		case gl == "#":
			return true // everything from here on, the parent level included
		case fl == "#":
			return false // f matches the parent level and deeper; g is not a '#' here
		case gl == "+":
		case fl == "+" || fl != gl:
			return false
		}
		switch {
		case !fmore && !gmore:
			return true
		case !fmore:
			return grest == "#" // f ends here; g must too, or match the parent through '#'
		case !gmore:
			return false // f goes deeper (or, with a '#', includes deeper topics)
		}
		g, f = grest, frest
	}
}

// overlaps reports whether some topic name is matched by both filters (validated, not shared).
func overlaps(g, f string) bool {
	if dollarRule(g, f) || dollarRule(f, g) {
		return false
	}
	for {
		gl, grest, gmore := cut(g)
		fl, frest, fmore := cut(f)
		if gl == "#" || fl == "#" {
			return true
		}
		if gl != "+" && fl != "+" && gl != fl {
			return false
		}
		switch {
		case !fmore && !gmore:
			return true
		case !fmore:
			return grest == "#"
		case !gmore:
			return frest == "#"
		}
		g, f = grest, frest
	}
}

// dollarRule reports whether g, beginning with a wildcard, cannot match any topic f matches
// because all of them begin with a '$' level (MQTT 4.7.2).
func dollarRule(g, f string) bool {
	return (g[0] == '+' || g[0] == '#') && f[0] == '$'
}
