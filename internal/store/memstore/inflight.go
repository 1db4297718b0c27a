package memstore

import (
	"slices"

	"github.com/ternmq/tern/internal/store"
)

// Inflight is an in-memory store.Inflight. The core keeps its own window in memory; this copy
// exists so that tests can restart a core on the same memory store and see what a disk store
// would have kept.
type Inflight struct {
	entries  []store.InflightEntry
	incoming []uint16
}

// Put implements store.Inflight.
func (f *Inflight) Put(e store.InflightEntry) error {
	for i := range f.entries {
		if f.entries[i].PacketID == e.PacketID {
			f.entries[i] = e
			return nil
		}
	}
	f.entries = append(f.entries, e)
	return nil
}

// Delete implements store.Inflight.
func (f *Inflight) Delete(pid uint16) error {
	f.entries = slices.DeleteFunc(f.entries, func(e store.InflightEntry) bool { return e.PacketID == pid })
	return nil
}

// All implements store.Inflight.
func (f *Inflight) All() ([]store.InflightEntry, error) { return slices.Clone(f.entries), nil }

// AddIncoming implements store.Inflight.
func (f *Inflight) AddIncoming(pid uint16) error {
	if !slices.Contains(f.incoming, pid) {
		f.incoming = append(f.incoming, pid)
	}
	return nil
}

// DeleteIncoming implements store.Inflight.
func (f *Inflight) DeleteIncoming(pid uint16) error {
	f.incoming = slices.DeleteFunc(f.incoming, func(p uint16) bool { return p == pid })
	return nil
}

// Incoming implements store.Inflight.
func (f *Inflight) Incoming() ([]uint16, error) { return slices.Clone(f.incoming), nil }
