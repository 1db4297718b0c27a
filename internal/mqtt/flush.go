package mqtt

import (
	"net"
	"syscall"
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
			n, err = c.wr.tryWrite(pending)
		} else {
			if c.srv.cfg.WriteTimeout > 0 {
				_ = c.nc.SetWriteDeadline(time.Now().Add(c.srv.cfg.WriteTimeout))
			}
			n, err = c.nc.Write(pending)
		}
		c.srv.stats.BytesOut.Add(uint64(n))

		o.mu.Lock()
		if err != nil {
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

// rawWriter writes to a TCP or Unix socket without waiting: one write(2), which on Go's
// non-blocking sockets takes what fits in the socket buffer and returns.
type rawWriter struct {
	raw syscall.RawConn
	// State of one write, kept here so writeFn (bound once) allocates nothing per write.
	writeFn func(fd uintptr) bool
	b       []byte
	n       int
	err     error
}

func newRawWriter(c net.Conn) rawWriter {
	var w rawWriter
	switch c := c.(type) {
	case *net.TCPConn, *net.UnixConn:
		if raw, err := c.(syscall.Conn).SyscallConn(); err == nil {
			w.raw = raw
		}
	}
	return w
}

// tryWrite writes what the socket takes now; n < len(b) with a nil error means it is full.
func (w *rawWriter) tryWrite(b []byte) (int, error) {
	if w.writeFn == nil {
		w.writeFn = w.writeFD
	}
	w.b, w.n, w.err = b, 0, nil
	if err := w.raw.Write(w.writeFn); err != nil {
		w.b = nil
		return 0, err
	}
	w.b = nil
	if w.err == syscall.EAGAIN {
		return 0, nil
	}
	return w.n, w.err
}

// writeFD makes one write attempt and never asks the poller to wait.
func (w *rawWriter) writeFD(fd uintptr) bool {
	for {
		w.n, w.err = syscall.Write(int(fd), w.b)
		if w.err != syscall.EINTR {
			break
		}
	}
	if w.n < 0 {
		w.n = 0
	}
	return true
}
