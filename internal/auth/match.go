package auth

import (
	"encoding/binary"
	"slices"
	"strings"
)

// A principal's grants for one action are compiled in two steps. First a trie of filter levels
// (nnode) is built; it is a nondeterministic automaton, because a topic level can continue both at
// an exact child and at the '+' child. Walking it directly costs up to the number of grants. So the
// trie is then determinized (subset construction) into dstates, where every topic level is one map
// lookup: Allow costs O(depth) whatever the number of grants, and allocates nothing.
//
// Subset construction can in theory blow up (grants that put '+' and exact levels at many different
// positions). It is bounded by maxStates; past it the matcher keeps the trie and walks it by
// backtracking, still without allocating, at a cost bounded by the trie's size.

// nnode is one level of the grant trie.
type nnode struct {
	id       uint32
	children map[string]*nnode
	plus     *nnode
	end      bool // some grant's filter ends exactly here
	hash     bool // some grant "<here>/#" exists: this level and everything below it is granted
}

// trie builds the nnodes of one action.
type trie struct {
	root  *nnode
	count uint32
}

func newTrie() *trie {
	t := &trie{}
	t.root = t.node()
	return t
}

func (t *trie) node() *nnode {
	n := &nnode{id: t.count}
	t.count++
	return n
}

// add inserts a validated filter.
func (t *trie) add(filter string) {
	n := t.root
	for {
		level, rest, more := cut(filter)
		if level == "#" {
			n.hash = true
			return
		}
		var next *nnode
		if level == "+" {
			if n.plus == nil {
				n.plus = t.node()
			}
			next = n.plus
		} else {
			next = n.children[level]
			if next == nil {
				if n.children == nil {
					n.children = make(map[string]*nnode)
				}
				next = t.node()
				n.children[level] = next
			}
		}
		n = next
		if !more {
			n.end = true
			return
		}
		filter = rest
	}
}

// dstate is a deterministic state: the set of trie nodes a topic prefix reaches.
type dstate struct {
	// exact holds the levels some node of the set has as an exact child, when there are two or
	// more. Its target includes the '+' children too, so a lookup that hits needs nothing else.
	// Most states below the first levels have a single such level; it is kept in label and only
	// instead, which saves the table's memory and, on lookup, the search.
	exact *dexact
	label string
	only  *dstate
	// otherwise is where any level not in exact goes: the union of the '+' children.
	otherwise *dstate
	accept    bool // a topic ending here is granted
	whole     bool // a '#' grant ends here: this topic and every one below it are granted
}

// dexact holds a state's exact transitions: a short list searched in order, or past
// maxExactList a map. A device's grants make states of two or three levels (its own tree, a
// broadcast tree), where a Go map took over 200 bytes of every authenticated connection.
type dexact struct {
	list []dedge
	m    map[string]*dstate
}

type dedge struct {
	level string
	to    *dstate
}

// maxExactList is the most transitions kept in a list; a string compare each beats hashing
// the level up to about this many.
const maxExactList = 8

func (x *dexact) get(level string) *dstate {
	if x.m != nil {
		return x.m[level]
	}
	for i := range x.list {
		if x.list[i].level == level {
			return x.list[i].to
		}
	}
	return nil
}

func (x *dexact) set(level string, to *dstate) {
	if x.m != nil {
		x.m[level] = to
		return
	}
	for i := range x.list {
		if x.list[i].level == level {
			x.list[i].to = to
			return
		}
	}
	if len(x.list) < maxExactList {
		x.list = append(x.list, dedge{level, to})
		return
	}
	x.m = make(map[string]*dstate, 2*maxExactList)
	for _, e := range x.list {
		x.m[e.level] = e.to
	}
	x.m[level] = to
	x.list = nil
}

// lookup returns the exact transition for level, or nil.
func (d *dstate) lookup(level string) *dstate {
	if d.exact != nil {
		return d.exact.get(level)
	}
	if d.only != nil && d.label == level {
		return d.only
	}
	return nil
}

// setExact adds an exact transition.
func (d *dstate) setExact(level string, to *dstate) {
	switch {
	case d.exact != nil:
		d.exact.set(level, to)
	case d.only == nil:
		d.label, d.only = level, to
	default:
		d.exact = &dexact{list: make([]dedge, 0, 2)}
		d.exact.set(d.label, d.only)
		d.exact.set(level, to)
		d.label, d.only = "", nil
	}
}

