package cluster

// NodeID is this node's id; the core names it in the server events it publishes ($SYS/events),
// which cross the cluster, so a subscriber on another node can tell where a client connected.
func (n *Node) NodeID() string { return n.cfg.NodeID }
