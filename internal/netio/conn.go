// Package netio owns what every connection of every face has in common, whatever protocol it
// speaks: the listeners that accept it (with TLS and the identity a client certificate gives), the
// bounded queue of bytes going out to it and the one writer that drains that queue, the batched
// non-blocking writes a reader makes for the connections it delivers to, and the way a connection
// ends: its last bytes written, its write side shut, the client's remaining input drained, then
// closed.
//
// A face (MQTT, mBus, a node link) embeds a Conn in its connection type, encodes its frames straight
// into the Conn's buffer under the Conn's lock, and tells the Conn through Events what the Conn
// cannot know: how to wake its reader and what to do when room returns. netio imports no face.
package netio

import (
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/rawio"
)

// ErrSlowConsumer closes a connection whose client takes its bytes too slowly: its queue passed
// the hard limit, stayed full for Limits.SlowTimeout, or a write blocked for Limits.WriteTimeout.
var ErrSlowConsumer = errors.New("slow consumer: the client does not take its messages")

// Limits bound a face's connections; one value is shared by all of them.
type Limits struct {
	// Soft is the bytes queued past which Full reports true (MQTT drops QoS 0 messages there);
	// 0: never full. Past Soft/2, Congested asks publishers to pause for at most Stall.
	Soft  int
	Stall time.Duration
	// SlowTimeout closes a connection that stayed Full this long; 0: never.
	SlowTimeout time.Duration
	// Hard is the bytes queued past which the connection is closed at once: the client reads
	// nothing while more keeps coming.
	Hard int
	// WriteTimeout bounds one blocking write.
	WriteTimeout time.Duration
	// Linger bounds how long an ending connection waits for the client to close its side.
	Linger time.Duration
}

// Stats are the counters every connection of a face adds to.
type Stats struct {
	SlowConsumers atomic.Uint64 // closed because the client fell behind
	BytesOut      atomic.Uint64
	// Detached counts the connections detached now (Conn.Detach); Attaches the times one took
	// a net.Conn again.
	Detached atomic.Int64
	Attaches atomic.Uint64
}

// Events is what a Conn asks of its face.
type Events interface {
	// StopReading wakes the connection's reader, which is waiting for input, so that it ends (see
	// Conn.ArmRead, which the reader uses so that it cannot miss the wake-up).
	StopReading()
	// Room tells the face that a queue Full refused has drained (MQTT: the core may send again).
	// It is called without the lock.
	Room()
}

// Buf is a pooled output buffer with the face's scratch: whatever it encodes through, so that an
// idle connection holds neither.
type Buf struct {
	B       []byte
	Scratch any
	// op is the state of a reader's non-blocking write of B (Conn.FlushNow).
	op rawio.Op
}

// BufPool pools a face's Bufs.
type BufPool struct{ p sync.Pool }

// NewBufPool returns a pool whose Bufs carry scratch made by newScratch (nil: none).
func NewBufPool(newScratch func() any) *BufPool {
	bp := &BufPool{}
	bp.p.New = func() any {
		b := &Buf{B: make([]byte, 0, 4096)}
		if newScratch != nil {
			b.Scratch = newScratch()
		}
		return b
	}
	return bp
}

// maxPooledBuf keeps one burst from pinning a huge buffer in the pool.
const maxPooledBuf = 256 << 10

