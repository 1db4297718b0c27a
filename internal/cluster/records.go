package cluster

import (
	"context"
	"errors"

	"github.com/cockroachdb/pebble/v2"

	"github.com/ternmq/tern/internal/store"
)

// Records is a store.Records whose writes go through the cluster's log and apply on every node,
// and whose reads are this node's copy. auth keeps users, groups and tokens in it unchanged: a
// user added on any node logs in on every node.
//
// Put and Delete return once the write is committed (on a majority of the nodes' disks) and
// applied here, so a read after a write on the same node sees it. Without a leader (a minority
// partition, an election under way) they wait up to writeTimeout and fail with ErrNoLeader:
// nothing that could not be committed is reported done.
type Records struct {
	n *Node
}

var _ store.Records = Records{}

// Records returns the replicated records. Reads work before Start, on the state this node has.
func (n *Node) Records() Records { return Records{n: n} }

// Get implements store.Records.
func (r Records) Get(ns, key string) ([]byte, bool, error) {
	v, closer, err := r.n.db.Get(recordKey(ns, key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	defer closer.Close()
	return append([]byte{}, v...), true, nil
}

// Scan implements store.Records. It reads the namespace first and calls fn after, so fn may
// write.
func (r Records) Scan(ns string, fn func(key string, value []byte) error) error {
	prefix := recordPrefix(ns)
	it, err := r.n.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return err
	}
	var keys []string
	var vals [][]byte
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		keys = append(keys, string(k[len(prefix):]))
		vals = append(vals, append([]byte{}, it.Value()...))
	}
	if err := it.Close(); err != nil {
		return err
	}
	for i, k := range keys {
		if err := fn(k, vals[i]); err != nil {
			return err
		}
	}
	return nil
}

// Sync returns once this node has applied every write committed anywhere before the call, so a
// read of its records after Sync sees them: a follower's copy may lag a write made through
// another node (a message removed there, a reply given), and a reader that acts on what it read
// must not act on that. It waits for the leader's read index (readindex.go), bounded by the
// write timeout; without a leader it fails with ErrNoLeader, as a write does.
func (r Records) Sync(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, r.n.cfg.WriteTimeout)
	defer cancel()
	return r.n.Sync(ctx)
}

// Put implements store.Records.
func (r Records) Put(ns, key string, value []byte) error {
	return r.write(encodePut(ns, key, value))
}

// Delete implements store.Records.
func (r Records) Delete(ns, key string) error {
	return r.write(encodeDelete(ns, key))
}

func (r Records) write(cmd []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), r.n.cfg.WriteTimeout)
	defer cancel()
	_, err := r.n.Write(ctx, cmd)
	return err
}

// prefixEnd is the first key after every key that begins with p.
func prefixEnd(p []byte) []byte {
	end := append([]byte{}, p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}