// matcher answers for one action. With no grants every field is nil and everything is refused.
type matcher struct {
	start *dstate // for topics not starting with '$'
	// dollar is the start for '$' topics: MQTT 4.7.2 says a filter beginning with a wildcard does
	// not match them, so only exact first levels lead anywhere (its otherwise is nil).
	dollar *dstate
	trie   *nnode // set instead of start/dollar when determinizing was too large
}

// maxStatesFor bounds the deterministic automaton relative to the trie it comes from, so a
// pathological grant list costs at most a constant factor more memory than the grants themselves.
func maxStatesFor(nodes uint32) int { return 8*int(nodes) + 4096 }

// compileFilters builds the matcher for a list of validated, expanded filters.
func compileFilters(filters []string) matcher { return compileLimited(filters, -1) }

// compileLimited is compileFilters with an explicit state limit (negative: the default), so tests
// can force the fallback.
func compileLimited(filters []string, limit int) matcher {
	if len(filters) == 0 {
		return matcher{}
	}
	t := newTrie()
	for _, f := range filters {
		t.add(f)
	}
	if limit < 0 {
		limit = maxStatesFor(t.count)
	}
	start, dollar, ok := determinize(t.root, limit)
	if !ok {
		return matcher{trie: t.root}
	}
	return matcher{start: start, dollar: dollar}
}

// nset is a set of trie nodes, kept sorted by id so that equal sets have equal keys.
type nset []*nnode

func (s nset) none() bool { return len(s) == 0 }

func (s nset) all() bool {
	for _, n := range s {
		if n.hash {
			return true
		}
	}
	return false
}

func (s nset) accepts() bool {
	for _, n := range s {
		if n.end || n.hash {
			return true
		}
	}
	return false
}

// next is the set a topic level reaches: the exact children named level and all '+' children.
func (s nset) next(level string) nset {
	var out nset
	for _, n := range s {
		if c := n.children[level]; c != nil {
			out = append(out, c)
		}
	}
	return append(out, s.other()...).sorted()
}

// other is the set any level without an exact child reaches.
func (s nset) other() nset {
	var out nset
	for _, n := range s {
		if n.plus != nil {
			out = append(out, n.plus)
		}
	}
	return out.sorted()
}

func (s nset) sorted() nset {
	slices.SortFunc(s, func(a, b *nnode) int { return int(a.id) - int(b.id) })
	return s
}

func (s nset) key() string {
	b := make([]byte, 4*len(s))
	for i, n := range s {
		binary.LittleEndian.PutUint32(b[4*i:], n.id)
	}
	return string(b)
}

// determinize runs the subset construction from root. ok is false when more than limit states
// would be needed.
func determinize(root *nnode, limit int) (start, dollar *dstate, ok bool) {
	type job struct {
		d   *dstate
		set nset
	}
	states := make(map[string]*dstate)
	var work []job
	get := func(s nset) *dstate {
		if len(s) == 0 {
			return nil
		}
		k := s.key()
		if d := states[k]; d != nil {
			return d
		}
		d := &dstate{}
		states[k] = d
		work = append(work, job{d, s})
		return d
	}
	start = get(nset{root})
	dollar = &dstate{}
	for level, c := range root.children {
		if strings.HasPrefix(level, "$") {
			dollar.setExact(level, get(nset{c}))
		}
	}
	for len(work) > 0 {
		if len(states) > limit {
			return nil, nil, false
		}
		j := work[len(work)-1]
		work = work[:len(work)-1]
		j.d.accept = j.set.accepts()
		if j.d.whole = j.set.all(); j.d.whole {
			// Everything below is granted: no transition will ever be looked at.
			continue
		}
		j.d.otherwise = get(j.set.other())
		for _, n := range j.set {
			for level := range n.children {
				if j.d.lookup(level) == nil { // never nil once set: the target holds children[level]
					j.d.setExact(level, get(j.set.next(level)))
				}
			}
		}
	}
	return start, dollar, true
}

