package cluster

import (
	"strconv"
	"testing"
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
