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
type interest struct {
	mu       sync.Mutex
	count    map[string]int // filter path (no $share prefix) -> sessions subscribed
	watchers []func()
}

// linkSession reports whether a client id belongs to a router link.
func linkSession(clientID string) bool {
	return strings.HasPrefix(clientID, "$uplink/") || strings.HasPrefix(clientID, "$route/")
}

// indexAdd puts a subscription in the index; added is true when the session did not have it.
func (b *Broker) indexAdd(f topic.Filter, s *Session, sub *subscription, added bool) {
	b.index.Subscribe(f, s, sub)
	if added && !linkSession(s.id) {
		b.interest.change(f.Path, 1)
	}
}

// indexRemove takes a subscription out of the index.
func (b *Broker) indexRemove(f topic.Filter, s *Session) {
	b.index.Unsubscribe(f, s)
	if !linkSession(s.id) {
		b.interest.change(f.Path, -1)
	}
}

func (in *interest) change(path string, d int) {
	in.mu.Lock()
	if in.count == nil {
		in.count = map[string]int{}
	}
	n := in.count[path] + d
	changed := n == 0 || in.count[path] == 0
	if n <= 0 {
		delete(in.count, path)
	} else {
		in.count[path] = n
	}
	watchers := in.watchers
	in.mu.Unlock()
	if changed {
		for _, w := range watchers {
			w()
		}
	}
}

// Interest returns the distinct filters this broker's sessions subscribe to (shared ones without
// their $share prefix), sorted; router links are left out.
func (b *Broker) Interest() []string {
	in := &b.interest
	in.mu.Lock()
	defer in.mu.Unlock()
	out := make([]string, 0, len(in.count))
	for f := range in.count {
		out = append(out, f)
	}
	slices.Sort(out)
	return out
}

// WatchInterest calls fn whenever a filter joins or leaves Interest. fn may be called with
// session locks held: it must neither block nor call the core (signal a goroutine instead).
func (b *Broker) WatchInterest(fn func()) {
	b.interest.mu.Lock()
	b.interest.watchers = append(b.interest.watchers, fn)
	b.interest.mu.Unlock()
}
