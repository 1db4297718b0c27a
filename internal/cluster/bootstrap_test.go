package cluster

import "testing"

// The bootstrap votes of three stateless nodes listed alike, where n1 cannot reach n2: n3 is
// asked by n2 first and votes n2 for good, so n1 (which also reaches a majority, itself and n3)
// is not elected, and n2 is. Without the fixed vote both would start a cluster.
func TestBootstrapVotesElectOne(t *testing.T) {
	join := []string{"a1", "a2", "a3"}
	var b1, b2, b3 bootState
	b1.init("n1", "a1", join)
	b2.init("n2", "a2", join)
	b3.init("n3", "a3", join)

	// n2 asks n3; n3 answers with its vote, fixed now that it heard of two of three.
	b2.answer("n2", noClusterError{node: "n3", vote: b3.hear("n2")})
	// n1 asks n3 next: the vote stays n2.
	b1.answer("n1", noClusterError{node: "n3", vote: b3.hear("n1")})
	// n1 and n2 cannot reach each other.
	b1.answer("n1", errRetry)
	b2.answer("n2", errRetry)

	if b1.elected("n1") {
		t.Fatal("n1 elected with only its own vote")
	}
	if !b2.elected("n2") {
		t.Fatal("n2 not elected with its own vote and n3's")
	}
	if b3.elected("n3") {
		t.Fatal("n3 elected")
	}
	if v := parseBootAnswer(bootAnswer("n3", "n2")); v.node != "n3" || v.vote != "n2" {
		t.Fatalf("answer round trip: %+v", v)
	}
}
