package cluster

// RemoteInterest returns, per other node whose link is up, the filters it said its sessions
// subscribe to. The core's service listing (tern/services) reads the procedures other nodes
// serve from it: a service is listed on every node while its node is reachable, and a node whose
// link is down drops out of the listing as it drops out of routing.
func (n *Node) RemoteInterest() map[string][]string {
	l := n.links
	l.mu.Lock()
	ids := make([]string, 0, len(l.interest))
	for id := range l.interest {
		if id != n.cfg.NodeID {
			ids = append(ids, id)
		}
	}
	l.mu.Unlock()
	out := make(map[string][]string, len(ids))
	for _, id := range ids {
		if l.up(id) == nil {
			continue
		}
		l.mu.Lock()
		out[id] = l.interest[id] // replaced, never changed in place (setInterestLocked)
		l.mu.Unlock()
	}
	return out
}
