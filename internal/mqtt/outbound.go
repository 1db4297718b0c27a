package mqtt

import (
	"encoding/binary"
	"errors"
	"strings"
	"unsafe"

	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/linkprop"
	"github.com/ternmq/tern/internal/mqtt/packet"
	"github.com/ternmq/tern/internal/mqtt/pubprops"
	"github.com/ternmq/tern/internal/netio"
)

// writeBufs pools output buffers with the PUBLISH struct deliveries are encoded through, so an
// idle connection holds neither.
var writeBufs = netio.NewBufPool(func() any { return new(packet.Publish) })

// writePacket queues a control packet (acknowledgements, CONNACK, PINGRESP...). via is the
// reader's batch when the reader writes it, else nil.
func (c *conn) writePacket(p packet.Packet, via *broker.Batch) {
	if buf, ok := c.beginWrite(); ok {
		buf, err := p.Append(buf, c.version)
		c.endWrite(buf, err, p.Type(), via)
	}
}

// writeConnack and writeSuback are writePacket for the two packets every connection starts
// with. They call Append directly, so the packet can live on the caller's stack: given to
// writePacket as a packet.Packet it escapes to the heap, a few hundred bytes per connection.
func (c *conn) writeConnack(p *packet.Connack, via *broker.Batch) {
	if buf, ok := c.beginWrite(); ok {
		buf, err := p.Append(buf, c.version)
		c.endWrite(buf, err, packet.CONNACK, via)
	}
}

func (c *conn) writeSuback(p *packet.Suback, via *broker.Batch) {
	if buf, ok := c.beginWrite(); ok {
		buf, err := p.Append(buf, c.version)
		c.endWrite(buf, err, packet.SUBACK, via)
	}
}

// beginWrite takes the outgoing side's lock and returns its buffer, or reports false (and holds
// no lock) when nothing more will be written.
func (c *conn) beginWrite() ([]byte, bool) {
	o := &c.out
	o.Lock()
	if o.ClosedLocked() {
		o.Unlock()
		return nil, false
	}
	return o.BufLocked(), true
}

// endWrite commits what a packet of type typ appended to beginWrite's buffer and releases the
// lock; an encoding error drops the packet.
func (c *conn) endWrite(buf []byte, err error, typ byte, via *broker.Batch) {
	o := &c.out
	defer o.Unlock()
	if err != nil {
		c.srv.log.Error("encoding packet", "type", packet.TypeName(typ), "err", err)
		return
	}
	o.CommitLocked(buf, via)
}

// Send implements broker.Sink.
func (c *conn) Send(d broker.Delivery) broker.SendResult {
	o := &c.out
	o.Lock()
	defer o.Unlock()
	if o.ClosedLocked() {
		// The session keeps QoS 1/2 deliveries in flight and re-sends them on reconnect.
		return broker.Sent
	}
	if d.QoS == 0 && o.FullLocked() {
		return broker.Busy
	}
	buf := o.BufLocked()
	start := len(buf)
	buf, err := c.appendPublish(buf, d)
	if err != nil {
		c.srv.log.Error("encoding publish", "client", c.clientID(), "err", err)
		return broker.TooLarge
	}
	if c.maxOutPacket > 0 && len(buf)-start > int(c.maxOutPacket) {
		o.SetBufLocked(buf[:start])
		return broker.TooLarge
	}
	o.CommitLocked(buf, d.Batch)
	if o.CongestedLocked() {
		return broker.Congested
	}
	return broker.Sent
}

// Drained implements broker.Sink.
func (c *conn) Drained() <-chan struct{} { return c.out.Drained() }

// Release implements broker.Sink.
func (c *conn) Release(pid uint16) {
	c.writeAck(packet.PUBREL, pid, packet.Success, nil, nil)
}

// Close implements broker.Sink: the core ends this connection (takeover, shutdown).
func (c *conn) Close(reason error) {
	code := packet.ServerShuttingDown
	switch {
	case errors.Is(reason, broker.ErrSessionTakenOver):
		code = packet.SessionTakenOver
	case errors.Is(reason, broker.ErrNotAuthorized):
		code = packet.NotAuthorized
	case errors.Is(reason, broker.ErrAdministrativeAction):
		code = packet.AdministrativeAction
	}
	c.disconnect(code, reason.Error())
}

