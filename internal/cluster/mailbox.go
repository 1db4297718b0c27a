package cluster

import (
	"context"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// cmdAppend adds a record whose key the log chooses: the 20-digit decimal of the entry's own
// index. Mailboxes use it for their messages: an id allocated by the log is unique and
// increasing cluster-wide without a read-modify-write of a counter that two nodes could race.
//
//	cmdAppend  str ns, bytes value
const cmdAppend = 10

func encodeAppend(ns string, value []byte) []byte {
	return appendBytes(appendStr([]byte{cmdAppend}, ns), value)
}

// AppendKey is the key Append stores a value under, for the id it returned.
func AppendKey(id uint64) string { return fmt.Sprintf("%020d", id) }

// applyAppend stores an appended record under its log index. Applying it again after a crash
// sets the same key to the same value.
func (f *fsm) applyAppend(c command, index uint64) error {
	if err := f.db.Set(recordKey(c.NS, AppendKey(index)), c.Value, pebble.NoSync); err != nil {
		return err
	}
	f.notify(c.NS)
	return nil
}

// Append stores value in ns under a key the log allocates (AppendKey of the returned id) and
// returns once it is committed and applied here; without a leader it fails with ErrNoLeader.
func (r Records) Append(ns string, value []byte) (uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), r.n.cfg.WriteTimeout)
	defer cancel()
	return r.n.Write(ctx, encodeAppend(ns, value))
}
