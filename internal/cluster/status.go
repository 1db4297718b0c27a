package cluster

import (
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/raft"
)

// Status is what `tern cluster status` and GET /v1/cluster show.
type Status struct {
	Node   string `json:"node"`
	State  string `json:"state"` // leader, follower, candidate, shutdown
	Leader string `json:"leader"`
	// Live: the node holds its sessions (it reached a majority since it started); until then it
	// refuses connects. Sessions counts the client ids in the cluster's session directory, Held
	// those this node holds.
	Live     bool   `json:"live"`
	Sessions int    `json:"sessions"`
	Held     int    `json:"held"`
	Term     uint64 `json:"term"`
	// CommitIndex, AppliedIndex and LastIndex are this node's raft log positions.
	CommitIndex  uint64   `json:"commit_index"`
	AppliedIndex uint64   `json:"applied_index"`
	LastIndex    uint64   `json:"last_index"`
	Members      []Member `json:"members"`
	// Forwarded, Received, Dropped and Failed count messages over the node links.
	Forwarded uint64 `json:"forwarded"`
	Received  uint64 `json:"received"`
	Dropped   uint64 `json:"dropped"`
	Failed    uint64 `json:"failed"`
}

// Member is one node as this one sees it.
type Member struct {
	ID      string `json:"id"`
	Address string `json:"address"`
	Voter   bool   `json:"voter"`
	Leader  bool   `json:"leader"`
	Self    bool   `json:"self"`
	// Link is the state of this node's link to it: "up", "down" ("self" for this node).
	Link string `json:"link"`
	// AppliedIndex is what the node last said it applied, Lag how far that is behind this
	// node's commit index; LastContact how long ago it said so (empty: never).
	AppliedIndex uint64 `json:"applied_index"`
	Lag          uint64 `json:"lag"`
	LastContact  string `json:"last_contact,omitempty"`
	// Interest is how many filters the node's sessions subscribe to.
	Interest int `json:"interest"`
}

// Status reports this node's view of the cluster.
func (n *Node) Status() Status {
	r := n.r
	st := Status{Node: n.cfg.NodeID, State: strings.ToLower(r.State().String()), Leader: n.Leader(),
		CommitIndex: r.CommitIndex(), AppliedIndex: r.AppliedIndex(), LastIndex: r.LastIndex(),
		Forwarded: n.links.stats.Forwarded.Load(), Received: n.links.stats.Received.Load(),
		Dropped: n.links.stats.Dropped.Load(), Failed: n.links.stats.Failed.Load()}
	st.Term = r.CurrentTerm()
	st.Live = n.fsm.live.Load()
	owners := n.fsm.dir.owners()
	for _, k := range owners {
		st.Sessions += k
	}
	st.Held = owners[n.cfg.NodeID]
	for _, s := range n.members() {
		m := Member{ID: string(s.ID), Address: string(s.Address), Voter: s.Suffrage == raft.Voter,
			Leader: string(s.ID) == st.Leader, Self: string(s.ID) == n.cfg.NodeID}
		if m.Self {
			m.Link, m.AppliedIndex = "self", st.AppliedIndex
		} else {
			m.Link = "down"
			if n.links.up(m.ID) != nil {
				m.Link = "up"
			}
			n.links.mu.Lock()
			if p := n.links.peers[m.ID]; p != nil {
				m.AppliedIndex = p.prog.Applied
				if !p.seen.IsZero() {
					m.LastContact = time.Since(p.seen).Round(time.Millisecond).String()
				}
			}
			m.Interest = len(n.links.interest[m.ID])
			n.links.mu.Unlock()
		}
		if st.CommitIndex > m.AppliedIndex {
			m.Lag = st.CommitIndex - m.AppliedIndex
		}
		st.Members = append(st.Members, m)
	}
	slices.SortFunc(st.Members, func(a, b Member) int { return strings.Compare(a.ID, b.ID) })
	return st
}

// LinksUp counts the other members whose link is up.
func (n *Node) LinksUp() int {
	k := 0
	for _, s := range n.members() {
		if string(s.ID) != n.cfg.NodeID && n.links.up(string(s.ID)) != nil {
			k++
		}
	}
	return k
}