// match reports whether a topic name (not empty, no wildcards) is granted.
func (m *matcher) match(topic string) bool {
	if topic == "" {
		return false
	}
	if m.start == nil {
		if m.trie != nil {
			return m.matchTrie(topic)
		}
		return false
	}
	s := m.start
	if topic[0] == '$' {
		s = m.dollar
	}
	for {
		if s.whole {
			return true
		}
		level, rest, more := cut(topic)
		n := s.lookup(level)
		if n == nil {
			n = s.otherwise
			if n == nil {
				return false
			}
		}
		s = n
		if !more {
			return s.accept
		}
		topic = rest
	}
}

// matchTrie is the fallback walk. A trie node at depth d is only ever reached with the topic's
// level d, so the backtracking visits each node at most once.
func (m *matcher) matchTrie(topic string) bool {
	if topic[0] == '$' {
		level, rest, more := cut(topic)
		c := m.trie.children[level]
		return c != nil && walkTrie(c, rest, more)
	}
	return walkTrie(m.trie, topic, true)
}

// walkTrie continues at n; pending says whether topic still holds a level to consume.
func walkTrie(n *nnode, topic string, pending bool) bool {
	if n.hash {
		return true
	}
	if !pending {
		return n.end
	}
	level, rest, more := cut(topic)
	if c := n.children[level]; c != nil && walkTrie(c, rest, more) {
		return true
	}
	return n.plus != nil && walkTrie(n.plus, rest, more)
}

// coverState is what coversFilter needs from a state, so that the deterministic states and the
// fallback's node sets share one algorithm.
type coverState[S any] interface {
	none() bool
	all() bool
	accepts() bool
	next(level string) S
	other() S
}

func (d *dstate) none() bool     { return d == nil }
func (d *dstate) all() bool      { return d.whole }
func (d *dstate) accepts() bool  { return d.accept }
func (d *dstate) other() *dstate { return d.otherwise }
func (d *dstate) next(level string) *dstate {
	if n := d.lookup(level); n != nil {
		return n
	}
	return d.otherwise
}

func (m *matcher) empty() bool         { return m.start == nil && m.trie == nil }
func (m *matcher) deterministic() bool { return m.start != nil }

// coversFilter reports whether every topic that the rest of a filter (at least one level) can
// match, continuing from s, is granted.
//
// A '+' level can take any value. The state for a value with an exact transition holds a superset
// of the nodes of the "other" state (the '+' children are in both), and acceptance only grows with
// more nodes; some value never has an exact transition. So a '+' is covered exactly when the other
// state covers the rest. A '#' level likewise: the current topic must be granted and, level by
// level, so must everything reached through other, until a state grants all below.
//
// root says that s is the start state, where no topic has been consumed yet.
func coversFilter[S coverState[S]](s S, filter string, root bool) bool {
	for ; ; root = false {
		if s.none() {
			return false
		}
		if s.all() {
			return true
		}
		level, rest, more := cut(filter)
		switch level {
		case "#":
			if root {
				// A leading '#' matches every topic, but there is no empty topic above it to
				// require.
				s = s.other()
			}
			for !s.none() {
				if s.all() {
					return true
				}
				if !s.accepts() {
					return false
				}
				s = s.other()
			}
			return false
		case "+":
			s = s.other()
		default:
			s = s.next(level)
		}
		if !more {
			return !s.none() && s.accepts()
		}
		filter = rest
	}
}

// covers reports whether every topic the filter (not empty, validated) matches is granted.
func (m *matcher) covers(filter string) bool {
	if m.empty() || filter == "" {
		return false
	}
	dollar := filter[0] == '$'
	if m.deterministic() {
		if !dollar {
			return coversFilter(m.start, filter, true)
		}
		level, rest, more := cut(filter)
		s := m.dollar.lookup(level)
		if !more {
			return s != nil && s.accept
		}
		return coversFilter(s, rest, false)
	}
	if !dollar {
		return coversFilter(nset{m.trie}, filter, true)
	}
	level, rest, more := cut(filter)
	c := m.trie.children[level]
	if c == nil {
		return false
	}
	if !more {
		return c.end || c.hash
	}
	return coversFilter(nset{c}, rest, false)
}

// cut splits off the first level of s; more reports whether a '/' (and so another level, possibly
// empty) follows.
func cut(s string) (level, rest string, more bool) {
	if i := strings.IndexByte(s, '/'); i >= 0 {
		return s[:i], s[i+1:], true
	}
	return s, "", false
}
