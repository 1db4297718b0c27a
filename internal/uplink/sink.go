package uplink

import (
	"sync"
	"time"
	"unsafe"

	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/linkprop"
	"github.com/ternmq/tern/internal/mqtt/packet"
	"github.com/ternmq/tern/internal/mqtt/pubprops"
)

// sink is the trunk session's connection as the core sees it: each delivery becomes a PUBLISH to
// the designated router, whose PUBACK completes it (acked). It keeps to the designated router's
// Receive Maximum and Maximum Packet Size, and to drain_rate: past them it answers Busy, and tells
// the core when there is room again (Drained) — a forwarder that ignores the receiver's window
// gets itself disconnected (mosquitto#3002).
//
// The core calls Send with the trunk session's lock held, so the sink never calls the core from
// there; the link's reader and the pacing timer call the core (Acked, Drained) outside its lock.
type sink struct {
	w      writer
	origin string
	// window is how many PUBLISH may await their PUBACK: the link's inflight setting within the
	// designated router's Receive Maximum. maxPacket is its Maximum Packet Size (0: none).
	window    int
	maxPacket int
	stats     *Stats

	mu       sync.Mutex
	inflight map[uint16]struct{}
	// pending holds deliveries sent again after a reconnect (the core sends them all at once)
	// that the window or the pacing held back; nothing new goes before them.
	pending []broker.Delivery
	// wantRoom: a Send answered Busy, so the core waits for Drained.
	wantRoom bool
	pace     *pacer
	timer    *time.Timer
	closed   bool
	// trunk is the core's side, set before deliveries start.
	trunk trunkClient
}

// writer puts an encoded delivery on the wire.
type writer interface {
	// writePublish encodes and queues d; it returns Busy for a QoS 0 message when the
	// connection's buffer is full, TooLarge past maxPacket.
	writePublish(d broker.Delivery, origin string, maxPacket int) broker.SendResult
}

// trunkClient is what the sink and the link need of the trunk's broker.Client.
type trunkClient interface {
	Acked(packetID uint16) bool
	Drained()
}

func newSink(w writer, origin string, window, maxPacket int, rate float64, stats *Stats) *sink {
	return &sink{w: w, origin: origin, window: max(window, 1), maxPacket: maxPacket, stats: stats,
		inflight: map[uint16]struct{}{}, pace: newPacer(rate)}
}

// Send implements broker.Sink.
func (k *sink) Send(d broker.Delivery) broker.SendResult {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		// A QoS 1/2 delivery stays in flight in the core and goes again on the next connection.
		return broker.Sent
	}
	if d.QoS == 0 {
		r := k.w.writePublish(d, k.origin, k.maxPacket)
		if r == broker.Sent {
			k.stats.Sent.Add(1)
		}
		return r
	}
	if d.Dup {
		// Sent again after a reconnect: the core expects it to go, whatever the window is now.
		k.stats.Resent.Add(1)
		if len(k.pending) > 0 || !k.mayLocked(time.Now()) {
			k.pending = append(k.pending, d)
			return broker.Sent
		}
		k.sendLocked(d)
		return broker.Sent
	}
	if len(k.pending) > 0 || !k.mayLocked(time.Now()) {
		k.wantRoom = true
		return broker.Busy
	}
	return k.sendLocked(d)
}

// mayLocked reports whether one more delivery may go now, taking a pacing token for it; when
// only the pacing holds it back, the timer is armed. The caller holds k.mu.
func (k *sink) mayLocked(now time.Time) bool {
	if len(k.inflight) >= k.window {
		return false
	}
	if wait := k.pace.take(now); wait > 0 {
		k.armLocked(wait)
		return false
	}
	return true
}

// sendLocked writes a QoS 1/2 delivery. The caller holds k.mu.
func (k *sink) sendLocked(d broker.Delivery) broker.SendResult {
	r := k.w.writePublish(d, k.origin, k.maxPacket)
	switch r {
	case broker.Sent:
		k.inflight[d.PacketID] = struct{}{}
		k.stats.Sent.Add(1)
	case broker.TooLarge:
		k.stats.TooLarge.Add(1)
		if d.Dup {
			// The core ignores what its re-sends come to: complete it, as it does for a new one.
			go k.trunk.Acked(d.PacketID)
		}
	}
	return r
}

