package auth

import (
	"sync"
	"time"
)

// lru is a bounded map that forgets its least recently used entry when full. Both the back-off
// table and the external decision cache use it: their keys come from clients, so without a bound
// a stream of new addresses or credentials would grow them without limit. Not safe for concurrent
// use; its owners lock.
type lru[V any] struct {
	max   int
	items map[string]*lruEntry[V]
	head  lruEntry[V] // sentinel of a circular list, most recent first
}

type lruEntry[V any] struct {
	key        string
	val        V
	prev, next *lruEntry[V]
}

func newLRU[V any](max int) *lru[V] {
	l := &lru[V]{max: max, items: make(map[string]*lruEntry[V])}
	l.head.prev, l.head.next = &l.head, &l.head
	return l
}

func (l *lru[V]) unlink(e *lruEntry[V]) {
	e.prev.next, e.next.prev = e.next, e.prev
}

func (l *lru[V]) pushFront(e *lruEntry[V]) {
	e.prev, e.next = &l.head, l.head.next
	l.head.next.prev = e
	l.head.next = e
}

// get returns the value and marks it recently used.
func (l *lru[V]) get(key string) (V, bool) {
	e := l.items[key]
	if e == nil {
		var zero V
		return zero, false
	}
	l.unlink(e)
	l.pushFront(e)
	return e.val, true
}

// put stores the value as the most recently used, evicting the least recently used if full.
func (l *lru[V]) put(key string, v V) {
	if e := l.items[key]; e != nil {
		e.val = v
		l.unlink(e)
		l.pushFront(e)
		return
	}
	if len(l.items) >= l.max {
		old := l.head.prev
		l.unlink(old)
		delete(l.items, old.key)
	}
	e := &lruEntry[V]{key: key, val: v}
	l.items[key] = e
	l.pushFront(e)
}

func (l *lru[V]) remove(key string) {
	if e := l.items[key]; e != nil {
		l.unlink(e)
		delete(l.items, key)
	}
}

func (l *lru[V]) len() int { return len(l.items) }

// verifiedCache remembers keys for a while, in a bounded LRU.
type verifiedCache struct {
	ttl time.Duration
	mu  sync.Mutex
	tab *lru[time.Time]
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
	v.tab.put(key, now.Add(v.ttl))
	v.mu.Unlock()
}

func (v *verifiedCache) recent(key string, now time.Time) bool {
	if v.ttl < 0 {
		return false
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	until, ok := v.tab.get(key)
	if ok && now.After(until) {
		v.tab.remove(key)
		return false
	}
	return ok
}
