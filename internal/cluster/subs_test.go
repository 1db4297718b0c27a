package cluster

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2"

	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/store"
)

// replicaSubs reads a session's subscriptions from a node's replica, ordered by filter, and
// fails if its record still carries any.
func replicaSubs(t *testing.T, db *pebble.DB, client string) []string {
	t.Helper()
	v, closer, err := db.Get(recKey(client))
	if err != nil {
		t.Fatalf("record of %s: %v", client, err)
	}
	rec, err := decodeRecord(v)
	_ = closer.Close()
	if err != nil || len(rec.Subscriptions) != 0 {
		t.Fatalf("record of %s: %+v %v", client, rec, err)
	}
	pre := sessPrefix(prefixSub, client)
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: pre, UpperBound: prefixEnd(pre)})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for ok := it.First(); ok; ok = it.Next() {
		s, err := decodeSubOptions(string(it.Key()[len(pre):]), it.Value())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s:%d", s.Filter, s.QoS))
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	return out
}

// dirFilters is what a node's directory counts of a session's subscriptions.
func dirFilters(n *tnode, client string) []string {
	e, _ := n.fsm.dir.get(client)
	return slices.Sorted(slices.Values(e.filters))
}

// A subscribe or unsubscribe on the node holding a session reaches the other nodes' replicas as
// that change alone, and their directories count it; the session taken up elsewhere has them.
func TestSubscriptionChangesReplicated(t *testing.T) {
	_, n1, n2, n3 := brokerCluster(t)
	c1, _, _ := mustConn(t, n1, persistent("s"))
	if r := c1.Subscribe([]broker.SubscribeRequest{{Filter: "a/#", QoS: 1}, {Filter: "b/#", QoS: 2}}); r[0].Err != nil || r[1].Err != nil {
		t.Fatalf("subscribe: %+v", r)
	}
	synced(t, n1, n2, n3)
	if got := fmt.Sprint(replicaSubs(t, n2.fsm.db, "s")); got != "[a/#:1 b/#:2]" {
		t.Fatalf("follower's replica after the subscribe: %s", got)
	}
	if got := fmt.Sprint(dirFilters(n2, "s")); got != "[a/# b/#]" {
		t.Fatalf("follower's directory after the subscribe: %s", got)
	}
	// The same filter again replaces its options.
	sub(t, c1, "b/#")
	if got := c1.Unsubscribe([]string{"a/#", "never"}); !got[0] || got[1] {
		t.Fatalf("unsubscribe: %v", got)
	}
	synced(t, n1, n2, n3)
	if got := fmt.Sprint(replicaSubs(t, n2.fsm.db, "s")); got != "[b/#:1]" {
		t.Fatalf("follower's replica after the unsubscribe: %s", got)
	}
	if got := fmt.Sprint(dirFilters(n3, "s")); got != "[b/#]" {
		t.Fatalf("directory after the unsubscribe: %s", got)
	}
	// Taken up on another node, the session has what the changes left.
	c1.Disconnect(broker.DisconnectRequest{Graceful: true})
	_, k3, res := mustConn(t, n3, persistent("s"))
	if !res.SessionPresent {
		t.Fatal("session not present on the node it moved to")
	}
	pub, _, _ := mustConn(t, n2, broker.ConnectRequest{ClientID: "pub"})
	pubAcked(t, pub, "a/x", "gone")
	pubAcked(t, pub, "b/x", "kept")
	k3.waitPayloads(t, "kept")
}

// The state machine applies subscription ops to the replica and the directory's interest; an
// older node's record op replaces the whole set; records an older node left with their
// subscriptions are moved out when the directory loads.
func TestSubscriptionOpsApplied(t *testing.T) {
	f := memFSM(t)
	idx := uint64(0)
	apply := func(raw []byte) error {
		t.Helper()
		c, err := decodeCommand(raw)
		if err != nil {
			t.Fatal(err)
		}
		idx++
		return f.applySession(c, idx)
	}
	if err := apply(encodeClaim("c", "n1", 1, "", 0)); err != nil {
		t.Fatal(err)
	}
	epoch := idx
	ops := func(add func(b []byte) []byte) []byte { return add(appendStr([]byte{cmdOps}, "n1")) }
	subs := func(fs ...string) []store.Subscription {
		var out []store.Subscription
		for _, f := range fs {
			out = append(out, store.Subscription{Filter: f, QoS: 1})
		}
		return out
	}
	interest := func() string {
		f.dir.mu.Lock()
		defer f.dir.mu.Unlock()
		return fmt.Sprint(f.dir.counts["n1"])
	}
	// Subscriptions before the record are kept, and counted once the record comes.
	must(t, apply(ops(func(b []byte) []byte {
		return append(appendOpHead(b, opSubPut, "c", epoch), appendSubs(nil, subs("a", "b"))...)
	})))
	if got := interest(); got != "map[]" {
		t.Fatalf("interest without a record: %s", got)
	}
	must(t, apply(ops(func(b []byte) []byte {
		return appendBytes(appendOpHead(b, opRecordApart, "c", epoch), appendRecord(nil, store.SessionRecord{Expiry: 60}))
	})))
	must(t, apply(ops(func(b []byte) []byte {
		b = append(appendOpHead(b, opSubPut, "c", epoch), appendSubs(nil, subs("c", "a"))...)
		return append(appendOpHead(b, opSubDel, "c", epoch), appendStrs(nil, []string{"b", "missing"})...)
	})))
	if got := fmt.Sprint(replicaSubs(t, f.db, "c")); got != "[a:1 c:1]" {
		t.Fatalf("replica: %s", got)
	}
	if got := interest(); got != "map[a:1 c:1]" {
		t.Fatalf("interest: %s", got)
	}
	// An older node's record op: its subscriptions are the whole set.
	must(t, apply(ops(func(b []byte) []byte {
		return appendBytes(appendOpHead(b, opRecord, "c", epoch), appendRecord(nil, store.SessionRecord{Expiry: 60, Subscriptions: subs("d")}))
	})))
	if got := fmt.Sprint(replicaSubs(t, f.db, "c")); got != "[d:1]" {
		t.Fatalf("replica after an older node's record: %s", got)
	}
	if got := interest(); got != "map[d:1]" {
		t.Fatalf("interest after an older node's record: %s", got)
	}
	// A record with its subscriptions, as an older node's database or snapshot holds it.
	must(t, f.db.Set(recKey("c"), appendRecord(nil, store.SessionRecord{Expiry: 60, Subscriptions: subs("e", "d")}), pebble.Sync))
	must(t, f.dir.load(f.db))
	if got := fmt.Sprint(replicaSubs(t, f.db, "c")); got != "[d:1 e:1]" {
		t.Fatalf("replica after loading an older record: %s", got)
	}
	if got := interest(); got != "map[d:1 e:1]" {
		t.Fatalf("interest after loading an older record: %s", got)
	}
	// Deleting the session's state takes its subscriptions.
	must(t, apply(ops(func(b []byte) []byte { return appendOpHead(b, opDelete, "c", epoch) })))
	pre := sessPrefix(prefixSub, "c")
	it, err := f.db.NewIter(&pebble.IterOptions{LowerBound: pre, UpperBound: prefixEnd(pre)})
	must(t, err)
	if it.First() {
		t.Fatalf("subscription left after a delete: %q", it.Key())
	}
	must(t, it.Close())
	if _, _, err := f.db.Get(recKey("c")); !errors.Is(err, pebble.ErrNotFound) {
		t.Fatalf("record after a delete: %v", err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
