package cluster

import (
	"fmt"
	"testing"
)

func member(st Status, id string) (Member, bool) {
	for _, m := range st.Members {
		if m.ID == id {
			return m, true
		}
	}
	return Member{}, false
}

// Status shows the members with the leader, the raft indexes, each member's applied index and
// lag behind this node's commit index, and the state of the link to it: caught up with links up
// while all run, and a stopped node's link down with its lag growing as the others commit.
func TestStatusShowsLagAndLinks(t *testing.T) {
	tc := newTCluster(t)
	n1, _, n3 := tc.three()
	eventually(t, "n1 leads", n1.IsLeader)
	if err := n1.Records().Put("users", "a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "every member caught up with its link up", func() bool {
		st := n1.Status()
		if st.Leader != "n1" || st.State != "leader" || len(st.Members) != 3 || st.CommitIndex == 0 ||
			st.AppliedIndex < st.CommitIndex || st.LastIndex < st.CommitIndex {
			return false
		}
		for _, m := range st.Members {
			want := "up"
			if m.ID == "n1" {
				want = "self"
			}
			if m.Link != want || m.Lag != 0 || !m.Voter || m.Leader != (m.ID == "n1") ||
				m.ID != "n1" && m.LastContact == "" {
				return false
			}
		}
		return true
	})
	tc.isolate(n3, false)
	if err := n3.Close(); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := n1.Records().Put("users", fmt.Sprint("b", i), []byte("1")); err != nil {
			t.Fatal(err)
		}
	}
	st := n1.Status()
	eventually(t, "n3's link down and its lag shown", func() bool {
		st = n1.Status()
		m, ok := member(st, "n3")
		return ok && m.Link == "down" && m.Lag >= 5 && m.AppliedIndex+m.Lag == st.CommitIndex
	})
	if m, _ := member(st, "n2"); m.Link != "up" {
		t.Fatalf("n2 as n1 sees it: %+v", m)
	}
}
