package broker

// What a face may learn about the other nodes of a cluster, read through the optional methods of
// the Cluster (internal/cluster's Node has both): nothing on a single node.

// NodeID is this node's id on a cluster node, "" otherwise.
func (b *Broker) NodeID() string {
	if n, ok := b.cluster.(interface{ NodeID() string }); ok {
		return n.NodeID()
	}
	return ""
}

// RemoteInterest returns, per other node whose link is up, the filters its sessions subscribe
// to (nil on a single node): what routing sends by, so a face that lists other nodes' clients
// from it lists exactly those a message can reach.
func (b *Broker) RemoteInterest() map[string][]string {
	if rc, ok := b.cluster.(interface{ RemoteInterest() map[string][]string }); ok {
		return rc.RemoteInterest()
	}
	return nil
}
