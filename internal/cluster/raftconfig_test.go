package cluster

import (
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// A follower learns that an entry is committed only from the leader's next AppendEntries, which
// an idle leader sends after CommitTimeout (staggered up to twice that). Every write a follower
// forwards and then waits to apply itself (a session claim at CONNECT, a record) pays that wait,
// so it must stay a small part of a CONNACK; raft's default of 50 ms made a persistent CONNECT
// on a follower take ~80 ms against ~6 ms on the leader (docs/decisions.md). The election
// timing, sized for a loaded machine, must not move with it.
func TestRaftConfigCommitsPromptly(t *testing.T) {
	rc := raftConfig("n1")
	if err := raft.ValidateConfig(rc); err != nil {
		t.Fatalf("raft refuses the configuration: %v", err)
	}
	const budget = 20 * time.Millisecond // the longest a follower may wait to learn a commit
	if worst := 2 * rc.CommitTimeout; worst > budget {
		t.Errorf("CommitTimeout %s: a forwarded write may wait %s for its apply on the follower, more than %s", rc.CommitTimeout, worst, budget)
	}
	if rc.HeartbeatTimeout != time.Second || rc.ElectionTimeout != 2500*time.Millisecond || rc.LeaderLeaseTimeout != time.Second {
		t.Errorf("election timing changed: heartbeat %s, election %s, lease %s", rc.HeartbeatTimeout, rc.ElectionTimeout, rc.LeaderLeaseTimeout)
	}
	if !rc.BatchApplyCh || !rc.NoSnapshotRestoreOnStart || rc.LocalID != "n1" {
		t.Errorf("raftConfig lost a setting: %+v", rc)
	}
}
