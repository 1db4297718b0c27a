package uplink

import (
	"errors"
	"fmt"
	"strings"
	"unsafe"

	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/linkprop"
	"github.com/ternmq/tern/internal/message"
	"github.com/ternmq/tern/internal/mqtt/packet"
	"github.com/ternmq/tern/internal/topic"
)

// onPublish takes a message that came down: a query's answer, or a message for the site's
// subscribers, which the trunk's own client publishes here (its subscriptions are No Local, so it
// does not go back up). The designated router numbers what it sends the site; PublishRouted drops
// a number already taken (a repeat after a reconnect). It is acknowledged once durable here.
func (s *session) onPublish(flags byte, body []byte) error {
	p := &s.pub
	if err := p.Decode(flags, body, packet.V5); err != nil {
		return err
	}
	if p.QoS == 2 {
		return errors.New("QoS 2 on a link (it carries QoS 2 as QoS 1 with tern-qos)")
	}
	if p.Props.Has(packet.PropTopicAlias) || len(p.Props.SubscriptionIDs) > 0 {
		return errors.New("a topic alias or subscription identifier the link did not ask for")
	}
	m := &message.Message{Topic: bytesString(p.Topic), Payload: p.Payload, QoS: p.QoS, Retain: p.Retain}
	pr := &p.Props
	m.Props.PayloadFormat = pr.PayloadFormat
	if pr.Has(packet.PropMessageExpiry) {
		m.ExpiryInterval = pr.MessageExpiry
	}
	m.Props.ContentType = bytesString(pr.ContentType)
	if pr.Has(packet.PropCorrelationData) {
		m.Props.CorrelationData = pr.CorrelationData
	}
	users := make([]message.UserProperty, 0, len(pr.User))
	for _, u := range pr.User {
		users = append(users, message.UserProperty{Key: bytesString(u.Key), Value: bytesString(u.Value)})
	}
	if strings.HasPrefix(m.Topic, s.responses+"/") {
		m.Props.User = users
		s.answered(m)
		if p.QoS == 1 {
			s.ackWhenDurable(p.PacketID, packet.Success, nil)
		}
		return nil
	}
	code, durable, err := s.publishDown(m, pr, users)
	if err != nil {
		return err
	}
	if p.QoS == 1 {
		s.ackWhenDurable(p.PacketID, code, durable)
	}
	return nil
}

// publishDown publishes a message that came down here; the acknowledgement waits for durable.
// The error is one that must end the connection unacknowledged (the designated router sends it
// again later); a refusal is the code.
func (s *session) publishDown(m *message.Message, pr *packet.Properties, users []message.UserProperty) (packet.ReasonCode, *broker.Ticket, error) {
	l := s.l
	if pr.Has(packet.PropResponseTopic) {
		if topic.ValidName(bytesString(pr.ResponseTopic)) != nil {
			return s.refuseDown(packet.ProtocolError, "invalid response topic", m.Topic), nil, nil
		}
		m.Props.ResponseTopic = bytesString(pr.ResponseTopic)
	}
	tags, rest, err := linkprop.Split(users)
	if err != nil {
		return s.refuseDown(packet.ImplementationSpecificError, err.Error(), m.Topic), nil, nil
	}
	if !inNamespaces(m.Topic, l.cfg.Namespaces) {
		return s.refuseDown(packet.NotAuthorized, "outside the link's namespaces", m.Topic), nil, nil
	}
	if len(rest) > 0 {
		m.Props.User = rest
	}
	if tags.QoS2 {
		m.QoS = 2
	}
	res, err := s.trunk.PublishRouted(m, broker.Route{Seq: tags.Seq, Sender: tags.Sender})
	switch {
	case err == nil:
		l.stats.Received.Add(1)
		return packet.Success, res.Durable, nil
	case errors.Is(err, broker.ErrStorage), errors.Is(err, broker.ErrSessionTakenOver), errors.Is(err, broker.ErrServerShuttingDown):
		return 0, nil, fmt.Errorf("publishing what came down: %w", err)
	case errors.Is(err, broker.ErrQuotaExceeded):
		// A queue here refused it (policy refuse): those who could take it have it.
		l.stats.Received.Add(1)
		return packet.QuotaExceeded, res.Durable, nil
	default:
		return s.refuseDown(packet.UnspecifiedError, err.Error(), m.Topic), nil, nil
	}
}

// refuseDown counts a message that came down and cannot be taken; it is acknowledged with code.
func (s *session) refuseDown(code packet.ReasonCode, why, topicName string) packet.ReasonCode {
	l := s.l
	l.stats.ReceivedRefused.Add(1)
	if l.warn.due("refuse down") {
		l.log.Warn("refused a message from the designated router", "topic", topicName, "reason", why)
	}
	return code
}

// inNamespaces reports whether a topic lies in one of the namespaces.
func inNamespaces(t string, namespaces []string) bool {
	ns, _, _ := strings.Cut(t, "/")
	for _, n := range namespaces {
		if n == ns {
			return true
		}
	}
	return false
}

// ackWhenDurable acknowledges a message that came down once the store has it (t), in the order
// the messages came. A failed sync ends the connection unacknowledged.
func (s *session) ackWhenDurable(pid uint16, code packet.ReasonCode, t *broker.Ticket) {
	s.mu.Lock()
	if t == nil {
		if s.lastTicket.Done() {
			s.mu.Unlock()
			s.writeAck(pid, code)
			return
		}
		t = s.lastTicket
	}
	s.lastTicket = t
	s.mu.Unlock()
	t.Then(func(err error) {
		if err != nil {
			s.c.closeNow()
			return
		}
		s.writeAck(pid, code)
	})
}

func (s *session) writeAck(pid uint16, code packet.ReasonCode) {
	o := &s.c.out
	o.Lock()
	defer o.Unlock()
	if o.ClosedLocked() {
		return
	}
	if buf, err := packet.AppendAck(o.BufLocked(), packet.PUBACK, packet.V5, pid, code, nil); err == nil {
		s.c.commitLocked(buf)
	}
}

// bytesString views bytes as a string without copying, for values the core borrows during a call.
func bytesString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }
