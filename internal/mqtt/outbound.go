package mqtt

import (
	"encoding/binary"
	"errors"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/mqtt/packet"
)

var errSlowConsumer = errors.New("slow consumer: outgoing buffer full for too long")

// outbox is a connection's outgoing byte queue. Producers (the core delivering messages, the
// connection's own reader answering packets) append encoded packets under mu; one flusher
// goroutine, started on demand and gone when the queue is empty, writes everything pending with
// one system call. An idle connection has neither a flusher nor buffers.
type outbox struct {
	mu sync.Mutex
	// buf collects packets in cur's memory; spare is the buffer being written or ready for the
	// next swap. Both come from a pool and go back when the connection is idle.
	buf        []byte
	cur, spare *writeBuf
	flushing   bool
	closed     bool
	// closeAfter ends the connection once everything pending is written (a DISCONNECT was queued).
	closeAfter error
	// draining: the reader is discarding the client's last bytes before closing (see drain).
	draining bool
	// busySince is when QoS 0 messages started being dropped for lack of room.
	busySince time.Time
	// congestedSince is when the buffer passed half full; publishers are asked to pause (see
	// Send) during the first PublishStall of it. drained is closed when it falls below half.
	congestedSince time.Time
	drained        chan struct{}
	// wantDrain: a Busy was returned, so the core wants to hear when there is room.
	wantDrain bool

	// aliases is guarded by mu because encoding happens in wire order.
	aliases *aliasTable
}

// writeBuf is a pooled output buffer with the PUBLISH struct deliveries are encoded through, so an
// idle connection holds neither.
type writeBuf struct {
	b   []byte
	pub packet.Publish
}

var writeBufs = sync.Pool{New: func() any { return &writeBuf{b: make([]byte, 0, 4096)} }}

// maxPooledWriteBuf keeps one burst from pinning a huge buffer in the pool.
const maxPooledWriteBuf = 256 << 10

// kickLocked makes sure pending bytes get written: by a flusher goroutine, or, when via (the batch
// of the reader that caused the write) takes this connection, by that reader once it has handled
// what it read (see broker.Batch). Caller holds mu.
func (c *conn) kickLocked(via *broker.Batch) {
	if c.out.flushing || c.out.closed {
		return
	}
	c.out.flushing = true
	if c.wr.Able() && via.Defer(c) {
		return
	}
	go c.flush()
}

// writePacket queues a control packet (acknowledgements, CONNACK, PINGRESP...). via is the
// reader's batch when the reader writes it, else nil.
func (c *conn) writePacket(p packet.Packet, via *broker.Batch) {
	c.out.mu.Lock()
	defer c.out.mu.Unlock()
	if c.out.closed {
		return
	}
	buf, err := p.Append(c.out.bufLocked(), c.version)
	if err != nil {
		c.srv.log.Error("encoding packet", "type", packet.TypeName(p.Type()), "err", err)
		return
	}
	c.out.buf = buf
	c.checkHardLimitLocked()
	c.kickLocked(via)
}

func (o *outbox) bufLocked() []byte {
	if o.cur == nil {
		o.cur = writeBufs.Get().(*writeBuf)
		o.buf = o.cur.b[:0]
	}
	return o.buf
}

// checkHardLimitLocked closes a connection whose queue grew past every bound: the client reads
// nothing while it keeps sending.
func (c *conn) checkHardLimitLocked() {
	if len(c.out.buf) > c.srv.cfg.hardOutboundLimit() && !c.out.closed {
		c.srv.stats.SlowConsumers.Add(1)
		c.closeLocked(errSlowConsumer)
	}
}

// Send implements broker.Sink.
func (c *conn) Send(d broker.Delivery) broker.SendResult {
	o := &c.out
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		// The session keeps QoS 1/2 deliveries in flight and re-sends them on reconnect.
		return broker.Sent
	}
	if d.QoS == 0 && len(o.buf) >= c.srv.cfg.OutboundBuffer {
		now := time.Now()
		if o.busySince.IsZero() {
			o.busySince = now
		} else if c.srv.cfg.SlowConsumerTimeout > 0 && now.Sub(o.busySince) > c.srv.cfg.SlowConsumerTimeout {
			c.srv.stats.SlowConsumers.Add(1)
			c.closeLocked(errSlowConsumer)
		}
		o.wantDrain = true
		return broker.Busy
	}
	start := len(o.bufLocked())
	buf, err := c.appendPublish(o.buf, d)
	if err != nil {
		c.srv.log.Error("encoding publish", "client", c.clientID, "err", err)
		return broker.TooLarge
	}
	if c.maxOutPacket > 0 && len(buf)-start > int(c.maxOutPacket) {
		o.buf = buf[:start]
		return broker.TooLarge
	}
	o.buf = buf
	c.checkHardLimitLocked()
	c.kickLocked(d.Batch)
	return c.congestionLocked()
}

// congestionLocked reports Congested while the buffer is past half full, but only during the first
// PublishStall of that: a client that does not catch up in that time stops slowing its publishers
// and is left to the drop and slow-consumer rules.
func (c *conn) congestionLocked() broker.SendResult {
	o := &c.out
	if len(o.buf) < c.srv.cfg.OutboundBuffer/2 || c.srv.cfg.PublishStall <= 0 {
		return broker.Sent
	}
	now := time.Now()
	if o.congestedSince.IsZero() {
		o.congestedSince = now
	}
	if now.Sub(o.congestedSince) > c.srv.cfg.PublishStall {
		return broker.Sent
	}
	return broker.Congested
}

// Drained implements broker.Sink.
func (c *conn) Drained() <-chan struct{} {
	o := &c.out
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.drained == nil {
		o.drained = make(chan struct{})
		if o.closed || len(o.buf) < c.srv.cfg.OutboundBuffer/2 {
			close(o.drained)
			ch := o.drained
			o.drained = nil
			return ch
		}
	}
	return o.drained
}

// unblockLocked ends a congestion episode: publishers waiting on Drained go on.
func (o *outbox) unblockLocked() {
	o.congestedSince = time.Time{}
	if o.drained != nil {
		close(o.drained)
		o.drained = nil
	}
}

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
	}
	c.disconnect(code, reason.Error())
}

// disconnect sends an MQTT 5 DISCONNECT with the reason (nothing for 3.1.1, which has no server
// DISCONNECT) and closes once it is written.
func (c *conn) disconnect(code packet.ReasonCode, reason string) {
	c.out.mu.Lock()
	defer c.out.mu.Unlock()
	if c.out.closed || c.out.closeAfter != nil {
		return
	}
	if c.version == packet.V5 {
		d := &packet.Disconnect{Reason: code}
		if reason != "" && c.problemInfo {
			d.Props.ReasonString = []byte(reason)
			d.Props.Set(packet.PropReasonString)
		}
		if buf, err := d.Append(c.out.bufLocked(), c.version); err == nil {
			c.out.buf = buf
		}
	}
	c.endLocked(errors.New(reason))
}

// releaseLocked returns idle buffers to the pool.
func (o *outbox) releaseLocked() {
	o.unblockLocked()
	if o.cur != nil && cap(o.buf) <= maxPooledWriteBuf {
		o.cur.b = o.buf[:0]
		writeBufs.Put(o.cur)
	}
	if o.spare != nil {
		writeBufs.Put(o.spare)
	}
	o.buf, o.cur, o.spare = nil, nil, nil
}

// appendPublish encodes a delivery. Plain deliveries of a message going to many connections use
// one shared encoding per wire variant, patched here with this delivery's flags and packet id.
func (c *conn) appendPublish(dst []byte, d broker.Delivery) ([]byte, error) {
	m := d.Msg
	if d.Many && len(d.SubIDs) == 0 && m.Expires == 0 && c.out.aliases == nil {
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
	c.out.bufLocked()
	p := &c.out.cur.pub
	m := d.Msg
	p.Dup, p.QoS, p.Retain, p.PacketID = d.Dup, d.QoS, d.Retain, d.PacketID
	if d.QoS == 0 {
		p.PacketID = 0
	}
	p.Topic = stringBytes(m.Topic)
	p.Payload = m.Payload
	p.Props.Reset()
	if c.version == packet.V5 {
		setMessageProps(&p.Props, m, d.SubIDs)
		if withAlias && c.out.aliases != nil {
			if alias, known := c.out.aliases.lookup(m.Topic); alias != 0 {
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
