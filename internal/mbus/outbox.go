package mbus

import (
	"encoding/json"
	"sync"
	"time"

	"github.com/ternmq/tern/internal/broker"
)

// maxKeptOutBuf keeps one burst from pinning a large write buffer on a connection.
const maxKeptOutBuf = 256 << 10

// outbox is a connection's outgoing frames. Senders append encoded frames under mu; one writer
// at a time writes what is pending: a goroutine started on demand, or the reader of the connection
// that caused the write, which writes for it before it reads more (broker.Batch). It holds at most
// cfg.OutBuffer frames and cfg.OutBufferBytes bytes; a client that lets it fill is not reading and
// is closed.
type outbox struct {
	mu     sync.Mutex
	buf    []byte
	spare  []byte
	frames int
	// flushing: a writer runs or is deferred to a batch; the others only append.
	flushing bool
	// closeWith ends the connection with this reason once what was queued before is written.
	closeWith string
	// ended: the connection is closed and nothing more is written.
	ended bool
}

// send queues a message. via is the batch of the reader whose input caused it (nil from other
// goroutines).
func (c *conn) send(m Message, via *broker.Batch) {
	b, _ := json.Marshal(m)
	c.mu.Lock()
	z := c.zlib
	c.mu.Unlock()
	var compressed []byte
	if z {
		compressed = appendFrame(nil, b, true)
	}
	o := &c.out
	o.mu.Lock()
	if o.ended || o.closeWith != "" {
		o.mu.Unlock()
		return
	}
	if o.frames >= c.srv.cfg.OutBuffer || len(o.buf)+len(b)+len(compressed) > c.srv.cfg.OutBufferBytes {
		o.mu.Unlock()
		c.srv.stats.SlowDrops.Add(1)
		c.close("internal_error")
		return
	}
	if z {
		o.buf = append(o.buf, compressed...)
	} else {
		o.buf = appendFrame(o.buf, b, false)
	}
	o.frames++
	c.kickLocked(via)
	o.mu.Unlock()
}

// closeAfter ends the connection with reason once what is queued (a refusal) has been written;
// finish waits for that.
func (c *conn) closeAfter(reason string) {
	c.mu.Lock()
	c.closing = true
	c.mu.Unlock()
	o := &c.out
	o.mu.Lock()
	if o.closeWith == "" {
		o.closeWith = reason
	}
	c.kickLocked(nil)
	o.mu.Unlock()
}

// kickLocked makes sure a writer runs: the batch's reader when via takes this connection, else a
// goroutine. Caller holds out.mu.
func (c *conn) kickLocked(via *broker.Batch) {
	o := &c.out
	if o.flushing || o.ended {
		return
	}
	o.flushing = true
	if c.wr.Able() && via.Defer(c) {
		return
	}
	go c.writeOut(false)
}

// FlushNow implements broker.Flusher: the reader that deferred this connection's write writes
// what is pending itself, as far as the socket takes it without waiting.
func (c *conn) FlushNow() { c.writeOut(true) }

// writeOut writes pending frames until none are left. inline is the deferred write on a reader:
// one non-blocking write, and whatever is left, or queued meanwhile, goes to a writer goroutine.
func (c *conn) writeOut(inline bool) {
	o := &c.out
	for wrote := false; ; wrote = true {
		o.mu.Lock()
		if o.ended || len(o.buf) == 0 {
			o.flushing = false
			closeWith := ""
			if !o.ended {
				closeWith = o.closeWith
			}
			if cap(o.buf) > maxKeptOutBuf {
				o.buf = nil
			}
			o.mu.Unlock()
			if closeWith != "" {
				c.close(closeWith)
			}
			return
		}
		if inline && wrote {
			o.mu.Unlock()
			go c.writeOut(false)
			return
		}
		pending := o.buf
		o.buf, o.spare, o.frames = o.spare[:0], nil, 0
		o.mu.Unlock()

		var n int
		var err error
		if inline {
			n, err = c.wr.TryWrite(pending)
		} else {
			_ = c.nc.SetWriteDeadline(time.Now().Add(c.srv.cfg.WriteTimeout))
			n, err = c.nc.Write(pending)
		}
		if err != nil {
			c.close("connection_closed")
			continue
		}

		o.mu.Lock()
		if n < len(pending) {
			// Only an inline write stops short: what is left goes first, and a writer waits
			// for the socket.
			k := copy(pending, pending[n:])
			pending = append(pending[:k], o.buf...)
			o.buf, o.spare = pending, o.buf[:0]
			o.frames++
			o.mu.Unlock()
			go c.writeOut(false)
			return
		}
		if cap(pending) <= maxKeptOutBuf {
			o.spare = pending[:0]
		}
		o.mu.Unlock()
	}
}

// endOutbox drops what is queued once the connection is closed.
func (c *conn) endOutbox() {
	o := &c.out
	o.mu.Lock()
	o.ended = true
	o.buf, o.spare = nil, nil
	o.mu.Unlock()
}
