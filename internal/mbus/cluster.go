package mbus

import (
	"strings"

	"github.com/ternmq/tern/internal/broker"
)

// On a cluster node, command.clients, command.status and command.client answer for the mBus
// clients of every node. The other nodes' clients come from their interest (what each node told
// this one it subscribes to, broker.RemoteInterest): every mBus client subscribes to
// mbus-to/{identifier}/# from its command.create on, so a node's interest names its mBus
// clients, and a client is listed exactly while an event or a call can reach it. The interest
// is per node, not per client, so a remote client is described by its identifier, its node and
// the commands it serves under its own identifier ($rpc/{identifier}/{command}); its address,
// port and subscriptions are known only on its node (command.client asked there).

// remoteClients returns the mBus clients other nodes hold, by identifier.
func (s *Server) remoteClients() map[string]clientInfo {
	interest := s.b.RemoteInterest()
	if len(interest) == 0 {
		return nil
	}
	out := map[string]clientInfo{}
	for node, filters := range interest {
		cmds := map[string][]map[string]string{}
		var ids []string
		for _, f := range filters {
			if id, ok := directFilterClient(f); ok {
				ids = append(ids, id)
			} else if id, cmd, ok := procedureOf(f); ok {
				cmds[id] = append(cmds[id], map[string]string{"identifier": cmd})
			}
		}
		for _, id := range ids {
			out[id] = clientInfo{Source: id, Node: node, Subscriptions: []map[string]string{}, Commands: orEmpty(cmds[id])}
		}
	}
	return out
}

// directFilterClient reads the identifier of an mBus client's own filter, mbus-to/{id}/#.
func directFilterClient(f string) (string, bool) {
	rest, ok := strings.CutPrefix(f, "mbus-to/")
	if !ok {
		return "", false
	}
	level, ok := strings.CutSuffix(rest, "/#")
	if !ok || level == "" || level == "+" || strings.ContainsAny(level, "/#") {
		return "", false
	}
	id := unescapeLevel(level)
	return id, id != ""
}

// procedureOf reads $rpc/{id}/{command}, a command served under the client's own identifier.
func procedureOf(f string) (id, cmd string, ok bool) {
	rest, ok := strings.CutPrefix(f, broker.RPCPrefix)
	if !ok {
		return "", "", false
	}
	id, cmd, ok = strings.Cut(rest, "/")
	if !ok || id == "" || cmd == "" || strings.ContainsAny(id+cmd, "/+#") {
		return "", "", false
	}
	return unescapeLevel(id), unescapeLevel(cmd), true
}

// localNode is the node this server's own clients are marked with ("" on a single node, where
// the field is left out and the answers are mBus's own).
func (s *Server) localNode() string { return s.b.NodeID() }
