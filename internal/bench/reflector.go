package bench

import (
	"net"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/ternmq/tern/internal/mqtt/packet"
)

// Reflector is a trivial in-process MQTT "broker" that shows the load tool's own ceiling: it
// accepts any CONNECT and SUBSCRIBE, and forwards every PUBLISH's bytes unchanged to every
// subscribed connection (to one of the $share subscribers, in turn), ignoring filters,
// retained messages, sessions and everything else a broker does. QoS 1 and 2 flows are answered
// as a broker would. All clients must speak the same MQTT version.
type Reflector struct {
	ln     net.Listener
	subs   atomic.Pointer[[]*rconn] // copy on write
	shared atomic.Pointer[[]*rconn]
	rr     atomic.Uint64
	mu     sync.Mutex // guards writers of subs/shared and conns
	conns  map[*rconn]struct{}
	wg     sync.WaitGroup
	closed atomic.Bool
	// filter, for tests, says how many copies of a message to forward (default one).
	filter func(payload []byte) int
	// pause, for tests, runs on a connection's reading goroutine before a PUBLISH is forwarded:
	// while it blocks, the reflector reads nothing more from that connection (a stalled broker).
	pause func(payload []byte)
}

// StartReflector listens on addr (e.g. "127.0.0.1:0") and serves until Close.
func StartReflector(addr string) (*Reflector, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	r := &Reflector{ln: ln, conns: map[*rconn]struct{}{}}
	r.subs.Store(&[]*rconn{})
	r.shared.Store(&[]*rconn{})
	r.wg.Add(1)
	go r.accept()
	return r, nil
}

// Addr is the listening address, host:port.
func (r *Reflector) Addr() string { return r.ln.Addr().String() }

// Close stops the listener and every connection.
func (r *Reflector) Close() error {
	r.closed.Store(true)
	err := r.ln.Close()
	r.mu.Lock()
	for c := range r.conns {
		c.close()
	}
	r.mu.Unlock()
	r.wg.Wait()
	return err
}

func (r *Reflector) accept() {
	defer r.wg.Done()
	for {
		nc, err := r.ln.Accept()
		if err != nil {
			return
		}
		if tc, ok := nc.(*net.TCPConn); ok {
			_ = tc.SetNoDelay(true)
		}
		if !r.serveConn(nc) {
			return
		}
	}
}

// serveConn serves one client connection until it or the reflector closes; false (and nc
// closed) when the reflector is already closed. Tests hand it one end of a net.Pipe, which
// buffers nothing: a reflector that stops reading stops the writer at once.
func (r *Reflector) serveConn(nc net.Conn) bool {
	c := newRconn(nc)
	r.mu.Lock()
	if r.closed.Load() {
		r.mu.Unlock()
		_ = nc.Close()
		return false
	}
	r.conns[c] = struct{}{}
	r.wg.Add(2)
	r.mu.Unlock()
	go func() { defer r.wg.Done(); c.writeLoop() }()
	go func() { defer r.wg.Done(); r.serve(c) }()
	return true
}

func (r *Reflector) register(list *atomic.Pointer[[]*rconn], c *rconn, add bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := *list.Load()
	next := make([]*rconn, 0, len(old)+1)
	for _, o := range old {
		if o != c {
			next = append(next, o)
		}
	}
	if add {
		next = append(next, c)
	}
	list.Store(&next)
}

