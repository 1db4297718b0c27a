package auth

import (
	"errors"

	"github.com/ternmq/tern/internal/store/memstore"
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

// NewMemStore returns an empty Store in memory, for tests and for a broker run without a data
// directory.
func NewMemStore() Store { return memstore.NewRecords() }
