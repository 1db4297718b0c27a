package cluster

import (
	"bytes"
	"context"
	"errors"
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

// cmdSwap replaces a record only if it still holds the value the writer read, or deletes it
// (flag swapDelete) on the same condition; otherwise the apply answers errSwapLost and changes
// nothing. Mailboxes use it for a reply and a removal: their lock holds only one node's
// operations, and two nodes answering or removing one message at once must not both succeed.
//
//	cmdSwap  str ns, str key, bytes old, byte flags, bytes new
const cmdSwap = 11

const swapDelete = 1

// errSwapLost is the apply's answer to a swap whose record changed since it was read. A
// forwarded write's error crosses the link as its text (replyErr turns it back).
var errSwapLost = errors.New("cluster: the record changed since it was read")

func encodeSwap(ns, key string, old, value []byte, del bool) []byte {
	b := appendBytes(appendStr(appendStr([]byte{cmdSwap}, ns), key), old)
	var flags byte
	if del {
		flags, value = swapDelete, nil
	}
	return appendBytes(append(b, flags), value)
}

// applySwap applies a swap: every node holds the same record at the same index, so every node
// decides alike.
func (f *fsm) applySwap(c command) error {
	cur, closer, err := f.db.Get(recordKey(c.NS, c.Key))
	switch {
	case errors.Is(err, pebble.ErrNotFound):
		return errSwapLost
	case err != nil:
		return err
	}
	same := bytes.Equal(cur, c.Old)
	_ = closer.Close()
	if !same {
		return errSwapLost
	}
	if c.Flags&swapDelete != 0 {
		err = f.db.Delete(recordKey(c.NS, c.Key), pebble.NoSync)
	} else {
		err = f.db.Set(recordKey(c.NS, c.Key), c.Value, pebble.NoSync)
	}
	if err != nil {
		return err
	}
	f.notify(c.NS)
	return nil
}

// Swap replaces the record under key with value (or deletes it, with del) only if it still
// holds old, and reports whether it did; it returns once the swap is committed. A record that
// is gone counts as changed.
func (r Records) Swap(ns, key string, old, value []byte, del bool) (bool, error) {
	err := r.write(encodeSwap(ns, key, old, value, del))
	if errors.Is(err, errSwapLost) {
		return false, nil
	}
	return err == nil, err
}