func (r *Reflector) serve(c *rconn) {
	defer func() {
		r.register(&r.subs, c, false)
		r.register(&r.shared, c, false)
		r.mu.Lock()
		delete(r.conns, c)
		r.mu.Unlock()
		c.close()
	}()
	rd := packet.NewReader(c.nc, 256<<10, 0)
	v := packet.V311
	var (
		pub  packet.Publish
		ack  packet.Puback
		rec  packet.Pubrec
		rel  packet.Pubrel
		comp packet.Pubcomp
		fan  = make([]byte, 0, 80<<10) // PUBLISH packets for every non-shared subscriber
		own  = make([]byte, 0, 20<<10) // acknowledgements for this connection
	)
	for {
		typ, flags, body, err := rd.Next()
		if err != nil {
			return
		}
		switch typ {
		case packet.CONNECT:
			var cp packet.Connect
			if err := cp.Decode(flags, body, 0); err != nil {
				return
			}
			v = cp.Version
			out, _ := (&packet.Connack{}).Append(nil, v)
			c.send(out)
		case packet.SUBSCRIBE:
			var sp packet.Subscribe
			if err := sp.Decode(flags, body, v); err != nil {
				return
			}
			sa := packet.Suback{PacketID: sp.PacketID}
			for _, s := range sp.Subscriptions {
				sa.Reasons = append(sa.Reasons, packet.ReasonCode(s.QoS))
				if strings.HasPrefix(string(s.Filter), "$share/") {
					r.register(&r.shared, c, true)
				} else {
					r.register(&r.subs, c, true)
				}
			}
			out, _ := sa.Append(nil, v)
			c.send(out)
		case packet.PUBLISH:
			if err := pub.Decode(flags, body, v); err != nil {
				return
			}
			if r.pause != nil {
				r.pause(pub.Payload)
			}
			// Forward the packet as it came: fixed header rebuilt, body untouched.
			start := len(fan)
			fan = append(fan, packet.PUBLISH<<4|flags)
			for n := len(body); ; {
				b := byte(n & 0x7F)
				n >>= 7
				if n > 0 {
					fan = append(fan, b|0x80)
					continue
				}
				fan = append(fan, b)
				break
			}
			fan = append(fan, body...)
			copies := 1
			if r.filter != nil {
				copies = r.filter(pub.Payload)
			}
			one := fan[start:]
			for k := 1; k < copies; k++ {
				fan = append(fan, one...)
			}
			if sh := *r.shared.Load(); len(sh) > 0 {
				for k := 0; k < copies; k++ {
					sh[r.rr.Add(1)%uint64(len(sh))].send(one)
				}
			}
			if copies == 0 || len(*r.subs.Load()) == 0 {
				fan = fan[:start]
			}
			switch pub.QoS {
			case 1:
				ack.PacketID = pub.PacketID
				own, _ = ack.Append(own, v)
			case 2:
				rec.PacketID = pub.PacketID
				own, _ = rec.Append(own, v)
			}
		case packet.PUBREL:
			if rel.Decode(flags, body, v) != nil {
				return
			}
			comp.PacketID = rel.PacketID
			own, _ = comp.Append(own, v)
		case packet.PUBREC: // from a subscriber at QoS 2
			if rec.Decode(flags, body, v) != nil {
				return
			}
			rel.PacketID = rec.PacketID
			own, _ = rel.Append(own, v)
		case packet.PINGREQ:
			own = append(own, packet.PINGRESP<<4, 0)
		case packet.DISCONNECT:
			return
		}
		// Hand on what was gathered when the read buffer runs dry: one outbox append per
		// subscriber for a whole batch of messages.
		if rd.Buffered() == 0 || len(fan) >= 64<<10 || len(own) >= 16<<10 {
			if len(fan) > 0 {
				for _, s := range *r.subs.Load() {
					s.send(fan)
				}
				fan = fan[:0]
			}
			if len(own) > 0 {
				c.send(own)
				own = own[:0]
			}
		}
	}
}

// rconn is one reflector connection with an outbox drained by its own writer goroutine.
type rconn struct {
	nc     net.Conn
	mu     sync.Mutex
	cond   *sync.Cond
	buf    []byte
	spare  []byte
	closed bool
}

const outboxLimit = 4 << 20

func newRconn(nc net.Conn) *rconn {
	c := &rconn{nc: nc, buf: make([]byte, 0, 64<<10), spare: make([]byte, 0, 64<<10)}
	c.cond = sync.NewCond(&c.mu)
	return c
}

// send queues bytes, waiting while the outbox is full (backpressure onto the sender).
func (c *rconn) send(b []byte) {
	c.mu.Lock()
	for len(c.buf) > outboxLimit && !c.closed {
		c.cond.Wait()
	}
	if !c.closed {
		wasEmpty := len(c.buf) == 0
		c.buf = append(c.buf, b...)
		if wasEmpty {
			c.cond.Broadcast()
		}
	}
	c.mu.Unlock()
}

func (c *rconn) writeLoop() {
	for {
		c.mu.Lock()
		for len(c.buf) == 0 && !c.closed {
			c.cond.Wait()
		}
		if c.closed {
			c.mu.Unlock()
			return
		}
		c.buf, c.spare = c.spare[:0], c.buf
		c.cond.Broadcast()
		c.mu.Unlock()
		if _, err := c.nc.Write(c.spare); err != nil {
			c.close()
			return
		}
	}
}

func (c *rconn) close() {
	c.mu.Lock()
	c.closed = true
	c.cond.Broadcast()
	c.mu.Unlock()
	_ = c.nc.Close()
}
