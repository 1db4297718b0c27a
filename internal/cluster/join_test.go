package cluster

import "testing"

// A node may name any member in Join, not only the leader: a follower answers with the
// leader's address and the joiner asks there. The follower used to close the connection before
// its answer was written, so the joiner saw EOF until its join timeout.
func TestJoinThroughAFollower(t *testing.T) {
	tc := newTCluster(t)
	n1 := tc.add("n1", nil, "")
	n2 := tc.add("n2", n1, "")
	if n2.IsLeader() {
		t.Fatal("n2 should be a follower")
	}
	n3 := tc.add("n3", n2, "")
	eventually(t, "n3 a member on n1", func() bool { return n1.isMember("n3") })
	if !n3.isMember("n3") {
		t.Fatal("n3 does not see itself as a member")
	}
}
