package bench

import (
	"errors"
	"fmt"
	"math"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ternmq/tern/internal/mqtt/packet"
)

// publisher sends one publisher's messages. It encodes PUBLISH packets back to back into one
// buffer and writes them in batches; at QoS 1 and 2 an in-flight window of packet identifiers
// bounds what is unacknowledged, and a separate goroutine (readAcks) reads the
// acknowledgements and gives identifiers back.
type publisher struct {
	idx   uint32
	run   uint32
	c     *mqttConn
	qos   byte
	t0    time.Time
	count uint64 // measured messages to send; 0 means until the deadline
	warm  uint64 // warm-up messages sent first
	rate  float64

	pkt      packet.Publish
	payload  []byte
	buf      []byte
	pktSize  int
	batchMax int // flush when the buffer holds this many bytes

	window int
	free   chan uint16 // free packet identifiers (QoS 1/2)
	wmu    sync.Mutex  // serialises writes: batches here, PUBRELs from readAcks

	stop       <-chan struct{} // closed at the publish deadline or when the run is aborted
	readerDone chan struct{}

	// Written by the publishing goroutine, read after sentDone.
	written  uint64 // packets fully written, warm-up included
	firstNs  int64  // send time of the first measured message, -1 before it
	lastNs   int64  // when the last measured message was written
	writeErr error
	wokeNs   int64 // at a fixed rate: when the publisher last woke from waiting for the schedule

	acked   atomic.Uint64 // PUBACK or PUBCOMP received
	refused atomic.Uint64 // PUBACK/PUBREC with a failure reason code
	noSubs  atomic.Uint64 // v5 "no matching subscribers"
	readErr error         // why readAcks stopped (set before readerDone closes)
}

func newPublisher(idx, run uint32, c *mqttConn, cfg *Config, t0 time.Time, stop <-chan struct{}) (*publisher, error) {
	p := &publisher{
		idx: idx, run: run, c: c, qos: cfg.QoS, t0: t0, count: uint64(cfg.Count),
		warm: uint64(cfg.Warmup), rate: cfg.Rate, stop: stop, readerDone: make(chan struct{}),
		firstNs: -1,
	}
	p.payload = make([]byte, cfg.Size)
	for i := stampLen; i < len(p.payload); i++ {
		p.payload[i] = byte('a' + i%26)
	}
	p.pkt = packet.Publish{QoS: cfg.QoS, Topic: []byte(fmt.Sprintf("%s/%d", cfg.Topic, idx)), Payload: p.payload}
	if cfg.QoS > 0 {
		p.pkt.PacketID = 1
	}
	one, err := p.pkt.Append(nil, c.v)
	if err != nil {
		return nil, fmt.Errorf("publisher %d: %w", idx, err)
	}
	p.pktSize = len(one)
	p.batchMax = max(cfg.BatchBytes, p.pktSize)
	p.buf = make([]byte, 0, p.batchMax+p.pktSize)
	if cfg.QoS > 0 {
		p.window = cfg.Inflight
		if p.window <= 0 {
			p.window = 64
			if c.v == packet.V5 {
				p.window = 65535
			}
		}
		if c.receiveMax > 0 && int(c.receiveMax) < p.window {
			p.window = int(c.receiveMax)
		}
		p.free = make(chan uint16, p.window)
		for id := 1; id <= p.window; id++ {
			p.free <- uint16(id)
		}
	}
	return p, nil
}

// now is monotonic nanoseconds since the run's shared start.
func (p *publisher) now() int64 { return int64(time.Since(p.t0)) }

// scheduled is when message i (warm-up included) is due at a fixed rate, in nanoseconds since
// the run's start.
func (p *publisher) scheduled(i uint64) int64 {
	return int64(float64(i) / p.rate * float64(time.Second))
}

// appendOne encodes one PUBLISH into the batch buffer: the hot path, allocation-free.
//
// At a fixed rate the stamp is the time the message was scheduled, not the time it is written:
// when the broker holds the publisher up (a full socket buffer, a full in-flight window), the
// messages due meanwhile go out late, and their latency must include that wait, or a stall
// would show in the one message in hand when it began and in no other (coordinated omission).
// One lateness is the load tool's own and is left out: a publisher ahead of schedule sleeps,
// and Go's timers wake it up to a millisecond late (more on a loaded machine); a message that
// fell due during that oversleep is stamped with the time the publisher woke. The broker
// cannot have held up a publisher that was asleep, so no stall hides there. As fast as
// possible there is no schedule, and the stamp is the time of writing.
func (p *publisher) appendOne(i uint64, id uint16) {
	warm := i < p.warm
	seq := i
	if !warm {
		seq = i - p.warm
	}
	now := p.now()
	if !warm && p.firstNs < 0 {
		p.firstNs = now
	}
	sentNs := now
	if p.rate > 0 {
		sentNs = max(p.scheduled(i), p.wokeNs)
	}
	putStamp(p.payload, p.run, p.idx, warm, seq, sentNs)
	p.pkt.PacketID = id
	p.buf, _ = p.pkt.Append(p.buf, p.c.v) // the packet was validated in newPublisher
}

func (p *publisher) stopped() bool {
	select {
	case <-p.stop:
		return true
	default:
		return false
	}
}