// Conn is the face-independent part of one connection. Producers (the core delivering messages,
// the connection's own reader answering) append to its queue under its lock; one writer drains
// it: a goroutine started on demand and gone when the queue is empty, or, when a reader's Batch
// took the write, that reader before it reads more. An idle Conn holds neither a goroutine nor a
// buffer.
type Conn struct {
	// nc is the connection; nil while it is detached (Detach), when bare is its socket.
	nc net.Conn
	// bare is the socket's own descriptor once the connection has been detached; it stays until
	// the connection closes. Both change only under the lock while nothing is being written.
	bare *bareFD
	wr   rawio.Writer
	sh   *Shared
	ev   Events

	mu sync.Mutex
	// cur.B is the queue: the bytes waiting to be written; spare is the buffer being written or
	// ready for the next swap. Both come from the pool and go back when the connection is idle.
	cur, spare *Buf
	// rare holds what only a connection that is ending or falling behind needs (see connRare).
	rare *connRare

	// The flags sit together at the end, where they take eight bytes rather than a word each.
	flushing bool
	closed   bool
	// draining: the reader is discarding the client's last bytes before closing (Finish).
	draining bool
	// wantRoom: Full refused, so the face wants to hear when there is room.
	wantRoom bool
	// stop is set when the connection ends, so that a reader arming a new deadline after the
	// wake-up still stops (ArmRead).
	stop atomic.Bool
}

// connRare is what a connection needs only when it is ending or its client falls behind. It is
// allocated then, under the lock, and kept: every idle connection would carry its 40 bytes
// otherwise.
type connRare struct {
	// endWith ends the connection once everything queued is written.
	endWith error
	// busySince is when Full started refusing; congestedSince when the queue passed Soft/2
	// (nanoseconds on the monotonic clock, see now; 0: not).
	busySince      int64
	congestedSince int64
	// drained is closed when the queue falls below Soft/2 (Drained).
	drained chan struct{}
}

// rareLocked returns the connection's rare part, allocating it. Caller holds the lock.
func (c *Conn) rareLocked() *connRare {
	if c.rare == nil {
		c.rare = new(connRare)
	}
	return c.rare
}

// endWithLocked is the reason the connection ends with once its queue is written (nil: it is
// not ending). Caller holds the lock.
func (c *Conn) endWithLocked() error {
	if c.rare == nil {
		return nil
	}
	return c.rare.endWith
}

// epoch is where the monotonic clock of now starts.
var epoch = time.Now()

// now reads the monotonic clock in nanoseconds since epoch, never 0: eight bytes where a
// time.Time takes twenty-four, in state every connection holds.
func now() int64 { return int64(time.Since(epoch)) | 1 }

// Shared is what the connections of one face or link share: their limits, their counters and
// their buffer pool. A connection keeps one pointer to it rather than three: every idle
// connection's bytes count.
type Shared struct {
	Lim   Limits
	Stats *Stats
	Pool  *BufPool
}

// Init prepares c for nc. It is a method rather than a constructor so that a face can embed Conn
// by value.
func (c *Conn) Init(nc net.Conn, sh *Shared, ev Events) {
	c.nc, c.wr, c.sh, c.ev = nc, rawio.NewWriter(nc), sh, ev
}

// NetConn returns the connection: nil while it is detached (Detach), so only a face that never
// detaches, or its reader while attached, may use it without the lock.
func (c *Conn) NetConn() net.Conn { return c.nc }

// RemoteAddr is the client's address, also while the connection is detached.
func (c *Conn) RemoteAddr() string {
	c.mu.Lock()
	nc, b := c.nc, c.bare
	c.mu.Unlock()
	if b != nil && (nc == nil || b.peer != "") {
		return b.remoteAddr() // named at the accept, when accepted bare: no call, no allocation
	}
	if nc != nil {
		return nc.RemoteAddr().String()
	}
	return ""
}

// Lock takes the lock a face holds while it encodes into Buf and for state it keeps in wire
// order (MQTT's outgoing topic aliases).
func (c *Conn) Lock() { c.mu.Lock() }

// Unlock releases Lock.
func (c *Conn) Unlock() { c.mu.Unlock() }

// ClosedLocked reports whether nothing more will be written. Caller holds the lock.
func (c *Conn) ClosedLocked() bool { return c.closed }

// EndingLocked reports whether the connection is closed or ending. Caller holds the lock.
func (c *Conn) EndingLocked() bool { return c.closed || c.endWithLocked() != nil }

// QueuedLocked is the bytes waiting to be written. Caller holds the lock.
func (c *Conn) QueuedLocked() int {
	if c.cur == nil {
		return 0
	}
	return len(c.cur.B)
}

