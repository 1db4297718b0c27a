package broker

import (
	"encoding/json"
	"strings"

	"github.com/ternmq/tern/internal/message"
)

// Server events: connections that ask for it (ConnectRequest.Announce: MQTT, mBus and WebSocket
// clients, not one-shot HTTP requests) are announced on
//
//	$SYS/events/connected     {"client_id", "identity", "face", "remote"}
//	$SYS/events/disconnected  {"client_id", "identity", "reason"}
//	$SYS/events/subscribed    {"client_id", "filter"}        (and unsubscribed)
//	$SYS/events/registered    {"client_id", "namespace", "procedure"}   (and unregistered:
//	                          a subscription to $rpc/N/P)
//
// as QoS 0 JSON messages, for anybody granted to subscribe to $SYS/events/#. On a cluster node
// each also carries "node", the node's id, and reaches subscribers on every node.
const EventsPrefix = "$SYS/events/"

// announce publishes a server event on topic (EventsPrefix and the kind: a constant, so naming
// it costs nothing). Its fields are built only when someone would receive it (wanted): the map
// and its boxed strings were most of what an unwanted event still cost.
func (b *Broker) announce(topic string, build func() map[string]any) {
	if !b.wanted(topic) {
		return
	}
	fields := build()
	// Events cross the cluster like any publication (once: a node does not forward what it
	// received from another); "node" says which node the client is on.
	if n, ok := b.cluster.(interface{ NodeID() string }); ok {
		fields["node"] = n.NodeID()
	}
	payload, _ := json.Marshal(fields)
	m := &message.Message{Topic: topic, Payload: payload}
	m.Props.ContentType = "application/json"
	if _, err := b.publishOwn(m); err != nil && b.warn.due("server event") {
		b.log.Warn("server event not published", "event", topic, "err", err)
	}
}

// wanted reports whether a message published on topic now would reach anyone: a subscriber of
// this node or, in a cluster, another node's interest. An event nobody would receive is not
// encoded: without it every subscription change of a client paid a JSON encoding and a publish
// (a fifth of the server's time when clients churn their subscriptions). A subscriber that
// comes a moment later misses it, as it would miss any message published before it subscribed.
func (b *Broker) wanted(topic string) bool {
	if !b.index.Match(topic).Empty() {
		return true
	}
	if b.cluster == nil {
		return false
	}
	w, ok := b.cluster.(interface{ Wants(topic string) bool })
	return !ok || w.Wants(topic) // a cluster that cannot tell gets every event
}

// announceSubscription announces one subscription change of an announced client.
func (c *Client) announceSubscription(filter string, added bool) {
	if !c.announce {
		return
	}
	if ns, proc, ok := strings.Cut(rpcResource(filter), "/"); ok {
		topic := EventsPrefix + "registered"
		if !added {
			topic = EventsPrefix + "unregistered"
		}
		c.s.b.announce(topic, func() map[string]any {
			return map[string]any{"client_id": c.ClientID(), "namespace": ns, "procedure": proc}
		})
		return
	}
	topic := EventsPrefix + "subscribed"
	if !added {
		topic = EventsPrefix + "unsubscribed"
	}
	c.s.b.announce(topic, func() map[string]any { return map[string]any{"client_id": c.ClientID(), "filter": filter} })
}
