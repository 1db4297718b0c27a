package mqtt

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/linkprop"
	"github.com/ternmq/tern/internal/message"
	"github.com/ternmq/tern/internal/mqtt/packet"
	"github.com/ternmq/tern/internal/netio"
)

// Peer mode: the connections of a designated router's peer listener (route.listen) are other
// routers, not clients. Each speaks MQTT 5 with a client certificate, which names it; its session
// is a peer session of the core (ConnectRequest.Peer), so its client id starts with
// broker.PeerClientPrefix of that name and its route grant decides what it may forward and
// subscribe to. What it publishes carries the link's properties (internal/linkprop) and goes
// through PublishRouted, which drops what the link already delivered; what it receives is
// numbered the same way (the session is sequenced), so the site can drop repeats too. Links carry
// QoS 2 as QoS 1 plus tern-qos: the numbers make it exactly once without the four-way exchange.

// PeerConfig is a peer listener's setup.
type PeerConfig struct {
	// RouterID is this router's id, the tern-origin of what goes down to sites.
	RouterID string
	// Namespaces are the namespaces this router is designated for; peer traffic outside them
	// is refused.
	Namespaces []string
}

// peerMode is what a peer connection needs of its listener.
type peerMode struct {
	origin     string
	namespaces []string
}

// ServePeers accepts other routers' connections on ln (a TLS listener that requires client
// certificates, which identify names).
func (s *Server) ServePeers(ln net.Listener, identify netio.Identify, pc PeerConfig) error {
	pm := &peerMode{origin: pc.RouterID, namespaces: slices.Clone(pc.Namespaces)}
	return s.conns.Serve(ln, func(nc net.Conn) { s.serveConn(nc, nil, identify, pm) })
}

// designated reports whether a topic or filter lies in one of the designated namespaces.
func (pm *peerMode) designated(topicOrFilter string) bool {
	ns, _, _ := strings.Cut(topicOrFilter, "/")
	return slices.Contains(pm.namespaces, ns)
}

// peerConnect turns CONNECT into a peer's request: the certificate alone names the router.
func (c *conn) peerConnect(p *packet.Connect, req *broker.ConnectRequest) (packet.ReasonCode, string) {
	if c.version != packet.V5 {
		return packet.UnsupportedProtocolVersion, "a peer router speaks MQTT 5"
	}
	id := req.Credentials.CertIdentity
	if id == "" {
		return packet.NotAuthorized, "a peer router needs a client certificate"
	}
	if p.Will {
		return packet.ImplementationSpecificError, "a peer router has no will"
	}
	req.Credentials = auth.Credentials{Face: "mqtt-peer", CertIdentity: id, RemoteAddr: req.Credentials.RemoteAddr}
	req.Peer, req.Sequenced = true, true
	req.Face = "mqtt-peer"
	return packet.Success, ""
}

// onPeerPublish takes a message another router forwarded.
func (c *conn) onPeerPublish(p *packet.Publish, m *message.Message) error {
	if p.QoS == 2 {
		return protoErr(packet.QoSNotSupported, "a link carries QoS 2 as QoS 1 with tern-qos")
	}
	var res broker.PublishResult
	var err error
	if m.Topic == broker.QueryProcedure {
		res, err = c.client.Publish(m)
	} else {
		res, err = c.routed(m)
	}
	code, fatal := peerCode(err)
	if fatal {
		return protoErr(code, err.Error())
	}
	if p.QoS == 1 {
		c.ackWhenDurable(packet.PUBACK, p.PacketID, code, err, res.Durable)
	}
	if res.Backpressure != nil {
		c.stall(res.Backpressure)
	}
	return nil
}

// errOutsideDesignated refuses what a peer forwards outside this router's namespaces.
var errOutsideDesignated = fmt.Errorf("%w: not a namespace this router is designated for", broker.ErrNotAuthorized)

// errLinkProperty refuses a message whose link properties do not decode; the site counts it as
// refused and goes on.
type errLinkProperty struct{ err error }

func (e errLinkProperty) Error() string { return e.err.Error() }

// routed publishes m with what its link properties say of it.
func (c *conn) routed(m *message.Message) (broker.PublishResult, error) {
	if !c.peer().designated(m.Topic) {
		return broker.PublishResult{}, errOutsideDesignated
	}
	tags, rest, err := linkprop.Split(m.Props.User)
	if err != nil {
		return broker.PublishResult{}, errLinkProperty{err}
	}
	m.Props.User = rest
	if len(rest) == 0 {
		m.Props.User = nil
	}
	if tags.QoS2 {
		m.QoS = 2
	}
	return c.client.PublishRouted(m, broker.Route{Seq: tags.Seq, Sender: tags.Sender})
}

// peerSubscribe subscribes a peer to what it asks within the designated namespaces (and to its
// own response prefix, for query answers); the core checks the route grant.
func (c *conn) peerSubscribe(reqs []broker.SubscribeRequest) []broker.SubscribeResult {
	out := make([]broker.SubscribeResult, len(reqs))
	responses := broker.ResponsePrefix(c.clientID())
	var allowed []broker.SubscribeRequest
	var at []int
	for i, r := range reqs {
		own := r.Filter == responses || strings.HasPrefix(r.Filter, responses+"/")
		if !own && !c.peer().designated(r.Filter) {
			out[i].Err = errOutsideDesignated
			continue
		}
		allowed = append(allowed, r)
		at = append(at, i)
	}
	if len(allowed) > 0 {
		for j, r := range c.client.Subscribe(allowed) {
			out[at[j]] = r
		}
	}
	return out
}

// peerTags finishes an outgoing PUBLISH for a peer, whose properties pubprops.Put wrote without
// the link properties the message itself carried (a local publisher could have forged them): QoS 2
// goes as QoS 1 with tern-qos, and the delivery's number and this router's id are added. The
// caller holds the outgoing lock.
func (c *conn) peerTags(p *packet.Publish, d broker.Delivery) {
	tags := linkprop.Tags{Origin: c.peer().origin, Seq: d.Seq, QoS2: d.QoS == 2}
	p.Props.User, c.rare.peerScratch = tags.Append(p.Props.User, c.rare.peerScratch[:0])
	if p.QoS == 2 {
		p.QoS = 1
	}
}

// peerCode is publishCode with the peers' own refusals.
func peerCode(err error) (packet.ReasonCode, bool) {
	var le errLinkProperty
	if errors.As(err, &le) {
		return packet.ImplementationSpecificError, false
	}
	return publishCode(err)
}