// BufLocked returns the queue to append to, taking a pooled buffer when the connection has none.
// Caller holds the lock and hands the result to CommitLocked.
func (c *Conn) BufLocked() []byte {
	if c.cur == nil {
		c.cur = c.sh.Pool.p.Get().(*Buf)
		c.cur.B = c.cur.B[:0]
	}
	return c.cur.B
}

// ScratchLocked is the face's scratch of the current buffer (BufLocked first).
func (c *Conn) ScratchLocked() any {
	c.BufLocked()
	return c.cur.Scratch
}

// SetBufLocked makes buf (BufLocked with bytes appended or taken back) the queue without
// getting it written: what the face appended turned out not to be wanted. Caller holds the lock.
func (c *Conn) SetBufLocked(buf []byte) { c.cur.B = buf }

// CommitLocked makes buf (BufLocked with bytes appended) the queue and gets it written: by the
// reader whose batch via is, when it takes the write, or by a writer goroutine. A queue past
// Limits.Hard closes the connection. Caller holds the lock.
func (c *Conn) CommitLocked(buf []byte, via *broker.Batch) {
	c.cur.B = buf
	if c.sh.Lim.Hard > 0 && len(buf) > c.sh.Lim.Hard && !c.closed {
		c.sh.Stats.SlowConsumers.Add(1)
		c.closeLocked(ErrSlowConsumer)
		return
	}
	c.kickLocked(via)
}

// kickLocked makes sure queued bytes get written.
func (c *Conn) kickLocked(via *broker.Batch) {
	if c.flushing || c.closed {
		return
	}
	c.flushing = true
	if c.wr.Able() && via.Defer(c) {
		return
	}
	go c.writeOut(false)
}

// FullLocked reports whether the queue is at Limits.Soft, so a message that may be dropped should
// be (the face reports Busy to the core, which then waits for Room). Full for Limits.SlowTimeout
// closes the connection. Caller holds the lock.
func (c *Conn) FullLocked() bool {
	if c.sh.Lim.Soft <= 0 || c.QueuedLocked() < c.sh.Lim.Soft {
		return false
	}
	now := now()
	if r := c.rareLocked(); r.busySince == 0 {
		r.busySince = now
	} else if c.sh.Lim.SlowTimeout > 0 && time.Duration(now-r.busySince) > c.sh.Lim.SlowTimeout && !c.closed {
		c.sh.Stats.SlowConsumers.Add(1)
		c.closeLocked(ErrSlowConsumer)
	}
	c.wantRoom = true
	return true
}

// CongestedLocked reports whether publishers feeding this connection should pause: the queue is
// past half of Limits.Soft, during the first Limits.Stall of that. A client that does not catch up
// in that time stops slowing its publishers and is left to Full and the slow-consumer rules.
// Caller holds the lock.
func (c *Conn) CongestedLocked() bool {
	if c.sh.Lim.Soft <= 0 || c.QueuedLocked() < c.sh.Lim.Soft/2 || c.sh.Lim.Stall <= 0 {
		return false
	}
	now := now()
	r := c.rareLocked()
	if r.congestedSince == 0 {
		r.congestedSince = now
	}
	return time.Duration(now-r.congestedSince) <= c.sh.Lim.Stall
}

// Drained returns a channel closed once the queue is below half of Limits.Soft (broker.Sink).
func (c *Conn) Drained() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.rareLocked()
	if r.drained == nil {
		r.drained = make(chan struct{})
		if c.closed || c.QueuedLocked() < c.sh.Lim.Soft/2 {
			close(r.drained)
			ch := r.drained
			r.drained = nil
			return ch
		}
	}
	return r.drained
}

// unblockLocked ends a congestion episode: publishers waiting on Drained go on.
func (c *Conn) unblockLocked() {
	r := c.rare
	if r == nil {
		return
	}
	r.congestedSince = 0
	if r.drained != nil {
		close(r.drained)
		r.drained = nil
	}
}

