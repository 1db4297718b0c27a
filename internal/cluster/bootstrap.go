package cluster

import (
	"errors"
	"maps"
	"slices"
	"sync"
)

// Deterministic bootstrap. Every node may be started with the same --join list (itself included
// or not) and exactly one cluster forms. A node without raft state asks every listed address to
// add it; a node that belongs to no cluster yet answers with a boot answer (frame.Boot): its node
// id, its bootstrap vote and whether it has withdrawn.
//
// Votes: each stateless node fixes its vote once it has heard of a majority of the listed nodes
// (through the joins asked of it and the answers to its own): the lowest node id it has heard of
// that has not withdrawn. A node bootstraps a cluster of itself only when a majority of the
// listed nodes (itself counted) report a vote for it, and it has not withdrawn.
//
// Splits: with more than three nodes the votes can split so that nobody has a majority. A node
// that learns of a vote for a lower node id that has not withdrawn withdraws for good: it will
// never bootstrap. Only then may the nodes that voted for it vote again (for the lowest node id
// they have heard of that has not withdrawn), having learnt of the withdrawal from its own
// answer. So a vote moves away from a node only once that node can no longer bootstrap, and two
// majorities share a node: at most one node bootstraps (docs/decisions.md gives the argument
// and why the votes converge). The others keep asking and join it once it answers as a
// cluster. A node with raft state never bootstraps again.

// errNoCluster is the join answer of a node that belongs to no cluster yet (with its boot answer).
var errNoCluster = errors.New("cluster: no cluster here yet")

// bootInfo is a stateless node's boot answer to a join.
type bootInfo struct {
	Node string
	Vote string // "" while not fixed
	// Withdrawn: the node will never bootstrap (a lower node id holds a vote).
	Withdrawn bool
}

// noClusterError is a join answer from a node without a cluster.
type noClusterError struct{ bootInfo }

func (e noClusterError) Error() string { return errNoCluster.Error() + " (node " + e.Node + ")" }

func (e noClusterError) Unwrap() error { return errNoCluster }

// bootState is a stateless node's view of the bootstrap: who it has heard of, its vote, the votes
// others reported, and who withdrew.
type bootState struct {
	mu       sync.Mutex
	self     string
	expected int // nodes the join list names, this one included (0: no join list)
	heard    map[string]bool
	vote     string
	// withdrawn and started are this node's two final states, decided under mu so that a node
	// that withdrew never bootstraps and one that bootstraps never withdraws.
	withdrawn, started bool
	reported           map[string]string // the last vote each node answered with
	gone               map[string]bool   // nodes that answered as withdrawn
}

func (b *bootState) init(self, advertise string, join []string) {
	addrs := slices.Clone(join)
	slices.Sort(addrs)
	addrs = slices.Compact(addrs)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.self = self
	b.expected = len(addrs)
	if len(addrs) > 0 && !slices.Contains(addrs, advertise) {
		b.expected++
	}
	b.heard = map[string]bool{self: true}
	b.reported = map[string]string{}
	b.gone = map[string]bool{}
}

// hear notes node as one of the listed nodes (a join it asked of this one) and returns this
// node's boot answer to it.
func (b *bootState) hear(node string) bootInfo {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.heard == nil {
		return bootInfo{Node: b.self}
	}
	if node != "" {
		b.heard[node] = true
	}
	b.settle()
	return bootInfo{Node: b.self, Vote: b.vote, Withdrawn: b.withdrawn}
}

// answer notes a join answer to this node.
func (b *bootState) answer(err error) {
	var nc noClusterError
	if !errors.As(err, &nc) || nc.Node == "" {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.heard == nil {
		return
	}
	b.heard[nc.Node] = true
	if nc.Vote != "" {
		b.reported[nc.Node] = nc.Vote
	}
	if nc.Withdrawn {
		b.gone[nc.Node] = true
	}
	b.settle()
}

// settle brings the vote and the withdrawal up to date with what this node knows (mu held).
func (b *bootState) settle() {
	if b.vote != "" && b.gone[b.vote] {
		b.vote = "" // the node voted for withdrew: vote again
	}
	if b.vote == "" && b.expected > 0 && len(b.heard) > b.expected/2 {
		b.vote = b.lowest()
	}
	if b.withdrawn || b.started {
		return
	}
	lower := func(v string) bool { return v != "" && v < b.self && !b.gone[v] }
	if lower(b.vote) || slices.ContainsFunc(slices.Collect(maps.Values(b.reported)), lower) {
		b.withdrawn = true
		b.gone[b.self] = true
		if b.vote == b.self {
			b.vote = b.lowest()
		}
	}
}

// lowest is the lowest node id heard of that has not withdrawn ("" when none).
func (b *bootState) lowest() string {
	low := ""
	for id := range b.heard {
		if !b.gone[id] && (low == "" || id < low) {
			low = id
		}
	}
	return low
}

// elected reports whether a majority of the listed nodes vote for this node; once it has, the
// node bootstraps and never withdraws.
func (b *bootState) elected() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.started {
		return true
	}
	if b.heard == nil || b.expected == 0 {
		return false
	}
	b.settle()
	if b.withdrawn || b.vote != b.self {
		return false
	}
	n := 1 // its own
	for id, v := range b.reported {
		if id != b.self && v == b.self {
			n++
		}
	}
	b.started = n > b.expected/2
	return b.started
}
