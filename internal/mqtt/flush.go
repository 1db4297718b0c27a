package mqtt

import (
	"errors"
	"os"
	"time"
)

// flush writes pending bytes until none are left, then exits. It runs on a goroutine of its own.
func (c *conn) flush() { c.writeOut(false) }

// FlushNow implements broker.Flusher: a reader that deferred this connection's write (kickLocked)
// writes what is pending itself, as far as the socket takes it without waiting.
func (c *conn) FlushNow() { c.writeOut(true) }

// writeOut writes pending bytes until none are left. inline is the deferred write on another
// connection's reader: it makes one non-blocking write and hands whatever is left, or queued
// meanwhile, to a flusher goroutine, so a slow client never holds up the reader.
func (c *conn) writeOut(inline bool) {
	o := &c.out
	for wrote := false; ; wrote = true {
		o.mu.Lock()
		if o.closed || len(o.buf) == 0 {
			o.flushing = false
			drain := o.wantDrain && !o.closed
			o.wantDrain = false
			if o.closeAfter != nil && !o.closed {
				c.shutdownLocked()
			}
			o.releaseLocked()
			o.mu.Unlock()
			if drain && c.client != nil {
				c.client.Drained()
			}
			return
		}
		if inline && wrote {
			// More came while we wrote: that is a writer's job.
			o.mu.Unlock()
			go c.flush()
			return
		}
		pending, pendingBox := o.buf, o.cur
		o.cur, o.spare = o.spare, nil
		o.buf = nil
		if o.cur != nil {
			o.buf = o.cur.b[:0]
		}
		o.mu.Unlock()

		var n int
		var err error
		if inline {
			n, err = c.wr.TryWrite(pending)
		} else {
			if c.srv.cfg.WriteTimeout > 0 {
				_ = c.nc.SetWriteDeadline(time.Now().Add(c.srv.cfg.WriteTimeout))
			}
			n, err = c.nc.Write(pending)
		}
		c.srv.stats.BytesOut.Add(uint64(n))

		o.mu.Lock()
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && !o.closed {
				// The client took nothing for write_timeout: a slow consumer like any other.
				c.srv.stats.SlowConsumers.Add(1)
			}
			c.closeLocked(err)
		}
		if inline && err == nil && n < len(pending) && !o.closed {
			// The socket is full: what is left goes first, ahead of what was queued meanwhile,
			// and a flusher waits for the socket.
			k := copy(pending, pending[n:])
			pending = append(pending[:k], o.buf...)
			if o.cur != nil {
				o.cur.b = o.buf[:0]
				o.spare = o.cur
			}
			o.cur, o.buf = pendingBox, pending
			o.mu.Unlock()
			go c.flush()
			return
		}
		if len(o.buf) < c.srv.cfg.OutboundBuffer/2 {
			o.busySince = time.Time{}
			o.unblockLocked()
		}
		if cap(pending) <= maxPooledWriteBuf {
			pendingBox.b = pending[:0]
			o.spare = pendingBox
		}
		o.mu.Unlock()
	}
}