// disconnect sends an MQTT 5 DISCONNECT with the reason (nothing for 3.1.1, which has no server
// DISCONNECT) and closes once it is written.
func (c *conn) disconnect(code packet.ReasonCode, reason string) {
	o := &c.out
	o.Lock()
	defer o.Unlock()
	if o.EndingLocked() {
		return
	}
	if c.version == packet.V5 {
		d := &packet.Disconnect{Reason: code}
		if reason != "" && c.problemInfo {
			d.Props.ReasonString = []byte(reason)
			d.Props.Set(packet.PropReasonString)
		}
		if buf, err := d.Append(o.BufLocked(), c.version); err == nil {
			o.CommitLocked(buf, nil)
		}
	}
	o.EndLocked(errors.New(reason))
}

// appendPublish encodes a delivery. Plain deliveries of a message going to many connections use
// one shared encoding per wire variant, patched here with this delivery's flags and packet id.
func (c *conn) appendPublish(dst []byte, d broker.Delivery) ([]byte, error) {
	m := d.Msg
	if d.Many && len(d.SubIDs) == 0 && m.Expires == 0 && !c.aliasing && !c.isPeer {
		slot := 0
		if c.version == packet.V5 {
			slot = 4
		}
		if d.QoS > 0 {
			slot += 2
		}
		if d.Retain {
			slot++
		}
		frame := m.Frames.Load(slot)
		if frame == nil {
			enc, err := c.encodePublish(nil, d, false)
			if err != nil {
				return dst, err
			}
			frame = m.Frames.Store(slot, enc)
		}
		start := len(dst)
		dst = append(dst, frame...)
		flags := d.QoS << 1
		if d.Dup {
			flags |= 0x08
		}
		if d.Retain {
			flags |= 0x01
		}
		dst[start] = packet.PUBLISH<<4 | flags
		if d.QoS > 0 {
			_, _, _, hl, _ := packet.ParseFixedHeader(frame)
			binary.BigEndian.PutUint16(dst[start+hl+2+len(m.Topic):], d.PacketID)
		}
		return dst, nil
	}
	return c.encodePublish(dst, d, true)
}

// encodePublish builds the PUBLISH for d; withAlias lets it use an outgoing topic alias.
func (c *conn) encodePublish(dst []byte, d broker.Delivery, withAlias bool) ([]byte, error) {
	p := c.out.ScratchLocked().(*packet.Publish)
	m := d.Msg
	p.Dup, p.QoS, p.Retain, p.PacketID = d.Dup, d.QoS, d.Retain, d.PacketID
	if d.QoS == 0 {
		p.PacketID = 0
	}
	p.Topic = stringBytes(m.Topic)
	p.Payload = m.Payload
	p.Props.Reset()
	if c.version == packet.V5 {
		if c.isPeer {
			pubprops.Put(&p.Props, m, d.Expiry, linkprop.NotLinkKey)
			c.peerTags(p, d)
		} else {
			pubprops.Put(&p.Props, m, d.Expiry, nil)
		}
		p.Props.SubscriptionIDs = append(p.Props.SubscriptionIDs, d.SubIDs...)
		if withAlias && c.aliasing {
			if alias, known := c.aliases().lookup(m.Topic); alias != 0 {
				p.Props.TopicAlias = alias
				p.Props.Set(packet.PropTopicAlias)
				if known {
					p.Topic = nil
				}
			}
		}
	}
	return p.Append(dst, c.version)
}

// stringBytes views a string as bytes without copying; the encoder only reads it.
func stringBytes(s string) []byte {
	return unsafe.Slice(unsafe.StringData(s), len(s))
}

// bytesString views bytes as a string without copying; used only for values the core borrows
// for the duration of a call (see message.Message).
func bytesString(b []byte) string {
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// aliasTable assigns outgoing topic aliases (server to client) up to the client's maximum. It
// keeps the first topics it sees; later topics go without an alias, which is always allowed.
type aliasTable struct {
	max    uint16
	byName map[string]uint16
}

// lookup returns the alias for topic and whether the client already knows it; alias 0 means none.
func (a *aliasTable) lookup(topic string) (alias uint16, known bool) {
	if id, ok := a.byName[topic]; ok {
		return id, true
	}
	if len(a.byName) >= int(a.max) {
		return 0, false
	}
	id := uint16(len(a.byName) + 1)
	// The topic may be borrowed from a publisher's read buffer: keep a copy.
	a.byName[strings.Clone(topic)] = id
	return id, false
}
