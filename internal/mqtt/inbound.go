package mqtt

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/message"
	"github.com/ternmq/tern/internal/mqtt/packet"
	"github.com/ternmq/tern/internal/topic"
)

// handle dispatches one packet after CONNECT.
func (c *conn) handle(typ, flags byte, body []byte) error {
	switch typ {
	case packet.PUBLISH:
		return c.onPublish(flags, body)
	case packet.PUBACK, packet.PUBCOMP:
		return c.onAck(typ, flags, body)
	case packet.PUBREC:
		return c.onPubrec(flags, body)
	case packet.PUBREL:
		return c.onPubrel(flags, body)
	case packet.SUBSCRIBE:
		return c.onSubscribe(flags, body)
	case packet.UNSUBSCRIBE:
		return c.onUnsubscribe(flags, body)
	case packet.PINGREQ:
		return c.onPing(flags, body)
	case packet.DISCONNECT:
		return c.onDisconnect(flags, body)
	case packet.AUTH:
		if c.version != packet.V5 {
			return protoErr(packet.MalformedPacket, "AUTH is an MQTT 5 packet")
		}
		return protoErr(packet.ProtocolError, "enhanced authentication is not supported")
	case packet.CONNECT:
		return protoErr(packet.ProtocolError, "second CONNECT on one connection")
	default:
		return protoErr(packet.ProtocolError, "unexpected "+packet.TypeName(typ)+" from a client")
	}
}

// onPublish is the hot path: decode into reused structs, borrow the bytes into a reused Message,
// route it, acknowledge it.
func (c *conn) onPublish(flags byte, body []byte) error {
	// The scratch travels with the read buffer that holds body.
	scratch := c.rd.readBuffer()
	p := &scratch.pub
	if err := p.Decode(flags, body, c.version); err != nil {
		return err
	}
	m := &scratch.msg
	*m = message.Message{Payload: p.Payload, QoS: p.QoS, Retain: p.Retain}
	t := p.Topic
	if c.version == packet.V5 {
		if p.Props.Has(packet.PropTopicAlias) {
			var err error
			if t, err = c.resolveAlias(t, p.Props.TopicAlias); err != nil {
				return err
			}
		}
		if len(p.Props.SubscriptionIDs) > 0 {
			return protoErr(packet.ProtocolError, "a client may not send subscription identifiers")
		}
		scratch.users = scratch.users[:0]
		if err := borrowMessageProps(&p.Props, m, &scratch.users); err != nil {
			return err
		}
	}
	if len(t) == 0 {
		return protoErr(packet.TopicNameInvalid, "empty topic name")
	}
	m.Topic = bytesString(t)

	if c.version == packet.V5 && p.QoS > c.srv.maxQoS {
		// The CONNACK told the client the maximum; 3.1.1 has no way to, so there the core downgrades.
		return protoErr(packet.QoSNotSupported, "QoS above the server's maximum")
	}
	if c.isPeer {
		return c.onPeerPublish(p, m)
	}
	if p.QoS == 2 && !p.Dup && c.client.PendingReleases() >= int(c.srv.cfg.ReceiveMax) {
		return protoErr(packet.ReceiveMaximumExceeded, "more unreleased QoS 2 publishes than the receive maximum")
	}
	var res broker.PublishResult
	var err error
	if p.QoS == 2 {
		res, err = c.client.PublishExactlyOnce(p.PacketID, m)
	} else {
		res, err = c.client.Publish(m)
	}
	code, fatal := publishCode(err)
	if errors.Is(err, broker.ErrStorage) && c.version != packet.V5 {
		// MQTT 3.1.1 has no way to say the publish failed; an acknowledgement would be a lie, so
		// the connection ends and the client sends it again later.
		fatal = true
	}
	if fatal {
		return protoErr(code, err.Error())
	}
	if code == packet.Success && res.Matched == 0 && !res.Duplicate && c.version == packet.V5 {
		code = packet.NoMatchingSubscribers
	}
	switch p.QoS {
	case 1:
		c.ackWhenDurable(packet.PUBACK, p.PacketID, code, err, res.Durable)
	case 2:
		c.ackWhenDurable(packet.PUBREC, p.PacketID, code, err, res.Durable)
	}
	if res.Backpressure != nil {
		c.stall(res.Backpressure)
	}
	if res.Throttle > 0 {
		// Ahead of the identity's publish rate: read nothing for a while, so TCP slows the
		// client down instead of its messages being refused. The core bounds the pause.
		c.batch.Flush()
		time.Sleep(res.Throttle)
	}
	return nil
}