// FlushNow implements broker.Flusher: a reader that took this connection's write (kickLocked)
// writes what is pending itself, as far as the socket takes it without waiting.
func (c *Conn) FlushNow() { c.writeOut(true) }

// writeOut writes queued bytes until none are left. inline is the deferred write on another
// connection's reader: it makes one non-blocking write and hands whatever is left, or queued
// meanwhile, to a writer goroutine, so a slow client never holds up the reader.
func (c *Conn) writeOut(inline bool) {
	for wrote := false; ; wrote = true {
		c.mu.Lock()
		if c.closed || c.QueuedLocked() == 0 {
			c.flushing = false
			room := c.wantRoom && !c.closed
			c.wantRoom = false
			if c.endWithLocked() != nil && !c.closed {
				c.shutdownLocked()
			}
			c.releaseLocked()
			c.mu.Unlock()
			if room {
				c.ev.Room()
			}
			return
		}
		if inline && wrote {
			// More came while we wrote: that is a writer's job.
			c.mu.Unlock()
			go c.writeOut(false)
			return
		}
		nc := c.nc
		pendingBuf := c.cur
		pending := pendingBuf.B
		c.cur, c.spare = c.spare, nil
		if c.cur != nil {
			c.cur.B = c.cur.B[:0]
		}
		c.mu.Unlock()

		var n int
		var err error
		if inline {
			n, err = c.wr.TryWrite(&pendingBuf.op, pending)
		} else {
			n, err = c.writeWaiting(&pendingBuf.op, pending, nc)
		}
		c.sh.Stats.BytesOut.Add(uint64(n))

		c.mu.Lock()
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && !c.closed {
				// The client took nothing for WriteTimeout: a slow consumer like any other.
				c.sh.Stats.SlowConsumers.Add(1)
			}
			c.closeLocked(err)
		}
		if inline && err == nil && n < len(pending) && !c.closed {
			// The socket is full: what is left goes first, ahead of what was queued meanwhile,
			// and a writer waits for the socket.
			k := copy(pending, pending[n:])
			if c.cur != nil {
				pending = append(pending[:k], c.cur.B...)
				c.cur.B = c.cur.B[:0]
				c.spare = c.cur
			} else {
				pending = pending[:k]
			}
			pendingBuf.B = pending
			c.cur = pendingBuf
			c.mu.Unlock()
			go c.writeOut(false)
			return
		}
		if c.QueuedLocked() < c.sh.Lim.Soft/2 {
			if c.rare != nil {
				c.rare.busySince = 0
			}
			c.unblockLocked()
		}
		if cap(pending) <= maxPooledBuf {
			pendingBuf.B = pending[:0]
			c.spare = pendingBuf
		}
		c.mu.Unlock()
	}
}

// writeWaiting writes b through nc, waiting for room for at most Limits.WriteTimeout. A detached
// connection (nc nil) first writes what its socket takes at once, and is attached only when it
// must wait.
func (c *Conn) writeWaiting(op *rawio.Op, b []byte, nc net.Conn) (int, error) {
	n := 0
	if nc == nil {
		var err error
		if n, err = c.wr.TryWrite(op, b); err != nil || n == len(b) {
			return n, err
		}
		c.mu.Lock()
		nc, err = c.attachLocked()
		c.mu.Unlock()
		if err != nil {
			return n, err
		}
	}
	if c.sh.Lim.WriteTimeout > 0 {
		_ = nc.SetWriteDeadline(time.Now().Add(c.sh.Lim.WriteTimeout))
	}
	m, err := nc.Write(b[n:])
	return n + m, err
}

// releaseLocked returns idle buffers to the pool.
func (c *Conn) releaseLocked() {
	c.unblockLocked()
	if c.cur != nil && cap(c.cur.B) <= maxPooledBuf {
		c.cur.B = c.cur.B[:0]
		c.sh.Pool.p.Put(c.cur)
	}
	if c.spare != nil {
		c.sh.Pool.p.Put(c.spare)
	}
	c.cur, c.spare = nil, nil
}
