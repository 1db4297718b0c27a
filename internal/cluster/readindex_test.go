package cluster

import (
	"testing"

	"github.com/hashicorp/raft"
)

// The leader's read index names the last command at or before its commit index, stepping over
// raft's own entries (the no-op a new leader appends at the start of its term), so a reader's
// wait for it ends; after a change of leader every node syncs through the new one and then sees
// a record written before the change.
func TestReadIndexAcrossALeaderChange(t *testing.T) {
	tc := newTCluster(t)
	n1, n2, n3 := tc.three()
	eventually(t, "n1 leads", n1.IsLeader)
	if err := n1.Records().Put("r", "k", []byte("before")); err != nil {
		t.Fatal(err)
	}
	if err := n1.r.LeadershipTransferToServer(raft.ServerID(n2.id), n2.raftAddr()).Error(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "n2 leads", n2.IsLeader)
	// n2's term begins with raft's no-op; once it is committed, the read index is a command.
	eventually(t, "n2 commits in its term", func() bool {
		var l raft.Log
		return n2.store.GetLog(n2.r.CommitIndex(), &l) == nil && l.Term == n2.r.CurrentTerm()
	})
	idx, err := n2.readIndex()
	if err != nil {
		t.Fatalf("read index on the new leader: %v", err)
	}
	ci := n2.r.CommitIndex()
	var l raft.Log
	if err := n2.store.GetLog(idx, &l); err != nil || (l.Type != raft.LogCommand && l.Type != raft.LogConfiguration) {
		t.Fatalf("read index %d (commit %d) is a %v entry, %v", idx, ci, l.Type, err)
	}
	for i := idx + 1; i <= ci; i++ {
		if err := n2.store.GetLog(i, &l); err == nil && (l.Type == raft.LogCommand || l.Type == raft.LogConfiguration) {
			t.Fatalf("read index %d skipped command %d (commit %d)", idx, i, ci)
		}
	}
	for _, n := range []*tnode{n1, n2, n3} {
		if err := n.Records().Sync(ctx(t)); err != nil {
			t.Fatalf("sync on %s: %v", n.id, err)
		}
		if v, ok, err := n.Records().Get("r", "k"); err != nil || !ok || string(v) != "before" {
			t.Fatalf("%s after its sync: %q %v %v", n.id, v, ok, err)
		}
	}
}
