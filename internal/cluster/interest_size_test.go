package cluster

import (
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/ternmq/tern/internal/topic"
)

// A node's interest is every distinct filter its sessions hold, one per device in a typical
// fleet, so it outgrows one frame: sent as a single frame it was refused by the peer as too
// large, the link broke, came back, sent it again and broke again, and the peer routed nothing
// to the node. It goes in parts now, and the peer applies the set when the last part arrives.
func TestInterestLargerThanAFrame(t *testing.T) {
	tc := newTCluster(t)
	tc.maxFrame = 16 << 10
	n1 := tc.add("n1", nil, "")
	n2 := tc.add("n2", n1, "")
	const filters = 20_000 // about 400 KB encoded, 25 times the frame bound
	fs := make([]string, filters)
	for i := range fs {
		fs[i] = "devices/" + strconv.Itoa(i) + "/cmd"
	}
	n2.core.setInterest(fs...)
	eventually(t, "n2's whole interest reaches n1", func() bool {
		return len(n1.links.index.Match("devices/0/cmd").Entries) == 1 &&
			len(n1.links.index.Match("devices/"+strconv.Itoa(filters-1)+"/cmd").Entries) == 1
	})
	// A smaller set replaces it whole: what is no longer sent is withdrawn.
	n2.core.setInterest(fs[:10]...)
	eventually(t, "n2's smaller interest replaces the larger one at n1", func() bool {
		return len(n1.links.index.Match("devices/9/cmd").Entries) == 1 &&
			len(n1.links.index.Match("devices/10/cmd").Entries) == 0
	})
}

// setInterestLocked finds the change between two sets by a sorted walk: whatever order and
// duplicates a set comes in, afterwards the index holds exactly its filters.
func TestSetInterestReplacesTheSet(t *testing.T) {
	l := &links{index: topic.NewIndex[string, struct{}](64), interest: map[string][]string{}}
	rng := rand.New(rand.NewPCG(1, 2))
	const universe = 40
	for round := range 300 {
		want := map[int]bool{}
		var set []string
		for range rng.IntN(2 * universe) {
			k := rng.IntN(universe)
			want[k] = true
			set = append(set, "a/"+strconv.Itoa(k)) // unsorted, with repeats
		}
		if rng.IntN(10) == 0 {
			set, want = nil, map[int]bool{}
		}
		l.setInterestLocked("n2", set)
		for k := range universe {
			if got := len(l.index.Match("a/" + strconv.Itoa(k)).Entries); got != b2i(want[k]) {
				t.Fatalf("round %d: a/%d matched %d times, in the set: %v", round, k, got, want[k])
			}
		}
		if len(want) == 0 && l.interest["n2"] != nil {
			t.Fatalf("round %d: an empty set left %d filters", round, len(l.interest["n2"]))
		}
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
