package broker

import (
	"slices"
	"strings"
	"sync"

	"github.com/ternmq/tern/internal/topic"
)

// interest keeps which filters this broker's sessions subscribe to, connected or not, so that an
// uplink can subscribe upstream to their union (see internal/uplink). The sessions that link
// routers ($uplink/..., $route/...) do not count: their filters are the links' own business, and
// counting them would echo a link's interest back to it.
//
// Only uplinks and the cluster ask for it. A broker with neither (Config.NoInterest) keeps none:
// with a million distinct filters that is a million map entries, and every subscription change
// paid a map update that nobody read.
type interest struct {
	off bool // Config.NoInterest; set by New, never changed
	mu  sync.Mutex
	// full counts the filters as subscribed, $share/<group>/ included (the cluster's interest:
	// a shared group must be told apart from a plain subscription there); a plain filter's key is
	// its path.
	full map[string]int
	// shared counts the shared subscriptions by path (no $share prefix); nil until there is one.
	// A path is in Interest while full[path] + shared[path] > 0: a plain filter, which nearly every
	// subscription is, is counted once, not in two maps with the same key (about 43 bytes per
	// distinct filter, for every idle device subscribed to a topic of its own).
	shared   map[string]int
	watchers []func()
}

// linkSession reports whether a client id belongs to a router link or a cluster node link.
func linkSession(clientID string) bool {
	return strings.HasPrefix(clientID, "$uplink/") || strings.HasPrefix(clientID, "$route/") ||
		strings.HasPrefix(clientID, NodeClientPrefix)
}

// NodeClientPrefix begins the client ids of sessions a cluster node keeps for its links to
// other nodes; their filters are not interest.
const NodeClientPrefix = "$node/"

// newIndex makes the core's topic index. It keeps the text of the filter each subscription
// keeps (subscription.Filter, which f's path is a substring of) rather than a copy: one string
// fewer per distinct filter.
func newIndex(cacheEntries int) *topic.Index[*Session, *subscription] {
	x := topic.NewIndex[*Session, *subscription](cacheEntries)
	x.ShareText()
	return x
}

// indexAdd puts a subscription in the index; added is true when the session did not have it,
// and f must be parsed from sub.Filter (see newIndex).
func (b *Broker) indexAdd(f topic.Filter, s *Session, sub *subscription, added bool) {
	b.index.Subscribe(f, s, sub)
	if added && !linkSession(s.id) {
		b.interest.change(f, 1)
	}
}

// indexRemove takes a subscription out of the index.
func (b *Broker) indexRemove(f topic.Filter, s *Session) {
	b.index.Unsubscribe(f, s)
	if !linkSession(s.id) {
		b.interest.change(f, -1)
	}
}

func (in *interest) change(f topic.Filter, d int) {
	if in.off {
		return
	}
	in.mu.Lock()
	if in.full == nil {
		in.full = map[string]int{}
	}
	// A path comes or goes only with one of its filters, so the filters' counts tell both.
	changed := bump(in.full, f.String(), d)
	if f.Shared() {
		if in.shared == nil {
			in.shared = map[string]int{}
		}
		bump(in.shared, f.Path, d)
	}
	watchers := in.watchers
	in.mu.Unlock()
	if changed {
		for _, w := range watchers {
			w()
		}
	}
}

// bump adds d to m[k], forgetting k at zero; it reports whether k came or went.
func bump(m map[string]int, k string, d int) bool {
	n := m[k] + d
	changed := n == 0 || m[k] == 0
	if n <= 0 {
		delete(m, k)
	} else {
		m[k] = n
	}
	return changed
}

// InterestFilters returns the distinct filters this broker's sessions subscribe to as they
// subscribed (shared ones with their $share/<group>/ prefix), sorted; links are left out.
func (b *Broker) InterestFilters() []string {
	in := b.trackedInterest()
	in.mu.Lock()
	defer in.mu.Unlock()
	out := make([]string, 0, len(in.full))
	for f := range in.full {
		out = append(out, f)
	}
	slices.Sort(out)
	return out
}

// Interest returns the distinct filters this broker's sessions subscribe to (shared ones without
// their $share prefix), sorted; router links are left out.
func (b *Broker) Interest() []string {
	in := b.trackedInterest()
	in.mu.Lock()
	defer in.mu.Unlock()
	out := make([]string, 0, len(in.full)+len(in.shared))
	for f := range in.full {
		// A plain filter never starts with the prefix: ParseFilter would have made it shared.
		if !strings.HasPrefix(f, "$share/") {
			out = append(out, f)
		}
	}
	for path := range in.shared {
		if in.full[path] == 0 {
			out = append(out, path)
		}
	}
	slices.Sort(out)
	return out
}

// WatchInterest calls fn whenever a filter joins or leaves Interest. fn may be called with
// session locks held: it must neither block nor call the core (signal a goroutine instead).
func (b *Broker) WatchInterest(fn func()) {
	b.trackedInterest()
	b.interest.mu.Lock()
	b.interest.watchers = append(b.interest.watchers, fn)
	b.interest.mu.Unlock()
}

// trackedInterest is the broker's interest; asking a broker made with Config.NoInterest is a
// wiring mistake (an uplink or a cluster link on a broker told nothing would ask), caught at
// start-up, where those links are made.
func (b *Broker) trackedInterest() *interest {
	if b.interest.off {
		panic("broker: interest asked of a broker made with Config.NoInterest")
	}
	return &b.interest
}
