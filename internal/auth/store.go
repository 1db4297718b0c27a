package auth

import (
	"errors"
	"slices"
	"strings"
	"sync"
)

// Store keeps users, groups and tokens as values under keys in a few namespaces. It is a plain
// key/value interface so that any durable store can back it; NewMemStore is the in-memory one.
// Values are opaque to the store (the package writes JSON).
//
// Implementations must be safe for concurrent use. A value passed to Put, or handed to Scan's fn,
// is not retained by the other side after the call returns.
type Store interface {
	// Get returns the value under key in namespace ns; ok is false when there is none.
	Get(ns, key string) (value []byte, ok bool, err error)
	// Put stores value under key, replacing any previous value.
	Put(ns, key string, value []byte) error
	// Delete removes key; deleting a missing key is not an error.
	Delete(ns, key string) error
	// Scan calls fn for every key of ns in ascending key order, stopping at fn's first error,
	// which it returns. fn may call the store's other methods; whether Scan sees their effects
	// is up to the implementation.
	Scan(ns string, fn func(key string, value []byte) error) error
}

// The namespaces the package uses.
const (
	nsUsers  = "users"
	nsGroups = "groups"
	nsTokens = "tokens"
)

// errStopScan ends a Scan early without being an error for the caller.
var errStopScan = errors.New("stop scan")

// MemStore is a Store in memory, for tests and for a broker run without a data directory.
type MemStore struct {
	mu sync.RWMutex
	ns map[string]map[string][]byte
}

// NewMemStore returns an empty MemStore.
func NewMemStore() *MemStore { return &MemStore{ns: make(map[string]map[string][]byte)} }

// Get implements Store.
func (m *MemStore) Get(ns, key string) ([]byte, bool, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	v, ok := m.ns[ns][key]
	return slices.Clone(v), ok, nil
}

// Put implements Store.
func (m *MemStore) Put(ns, key string, value []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.ns[ns]
	if t == nil {
		t = make(map[string][]byte)
		m.ns[ns] = t
	}
	// Copy, and keep a non-nil slice so that an empty value still reads back as present.
	t[key] = append([]byte{}, value...)
	return nil
}

// Delete implements Store.
func (m *MemStore) Delete(ns, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.ns[ns], key)
	return nil
}

// Scan implements Store. It visits a snapshot taken when it starts, so fn may write to the store.
func (m *MemStore) Scan(ns string, fn func(key string, value []byte) error) error {
	type kv struct {
		k string
		v []byte
	}
	m.mu.RLock()
	snap := make([]kv, 0, len(m.ns[ns]))
	for k, v := range m.ns[ns] {
		snap = append(snap, kv{k, v})
	}
	m.mu.RUnlock()
	slices.SortFunc(snap, func(a, b kv) int { return strings.Compare(a.k, b.k) })
	for _, e := range snap {
		if err := fn(e.k, slices.Clone(e.v)); err != nil {
			return err
		}
	}
	return nil
}
