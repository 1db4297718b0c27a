package cluster

import (
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/message"
)

// A call (a message to $rpc/N/P with a response topic) forwarded to another node is answered
// there: by the service, or by that node's core when the service goes away or none is connected.
// What that node cannot do is answer when it dies itself, or when the link to it breaks with
// the call on it. So this node remembers, per node, the calls it sent there and not yet seen
// answered (a reply with the call's response topic and correlation data coming back over a
// link), and when a link goes down it answers those calls itself, at once, the way the core
// answers for a service that disconnected, rather than leaving the callers to time out.

// maxRemoteCalls bounds the calls remembered; beyond it new calls are not remembered (their
// callers then rely on their own timeouts), as the core does with maxPendingCalls.
const maxRemoteCalls = 100000

// remoteCalls: calls forwarded to other nodes and not yet answered.
type remoteCalls struct {
	// size is len(byKey), so that a message from another node with correlation data checks an
	// empty table without the lock (answered runs for every such message).
	size   atomic.Int32
	mu     sync.Mutex
	byKey  map[string][]string          // call key -> nodes it was sent to
	byNode map[string]map[string][]byte // node -> call key -> correlation data
	topics map[string]string            // call key -> response topic
}

// callKey names a call by its response topic and correlation data (a NUL cannot be in a topic).
func callKey(reply string, corr []byte) string { return reply + "\x00" + string(corr) }

// sent remembers that call m goes to node. It reports whether it did (false when m is not a
// call or the table is full), so a copy that could not be sent can be forgotten again.
func (r *remoteCalls) sent(node string, m *message.Message) bool {
	if !broker.IsCall(m) {
		return false
	}
	k := callKey(m.Props.ResponseTopic, m.Props.CorrelationData)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byKey == nil {
		r.byKey, r.byNode, r.topics = map[string][]string{}, map[string]map[string][]byte{}, map[string]string{}
	}
	if len(r.byKey) >= maxRemoteCalls {
		return false
	}
	r.byKey[k] = append(r.byKey[k], node)
	r.topics[k] = m.Props.ResponseTopic
	calls := r.byNode[node]
	if calls == nil {
		calls = map[string][]byte{}
		r.byNode[node] = calls
	}
	calls[k] = m.Props.CorrelationData
	r.size.Store(int32(len(r.byKey)))
	return true
}

// answered forgets the call a message (arriving from another node) answers, if any.
func (r *remoteCalls) answered(m *message.Message) {
	if m.Props.CorrelationData == nil || r.size.Load() == 0 {
		return
	}
	k := callKey(m.Topic, m.Props.CorrelationData)
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, node := range r.byKey[k] {
		delete(r.byNode[node], k)
	}
	delete(r.byKey, k)
	delete(r.topics, k)
	r.size.Store(int32(len(r.byKey)))
}

// forget forgets call m sent to node (its copy was not sent after all).
func (r *remoteCalls) forget(node string, m *message.Message) {
	k := callKey(m.Props.ResponseTopic, m.Props.CorrelationData)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dropLocked(node, k)
}

func (r *remoteCalls) dropLocked(node, k string) {
	delete(r.byNode[node], k)
	nodes := r.byKey[k]
	for i, n := range nodes {
		if n == node {
			nodes = append(nodes[:i], nodes[i+1:]...)
			break
		}
	}
	if len(nodes) == 0 {
		delete(r.byKey, k)
		delete(r.topics, k)
	} else {
		r.byKey[k] = nodes
	}
	r.size.Store(int32(len(r.byKey)))
}

// lost removes and returns the calls sent to node that no other node may still answer, as
// (response topic, correlation data) pairs.
func (r *remoteCalls) lost(node string) (replies []string, corrs [][]byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, corr := range r.byNode[node] {
		reply := r.topics[k]
		r.dropLocked(node, k)
		if _, still := r.byKey[k]; !still {
			replies = append(replies, reply)
			corrs = append(corrs, corr)
		}
	}
	delete(r.byNode, node)
	return replies, corrs
}

// failCallsTo answers, on the services' behalf, the calls sent to a node whose link went down.
// The failure reaches this node's sessions, where the callers of calls sent from here are.
func (l *links) failCallsTo(node string) {
	replies, corrs := l.calls.lost(node)
	for i, reply := range replies {
		m := &message.Message{Topic: reply, QoS: 1}
		m.Props.CorrelationData = corrs[i]
		m.Props.User = []message.UserProperty{{Key: broker.StatusProperty, Value: strconv.Itoa(-1)},
			{Key: broker.ErrorProperty, Value: "service node unreachable"}}
		l.core.DeliverRemote(m, false, nil)
	}
}
