package memstore

import (
	"slices"
	"strings"
	"sync"
)

// Records is a store.Records in memory.
type Records struct {
	mu sync.RWMutex
	ns map[string]map[string][]byte
}

// NewRecords returns an empty Records.
func NewRecords() *Records { return &Records{ns: make(map[string]map[string][]byte)} }

// Get implements store.Records.
func (m *Records) Get(ns, key string) ([]byte, bool, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	v, ok := m.ns[ns][key]
	return slices.Clone(v), ok, nil
}

// Put implements store.Records.
func (m *Records) Put(ns, key string, value []byte) error {
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

// Delete implements store.Records.
func (m *Records) Delete(ns, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.ns[ns], key)
	return nil
}

// Scan implements store.Records. It visits a snapshot taken when it starts, so fn may write.
func (m *Records) Scan(ns string, fn func(key string, value []byte) error) error {
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
