package cluster

// What a webhook Manager needs of the cluster to deliver each hook on the one node that holds its
// session ($webhook-<id>, in the directory and replicated like a client's): who holds a
// session, when this node takes one up or lets one go, and when the node is live (before that
// its directory may be older than the cluster's, and its core holds none of its sessions).

// SessionOwner returns the node the directory names as the holder of client's session, and false
// when the directory has no entry for it.
func (n *Node) SessionOwner(client string) (string, bool) {
	e, ok := n.fsm.dir.get(client)
	return e.owner, ok
}

// Lived is closed once the node is live: it has reached the cluster since it started and its core
// holds the sessions the log gives it.
func (n *Node) Lived() <-chan struct{} { return n.fsm.liveCh }

// WatchSessions adds fn to those told the client id of each session this node's core takes up or
// lets go, after it did (from the apply goroutine: fn must not block). Without a replica
// (SessionStore not called) there is nothing to tell.
func (n *Node) WatchSessions(fn func(client string)) {
	r := n.replica
	if r == nil {
		return
	}
	for {
		old := r.watchers.Load()
		var ws []func(string)
		if old != nil {
			ws = append(ws, *old...)
		}
		ws = append(ws, fn)
		if r.watchers.CompareAndSwap(old, &ws) {
			return
		}
	}
}

// tell calls the session watchers.
func (r *Replica) tell(client string) {
	if ws := r.watchers.Load(); ws != nil {
		for _, fn := range *ws {
			fn(client)
		}
	}
}
