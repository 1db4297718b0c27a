package auth

import (
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// The back-off table, the external decision cache and the verified-password cache are bounded
// LRUs: their keys come from clients, so without a bound a stream of new addresses or credentials
// would grow them without limit. They use golang-lru's simplelru, which is not safe for
// concurrent use: each owner already holds its own lock around a get-then-put.
//
// Expiry is kept in the values and compared with the Authenticator's clock rather than left to
// golang-lru's expirable cache: that one reads the wall clock (Config.Clock would no longer
// govern expiry, and tests could not move time), has one TTL per cache where the URL's answers
// carry their own, and starts a goroutine per cache that never ends.

// newLRU returns an LRU of at most size entries (at least one).
func newLRU[V any](size int) *simplelru.LRU[string, V] {
	l, err := simplelru.NewLRU[string, V](max(size, 1), nil)
	if err != nil {
		panic(err) // only for a size below one, excluded above
	}
	return l
}

// verifiedCache remembers keys for a while, in a bounded LRU.
type verifiedCache struct {
	ttl time.Duration
	mu  sync.Mutex
	tab *simplelru.LRU[string, time.Time] // key -> until when it counts as verified
}

func newVerifiedCache(ttl time.Duration, max int) *verifiedCache {
	if ttl == 0 {
		ttl = time.Minute
	}
	return &verifiedCache{ttl: ttl, tab: newLRU[time.Time](max)}
}

func (v *verifiedCache) add(key string, now time.Time) {
	if v.ttl < 0 {
		return
	}
	v.mu.Lock()
	v.tab.Add(key, now.Add(v.ttl))
	v.mu.Unlock()
}

func (v *verifiedCache) recent(key string, now time.Time) bool {
	if v.ttl < 0 {
		return false
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	until, ok := v.tab.Get(key)
	if ok && now.After(until) {
		v.tab.Remove(key)
		return false
	}
	return ok
}
