package cluster

import (
	"errors"
	"slices"
	"strings"
	"sync"
)

// Deterministic bootstrap. Every node may be started with the same --join list (itself included
// or not) and exactly one cluster forms. A node without raft state asks every listed address to
// add it; a node that belongs to no cluster yet answers noClusterMsg with its node id and its
// bootstrap vote. Each stateless node has one vote, fixed once and for good as soon as it has
// heard of a majority of the listed nodes (through the joins asked of it and the answers to its
// own): the lowest node id it has heard of. A node bootstraps a cluster of itself only when a
// majority of the listed nodes (itself counted) vote for it; since a vote never changes and two
// majorities share a node, no two nodes can both bootstrap. The others keep asking and join it
// once it answers as a cluster. A node with raft state never bootstraps again.

// noClusterMsg is the join answer of a node that belongs to no cluster yet; the answer's address
// field then carries that node's id and vote (bootAnswer) rather than a leader's address.
const noClusterMsg = "cluster: no cluster here yet"

// noClusterError is a join answer from a node without a cluster: its id and vote ("" when not
// fixed yet).
type noClusterError struct{ node, vote string }

func (e noClusterError) Error() string { return noClusterMsg + " (node " + e.node + ")" }

// bootAnswer packs a stateless node's id and vote into a join answer's address field; node ids
// never hold a newline.
func bootAnswer(node, vote string) string { return node + "\n" + vote }

func parseBootAnswer(s string) noClusterError {
	node, vote, _ := strings.Cut(s, "\n")
	return noClusterError{node: node, vote: vote}
}

// bootState is a stateless node's view of the bootstrap: who it has heard of, its vote, and
// who voted for it.
type bootState struct {
	mu       sync.Mutex
	expected int // nodes the join list names, this one included (0: no join list)
	heard    map[string]bool
	vote     string
	votes    map[string]bool // nodes whose vote is this one
}

func (b *bootState) init(self, advertise string, join []string) {
	addrs := slices.Clone(join)
	slices.Sort(addrs)
	addrs = slices.Compact(addrs)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.expected = len(addrs)
	if len(addrs) > 0 && !slices.Contains(addrs, advertise) {
		b.expected++
	}
	b.heard = map[string]bool{self: true}
	b.votes = map[string]bool{}
}

// hear notes node as one of the listed nodes and fixes the vote once a majority is heard of.
// It returns the vote ("" while not fixed).
func (b *bootState) hear(node string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.heard == nil {
		return ""
	}
	if node != "" {
		b.heard[node] = true
	}
	if b.vote == "" && b.expected > 0 && len(b.heard) > b.expected/2 {
		for id := range b.heard {
			if b.vote == "" || id < b.vote {
				b.vote = id
			}
		}
	}
	return b.vote
}

// answer notes a join answer to this node (self is its id).
func (b *bootState) answer(self string, err error) {
	var nc noClusterError
	if !errors.As(err, &nc) || nc.node == "" {
		return
	}
	b.hear(nc.node)
	if nc.vote == self {
		b.mu.Lock()
		b.votes[nc.node] = true
		b.mu.Unlock()
	}
}

// elected reports whether a majority of the listed nodes vote for self.
func (b *bootState) elected(self string) bool {
	vote := b.hear("")
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(b.votes)
	if vote == self && !b.votes[self] {
		n++
	}
	return b.expected > 0 && n > b.expected/2
}