// acked completes a delivery the designated router acknowledged, sends what the window held back,
// and tells the core when it may send again.
func (k *sink) acked(pid uint16) {
	k.mu.Lock()
	delete(k.inflight, pid)
	room := k.flushLocked()
	k.mu.Unlock()
	k.trunk.Acked(pid)
	if room {
		k.trunk.Drained()
	}
}

// flushLocked sends held-back deliveries as far as the window and the pacing allow, and reports
// whether the core, which was told Busy, may send again. The caller holds k.mu.
func (k *sink) flushLocked() bool {
	if k.closed {
		return false
	}
	now := time.Now()
	for len(k.pending) > 0 && k.mayLocked(now) {
		d := k.pending[0]
		k.pending[0] = broker.Delivery{}
		k.pending = k.pending[1:]
		k.sendLocked(d)
	}
	if len(k.pending) > 0 || !k.wantRoom || len(k.inflight) >= k.window {
		return false
	}
	k.wantRoom = false
	return true
}

// armLocked makes the timer wake the sink when the pacing allows the next send. The caller holds
// k.mu.
func (k *sink) armLocked(wait time.Duration) {
	if k.timer != nil || k.closed {
		return
	}
	k.timer = time.AfterFunc(wait, func() {
		k.mu.Lock()
		k.timer = nil
		room := k.flushLocked()
		k.mu.Unlock()
		if room {
			k.trunk.Drained()
		}
	})
}

// room is the connection's (netio.Events.Room): its buffer, which refused a QoS 0 message, has
// drained.
func (k *sink) room() {
	k.mu.Lock()
	closed := k.closed
	k.mu.Unlock()
	if !closed && k.trunk != nil {
		k.trunk.Drained()
	}
}

// close stops the sink: the connection is gone.
func (k *sink) close() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.closed = true
	k.pending = nil
	if k.timer != nil {
		k.timer.Stop()
		k.timer = nil
	}
}

// Release implements broker.Sink: links never take part in QoS 2's release (QoS 2 rides as QoS 1).
func (k *sink) Release(uint16) {}

// Close implements broker.Sink: the core ends the trunk's connection (shutdown); closeConn ends
// the upstream connection, which ends the link's session.
func (k *sink) Close(error) {
	k.mu.Lock()
	w := k.w
	k.mu.Unlock()
	if c, ok := w.(interface{ closeNow() }); ok {
		c.closeNow()
	}
}

// Drained implements broker.Sink; the sink never answers Congested, so this is never waited on.
func (k *sink) Drained() <-chan struct{} { return closedCh }

var closedCh = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// pacer is a token bucket for drain_rate: a tenth of a second's worth of burst.
type pacer struct {
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
}

func newPacer(rate float64) *pacer {
	if rate <= 0 {
		return nil
	}
	b := max(1, rate/10)
	return &pacer{rate: rate, burst: b, tokens: b}
}

// take takes a token and returns 0, or returns how long until one is there.
func (p *pacer) take(now time.Time) time.Duration {
	if p == nil {
		return 0
	}
	if !p.last.IsZero() {
		p.tokens = min(p.burst, p.tokens+now.Sub(p.last).Seconds()*p.rate)
	}
	p.last = now
	if p.tokens >= 1 {
		p.tokens--
		return 0
	}
	return max(time.Duration((1-p.tokens)/p.rate*float64(time.Second)), time.Millisecond)
}

// appendPublish encodes d as the PUBLISH forwarded upstream: QoS 2 as QoS 1 with tern-qos, the
// message's properties and remaining expiry, its sender, this router's id and the delivery's
// number. Link properties the message carried itself (a local publisher could forge them) are
// left out. scratch holds the number's digits; p is reused.
func appendPublish(dst []byte, p *packet.Publish, scratch []byte, d broker.Delivery, origin string) ([]byte, []byte, error) {
	m := d.Msg
	p.Dup, p.QoS, p.Retain, p.PacketID = d.Dup, min(d.QoS, 1), d.Retain, d.PacketID
	if d.QoS == 0 {
		p.PacketID, p.Dup = 0, false
	}
	p.Topic = stringBytes(m.Topic)
	p.Payload = m.Payload
	p.Props.Reset()
	pr := &p.Props
	pubprops.Put(pr, m, d.Expiry, linkprop.NotLinkKey)
	pr.User, scratch = linkprop.Tags{Origin: origin, Seq: d.Seq, QoS2: d.QoS == 2}.Append(pr.User, scratch[:0])
	out, err := p.Append(dst, packet.V5)
	return out, scratch, err
}

// stringBytes views a string as bytes without copying; the encoder only reads it.
func stringBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }
