package mqtt

import (
	"errors"
	"io"
	"net"
	"time"
)

// lingerTimeout bounds how long a closing connection waits for the client to close its side.
const lingerTimeout = 2 * time.Second

var errConnDone = errors.New("connection finished")

// A connection ends in one of two ways.
//
// Gracefully (endLocked): everything queued, usually a DISCONNECT or CONNACK saying why, is
// written, then only the write side is shut; the reader discards what the client still sends until
// it closes (drain). Closing a socket that has unread input makes the kernel send a reset, which
// can destroy the bytes we just sent before the client reads them, so the reason would be lost.
//
// At once (closeLocked): when the socket is broken or the client is past every limit.

// endLocked ends the connection after pending bytes are written. Caller holds out.mu.
func (c *conn) endLocked(reason error) {
	if c.out.closeAfter == nil {
		c.out.closeAfter = reason
	}
	if c.out.closed || c.out.flushing {
		// The running flusher shuts the connection when it has written everything.
		return
	}
	if len(c.out.buf) > 0 {
		c.kickLocked(nil)
		return
	}
	c.shutdownLocked()
}

// shutdownLocked stops writing and shuts the write side, so the client sees the end of the stream
// after our last packet. It wakes the reader (unless it is already draining) so it can finish.
func (c *conn) shutdownLocked() {
	c.out.closed = true
	if !c.out.flushing {
		c.out.releaseLocked()
	}
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
		if !c.out.draining {
			c.rd.stop.Store(true)
			_ = c.nc.SetReadDeadline(time.Now())
		}
		return
	}
	_ = c.nc.Close()
}

// closeLocked closes the connection at once. Caller holds out.mu.
func (c *conn) closeLocked(err error) {
	if c.out.closed {
		return
	}
	c.out.closed = true
	_ = c.nc.Close()
	if !c.out.flushing {
		c.out.releaseLocked()
	}
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		c.srv.log.Debug("connection closed", "client", c.clientID, "err", err)
	}
}

// closeNow closes the connection at once.
func (c *conn) closeNow(err error) {
	c.out.mu.Lock()
	c.closeLocked(err)
	c.out.mu.Unlock()
}

// drain reads and discards until the client closes its side, an error, or lingerTimeout.
func (c *conn) drain() {
	if err := c.nc.SetReadDeadline(time.Now().Add(lingerTimeout)); err != nil {
		return
	}
	var buf [512]byte
	for {
		if _, err := c.nc.Read(buf[:]); err != nil {
			return
		}
	}
}
