package bench

import (
	"fmt"
	"math/bits"
	"sync/atomic"
	"time"

	"github.com/ternmq/tern/internal/mqtt/packet"
)

// subscriber receives messages through one large read buffer (packet.Reader), decodes each
// PUBLISH into a reused struct, records its latency and sequence, and batches its
// acknowledgements into one write whenever the read buffer runs dry.
type subscriber struct {
	idx   int
	run   uint32
	c     *mqttConn
	t0    time.Time
	nPubs int

	pub  packet.Publish
	ack  packet.Puback
	rec  packet.Pubrec
	rel  packet.Pubrel
	comp packet.Pubcomp
	out  []byte

	hist *Histogram
	// noLatency leaves the histogram empty: the stamps' send times are another process's (Drain).
	noLatency bool
	// seen[p] is a bitset of the measured sequence numbers received from publisher p.
	seen [][]uint64

	unique, dups, foreign, warm uint64

	progress atomic.Uint64 // unique measured deliveries, for the coordinator
	lastNs   atomic.Int64  // arrival time of the last measured delivery
	err      error         // why the read loop stopped, unless it was the run's end
}

func newSubscriber(idx int, run uint32, c *mqttConn, nPubs int, perPub uint64, t0 time.Time) *subscriber {
	s := &subscriber{idx: idx, run: run, c: c, t0: t0, nPubs: nPubs, hist: new(Histogram),
		out: make([]byte, 0, 16<<10), seen: make([][]uint64, nPubs)}
	if perPub > 0 {
		for i := range s.seen {
			s.seen[i] = make([]uint64, (perPub+63)/64)
		}
	}
	return s
}

// handle processes one packet read at time nowNs: the hot path, allocation-free.
func (s *subscriber) handle(typ, flags byte, body []byte, nowNs int64) error {
	v := s.c.v
	switch typ {
	case packet.PUBLISH:
		if err := s.pub.Decode(flags, body, v); err != nil {
			return err
		}
		switch s.pub.QoS {
		case 1:
			s.ack.PacketID = s.pub.PacketID
			s.out, _ = s.ack.Append(s.out, v)
		case 2:
			s.rec.PacketID = s.pub.PacketID
			s.out, _ = s.rec.Append(s.out, v)
		}
		s.record(s.pub.Payload, nowNs)
	case packet.PUBREL:
		if err := s.rel.Decode(flags, body, v); err != nil {
			return err
		}
		s.comp.PacketID = s.rel.PacketID
		s.out, _ = s.comp.Append(s.out, v)
	case packet.DISCONNECT:
		return fmt.Errorf("broker disconnected subscriber %d: %s", s.idx, disconnectReason(flags, body, v))
	case packet.PINGRESP, packet.SUBACK, packet.UNSUBACK:
	default:
		return fmt.Errorf("subscriber %d: unexpected %s", s.idx, packet.TypeName(typ))
	}
	return nil
}

func (s *subscriber) record(payload []byte, nowNs int64) {
	st, ok := readStamp(payload)
	if !ok || st.run != s.run || int(st.pub) >= s.nPubs {
		s.foreign++
		return
	}
	if st.warmup {
		s.warm++
		return
	}
	set := s.seen[st.pub]
	w := st.seq >> 6
	if w >= uint64(len(set)) {
		set = growBits(set, w+1)
		s.seen[st.pub] = set
	}
	bit := uint64(1) << (st.seq & 63)
	if set[w]&bit != 0 {
		s.dups++
		return
	}
	set[w] |= bit
	s.unique++
	if !s.noLatency {
		s.hist.Record(uint64(max(nowNs-st.sentNs, 0)))
	}
	s.progress.Store(s.unique)
	s.lastNs.Store(nowNs)
}

// growBits enlarges a bitset to at least n words, doubling to amortise an unbounded run.
func growBits(set []uint64, n uint64) []uint64 {
	size := max(n, uint64(2*len(set)), 1024)
	ns := make([]uint64, size)
	copy(ns, set)
	return ns
}

// flushAcks writes pending acknowledgements.
func (s *subscriber) flushAcks() error {
	if len(s.out) == 0 {
		return nil
	}
	_, err := s.c.nc.Write(s.out)
	s.out = s.out[:0]
	return err
}

// read runs until the connection's read deadline (moved by the coordinator) or an error.
func (s *subscriber) read(stopping func() bool) {
	for {
		typ, flags, body, err := s.c.r.Next()
		if err != nil {
			if !stopping() && !isEndOfRun(err) {
				s.err = fmt.Errorf("subscriber %d: %w", s.idx, err)
			}
			return
		}
		if err := s.handle(typ, flags, body, int64(time.Since(s.t0))); err != nil {
			s.err = err
			return
		}
		if len(s.out) > 0 && (s.c.r.Buffered() == 0 || len(s.out) >= 16<<10) {
			if err := s.flushAcks(); err != nil {
				if !stopping() {
					s.err = fmt.Errorf("subscriber %d: writing acknowledgements: %w", s.idx, err)
				}
				return
			}
		}
	}
}

// receivedFrom counts the distinct measured messages received from publisher p.
func (s *subscriber) receivedFrom(p int) uint64 {
	var n int
	for _, w := range s.seen[p] {
		n += bits.OnesCount64(w)
	}
	return uint64(n)
}