// flush writes the batch. After a failed or partial write it counts only the whole packets
// that went out (every packet of a run has the same size) and reports false.
func (p *publisher) flush() bool {
	if len(p.buf) == 0 {
		return p.writeErr == nil
	}
	p.wmu.Lock()
	n, err := p.c.nc.Write(p.buf)
	p.wmu.Unlock()
	p.written += uint64(n / p.pktSize)
	if p.written > p.warm {
		p.lastNs = p.now()
	}
	p.buf = p.buf[:0]
	if err != nil {
		// The write deadline is the publish deadline: hitting it is the duration bound, whether
		// or not the stop timer has fired yet.
		p.writeErr = err
		if errors.Is(err, os.ErrDeadlineExceeded) {
			p.writeErr = errStopped
		}
		return false
	}
	return true
}

var errStopped = errors.New("stopped at the deadline")

// acquire takes a packet identifier from the window, flushing first when it must wait.
func (p *publisher) acquire() (uint16, bool) {
	select {
	case id := <-p.free:
		return id, true
	default:
	}
	if !p.flush() {
		return 0, false
	}
	select {
	case id := <-p.free:
		return id, true
	case <-p.stop:
		return 0, false
	case <-p.readerDone:
		return 0, false
	}
}

// publish sends every message, then reports through sentDone. It stops at the count, at the
// deadline (stop), or on a write error.
func (p *publisher) publish(sentDone func()) {
	defer sentDone()
	total := p.warm + p.count
	if p.count == 0 {
		total = math.MaxUint64
	}
	batchMsgs := max(1, p.batchMax/p.pktSize)
	var i uint64
	var timer *time.Timer
	for i < total && !p.stopped() {
		n := uint64(batchMsgs)
		if p.rate > 0 {
			due := uint64(float64(time.Since(p.t0))/float64(time.Second)*p.rate) + 1
			if i >= due {
				// Ahead of schedule: sleep until the next message is due.
				next := p.t0.Add(time.Duration(p.scheduled(i)))
				d := time.Until(next)
				if timer == nil {
					timer = time.NewTimer(d)
				} else {
					timer.Reset(d)
				}
				select {
				case <-timer.C:
				case <-p.stop:
				}
				p.wokeNs = p.now()
				continue
			}
			n = min(n, due-i)
		}
		n = min(n, total-i)
		for j := uint64(0); j < n; j++ {
			var id uint16
			if p.qos > 0 {
				var ok bool
				if id, ok = p.acquire(); !ok {
					return
				}
			}
			p.appendOne(i, id)
			i++
		}
		if !p.flush() {
			return
		}
	}
	if timer != nil {
		timer.Stop()
	}
}

// sent is the number of measured messages written.
func (p *publisher) sent() uint64 {
	if p.written <= p.warm {
		return 0
	}
	return p.written - p.warm
}

// waitAcks waits until every packet identifier is back (all acknowledged) or until done.
func (p *publisher) waitAcks(done <-chan struct{}) {
	if p.qos == 0 {
		return
	}
	for k := 0; k < p.window; k++ {
		select {
		case <-p.free:
		case <-done:
			return
		case <-p.readerDone:
			return
		}
	}
}

// readAcks reads what the broker sends a publisher: PUBACK, PUBREC (answered with PUBREL,
// batched), PUBCOMP, and a DISCONNECT if the broker ends the connection.
func (p *publisher) readAcks() {
	defer close(p.readerDone)
	var (
		ack  packet.Puback
		rec  packet.Pubrec
		comp packet.Pubcomp
		rel  packet.Pubrel
		out  = make([]byte, 0, 8192)
	)
	give := func(id uint16) {
		select {
		case p.free <- id:
		default: // an identifier we did not lend: ignore
		}
	}
	for {
		typ, flags, body, err := p.c.r.Next()
		if err != nil {
			p.readErr = err
			return
		}
		switch typ {
		case packet.PUBACK:
			if err := ack.Decode(flags, body, p.c.v); err != nil {
				p.readErr = fmt.Errorf("bad PUBACK: %w", err)
				return
			}
			p.account(ack.Reason)
			give(ack.PacketID)
		case packet.PUBREC:
			if err := rec.Decode(flags, body, p.c.v); err != nil {
				p.readErr = fmt.Errorf("bad PUBREC: %w", err)
				return
			}
			if rec.Reason.IsError() {
				p.account(rec.Reason)
				give(rec.PacketID)
				continue
			}
			if rec.Reason == packet.NoMatchingSubscribers {
				p.noSubs.Add(1)
			}
			rel.PacketID = rec.PacketID
			out, _ = rel.Append(out, p.c.v)
		case packet.PUBCOMP:
			if err := comp.Decode(flags, body, p.c.v); err != nil {
				p.readErr = fmt.Errorf("bad PUBCOMP: %w", err)
				return
			}
			p.acked.Add(1)
			give(comp.PacketID)
		case packet.DISCONNECT:
			p.readErr = fmt.Errorf("broker disconnected the publisher: %s", disconnectReason(flags, body, p.c.v))
			return
		case packet.PINGRESP:
		default:
			p.readErr = fmt.Errorf("unexpected %s from the broker", packet.TypeName(typ))
			return
		}
		if len(out) > 0 && (p.c.r.Buffered() == 0 || len(out) >= 4096) {
			p.wmu.Lock()
			_, err := p.c.nc.Write(out)
			p.wmu.Unlock()
			out = out[:0]
			if err != nil {
				p.readErr = err
				return
			}
		}
	}
}

func (p *publisher) account(r packet.ReasonCode) {
	switch {
	case r.IsError():
		p.refused.Add(1)
	case r == packet.NoMatchingSubscribers:
		p.noSubs.Add(1)
		p.acked.Add(1)
	default:
		p.acked.Add(1)
	}
}