// ackWhenDurable acknowledges a publish once the store has its durable copies. The reader does not
// wait: it goes on with the next publishes, whose copies the same fsync then covers. It waits only
// when a receive maximum's worth of acknowledgements is pending.
func (c *conn) ackWhenDurable(typ byte, pid uint16, code packet.ReasonCode, err error, t *broker.Ticket) {
	if t == nil {
		if c.lastTicket().Done() {
			c.writeAck(typ, pid, code, err, &c.batch)
			return
		}
		t = c.lastTicket()
	}
	if int(c.pendingAcks.Load()) >= int(c.srv.cfg.ReceiveMax) {
		c.batch.Flush()
		_ = c.lastTicket().Wait()
	}
	c.extra().lastTicket = t
	c.pendingAcks.Add(1)
	t.Then(func(syncErr error) {
		defer c.pendingAcks.Add(-1)
		if syncErr != nil {
			c.srv.stats.StoreFailures.Add(1)
			if c.version != packet.V5 {
				c.out.CloseNow(fmt.Errorf("store: %w", syncErr))
				return
			}
			if !code.IsError() {
				code, err = packet.UnspecifiedError, fmt.Errorf("%w: %w", broker.ErrStorage, syncErr)
			}
		}
		c.writeAck(typ, pid, code, err, nil)
	})
}

// stall stops reading from this publisher until a receiver that is falling behind has caught up,
// for at most PublishStall, so TCP slows the publisher down instead of the receiver losing messages.
func (c *conn) stall(drained <-chan struct{}) {
	select {
	case <-drained:
		return
	default:
	}
	// Counted as the pause begins, so a pause under way shows.
	c.srv.stats.PublishStalls.Add(1)
	c.batch.Flush()
	x := c.extra()
	if x.stallTimer == nil {
		x.stallTimer = time.NewTimer(c.srv.cfg.PublishStall)
	} else {
		x.stallTimer.Reset(c.srv.cfg.PublishStall)
	}
	select {
	case <-drained:
		x.stallTimer.Stop()
	case <-x.stallTimer.C:
	}
}

// publishCode maps a core publish error to a reason code, and says whether the connection must
// end (a protocol violation) rather than just acknowledge with an error.
func publishCode(err error) (code packet.ReasonCode, fatal bool) {
	switch {
	case err == nil:
		return packet.Success, false
	case errors.Is(err, broker.ErrTopicInvalid):
		return packet.TopicNameInvalid, true
	case errors.Is(err, broker.ErrRetainNotSupported):
		return packet.RetainNotSupported, true
	case errors.Is(err, broker.ErrNotAuthorized):
		return packet.NotAuthorized, false
	case errors.Is(err, broker.ErrNoResponders):
		// The caller also gets a failure reply on its response topic.
		return packet.NoMatchingSubscribers, false
	case errors.Is(err, broker.ErrQuotaExceeded):
		return packet.QuotaExceeded, false
	case errors.Is(err, broker.ErrSessionTakenOver):
		return packet.SessionTakenOver, true
	default:
		return packet.UnspecifiedError, false
	}
}

// resolveAlias applies a client-to-server topic alias: a topic with an alias sets it, an empty
// topic uses it.
func (c *conn) resolveAlias(t []byte, alias uint16) ([]byte, error) {
	if alias == 0 || alias > c.srv.cfg.MaxInboundAliases {
		return nil, protoErr(packet.TopicAliasInvalid, "topic alias out of range")
	}
	x := c.extra()
	if x.inAliases == nil {
		// Allocated on first use: most clients never send aliases.
		x.inAliases = make([]string, c.srv.cfg.MaxInboundAliases+1)
	}
	if len(t) > 0 {
		x.inAliases[alias] = string(t)
		return t, nil
	}
	known := x.inAliases[alias]
	if known == "" {
		return nil, protoErr(packet.ProtocolError, "topic alias used before it was set")
	}
	return stringBytes(known), nil
}

// writeAck queues a PUBACK, PUBREC, PUBREL or PUBCOMP; it runs once per QoS 1/2 message. via is
// the reader's batch when the reader writes it, nil from other goroutines.
func (c *conn) writeAck(typ byte, pid uint16, code packet.ReasonCode, err error, via *broker.Batch) {
	var props *packet.Properties
	if c.version != packet.V5 {
		code = packet.Success
	} else if err != nil && c.problemInfo {
		props = &packet.Properties{ReasonString: []byte(err.Error())}
		props.Set(packet.PropReasonString)
	}
	o := &c.out
	o.Lock()
	defer o.Unlock()
	if o.ClosedLocked() {
		return
	}
	buf, encErr := packet.AppendAck(o.BufLocked(), typ, c.version, pid, code, props)
	if encErr != nil {
		c.srv.log.Error("encoding acknowledgement", "type", packet.TypeName(typ), "err", encErr)
		return
	}
	o.CommitLocked(buf, via)
}

// onAck completes a QoS 1 (PUBACK) or QoS 2 (PUBCOMP) delivery. Each packet kind has its own
// small function so that the dispatcher's stack frame stays small.
func (c *conn) onAck(typ, flags byte, body []byte) error {
	var pid uint16
	if typ == packet.PUBACK {
		var a packet.Puback
		if err := a.Decode(flags, body, c.version); err != nil {
			return err
		}
		pid = a.PacketID
	} else {
		var a packet.Pubcomp
		if err := a.Decode(flags, body, c.version); err != nil {
			return err
		}
		pid = a.PacketID
	}
	c.client.Acked(pid)
	return nil
}

func (c *conn) onPing(flags byte, body []byte) error {
	var p packet.Pingreq
	if err := p.Decode(flags, body, c.version); err != nil {
		return err
	}
	c.writePacket(&packet.Pingresp{}, &c.batch)
	return nil
}

func (c *conn) onPubrec(flags byte, body []byte) error {
	var a packet.Pubrec
	if err := a.Decode(flags, body, c.version); err != nil {
		return err
	}
	if a.Reason.IsError() {
		// The client refused the message: the exchange ends here, with no PUBREL.
		c.client.Refused(a.PacketID)
		return nil
	}
	code := packet.Success
	if !c.client.Received(a.PacketID) {
		code = packet.PacketIDNotFound
	}
	c.writeAck(packet.PUBREL, a.PacketID, code, nil, &c.batch)
	return nil
}

func (c *conn) onPubrel(flags byte, body []byte) error {
	var a packet.Pubrel
	if err := a.Decode(flags, body, c.version); err != nil {
		return err
	}
	code := packet.Success
	if !c.client.Release(a.PacketID) {
		code = packet.PacketIDNotFound
	}
	c.writeAck(packet.PUBCOMP, a.PacketID, code, nil, &c.batch)
	return nil
}

func (c *conn) onSubscribe(flags byte, body []byte) error {
	// The requests and the results stay on the stack for the usual few filters, and the decoded
	// filters go to the reader's pooled state: a device subscribes as it connects, and garbage
	// made then would sit between its connection's long-lived objects (partly used spans,
	// resident for as long as the connections are).
	const few = 4
	var (
		reqsBuf [few]broker.SubscribeRequest
		resBuf  [few]broker.SubscribeResult
	)
	st := c.rd.st // the packet's body is in its buffer
	p := packet.Subscribe{Subscriptions: st.subscriptions}
	err := p.Decode(flags, body, c.version)
	st.subscriptions = p.Subscriptions
	if err != nil {
		return err
	}
	var subID uint32
	if len(p.Props.SubscriptionIDs) > 0 {
		subID = p.Props.SubscriptionIDs[0]
	}
	n := len(p.Subscriptions)
	reqs, results := reqsBuf[:], resBuf[:]
	if n > few {
		reqs, results = make([]broker.SubscribeRequest, n), make([]broker.SubscribeResult, n)
	}
	reqs = reqs[:n]
	for i, s := range p.Subscriptions {
		// The codec has already refused no local on a shared subscription (a protocol error).
		f := string(s.Filter)
		reqs[i] = broker.SubscribeRequest{
			Filter: f, QoS: s.QoS, NoLocal: s.NoLocal, RetainAsPublished: s.RetainAsPublished,
			RetainHandling: s.RetainHandling, ID: subID,
		}
	}
	if c.isPeer {
		results = c.peerSubscribe(reqs)
	} else {
		results = c.client.SubscribeInto(results, reqs)
	}
	// On the stack, with room for the usual few reasons (see writeSuback).
	var reasons [8]packet.ReasonCode
	ack := packet.Suback{PacketID: p.PacketID}
	if len(results) <= len(reasons) {
		ack.Reasons = reasons[:len(results)]
	} else {
		ack.Reasons = make([]packet.ReasonCode, len(results))
	}
	var refused []string
	for i, r := range results {
		ack.Reasons[i] = c.subackCode(r)
		if r.Err != nil {
			refused = append(refused, fmt.Sprintf("%q: %v", reqs[i].Filter, r.Err))
		}
	}
	if len(refused) > 0 && c.version == packet.V5 && c.problemInfo {
		ack.Props.ReasonString = []byte(strings.Join(refused, "; "))
		ack.Props.Set(packet.PropReasonString)
	}
	c.writeSuback(&ack, &c.batch)
	c.client.SendRetained(results)
	return nil
}

func (c *conn) subackCode(r broker.SubscribeResult) packet.ReasonCode {
	if r.Err == nil {
		return packet.ReasonCode(r.QoS)
	}
	if c.version != packet.V5 {
		return packet.V3SubackFailure
	}
	switch {
	case errors.Is(r.Err, broker.ErrFilterInvalid):
		return packet.TopicFilterInvalid
	case errors.Is(r.Err, broker.ErrNotAuthorized):
		return packet.NotAuthorized
	case errors.Is(r.Err, broker.ErrQuotaExceeded):
		return packet.QuotaExceeded
	case errors.Is(r.Err, broker.ErrSharedNotSupported):
		return packet.SharedSubscriptionsNotSupported
	default:
		return packet.UnspecifiedError
	}
}

func (c *conn) onUnsubscribe(flags byte, body []byte) error {
	var p packet.Unsubscribe
	if err := p.Decode(flags, body, c.version); err != nil {
		return err
	}
	filters := make([]string, len(p.Filters))
	for i, f := range p.Filters {
		filters[i] = string(f)
	}
	existed := c.client.Unsubscribe(filters)
	ack := &packet.Unsuback{PacketID: p.PacketID}
	if c.version == packet.V5 {
		ack.Reasons = make([]packet.ReasonCode, len(existed))
		for i, ok := range existed {
			if !ok {
				ack.Reasons[i] = packet.NoSubscriptionExisted
			}
		}
	}
	c.writePacket(ack, &c.batch)
	return nil
}

func (c *conn) onDisconnect(flags byte, body []byte) error {
	var p packet.Disconnect
	if err := p.Decode(flags, body, c.version); err != nil {
		return err
	}
	if c.version == packet.V5 {
		if p.Props.Has(packet.PropSessionExpiry) {
			if c.sessionExpiry == 0 && p.Props.SessionExpiry != 0 {
				return protoErr(packet.ProtocolError, "session expiry cannot be set on DISCONNECT after CONNECT set zero")
			}
			c.sessionExpiry = p.Props.SessionExpiry
		}
		c.publishWill = p.Reason == packet.DisconnectWithWill
	}
	c.graceful = true
	return nil
}

// borrowMessageProps copies MQTT 5 publish properties onto a borrowed Message without copying
// bytes; users is reused storage for the user properties.
func borrowMessageProps(pr *packet.Properties, m *message.Message, users *[]message.UserProperty) error {
	m.Props.PayloadFormat = pr.PayloadFormat
	if pr.Has(packet.PropMessageExpiry) {
		m.ExpiryInterval = pr.MessageExpiry
	}
	if pr.Has(packet.PropContentType) {
		m.Props.ContentType = bytesString(pr.ContentType)
	}
	if pr.Has(packet.PropResponseTopic) {
		if err := topic.ValidName(bytesString(pr.ResponseTopic)); err != nil {
			return protoErr(packet.ProtocolError, "response topic: "+err.Error())
		}
		m.Props.ResponseTopic = bytesString(pr.ResponseTopic)
	}
	if pr.Has(packet.PropCorrelationData) {
		m.Props.CorrelationData = pr.CorrelationData
	}
	for _, u := range pr.User {
		*users = append(*users, message.UserProperty{Key: bytesString(u.Key), Value: bytesString(u.Value)})
	}
	if len(*users) > 0 {
		m.Props.User = *users
	}
	return nil
}
