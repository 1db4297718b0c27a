package netio

import (
	"errors"
	"io"
	"net"
	"os"
	"time"
)

// A connection ends in one of two ways.
//
// Gracefully (End): everything queued, usually a frame saying why, is written, then only the write
// side is shut and the reader is woken; the reader discards what the client still sends until it
// closes (Finish). Closing a socket that has unread input makes the kernel send a reset, which can
// destroy the bytes just sent before the client reads them, so the reason would be lost.
//
// At once (CloseNow): when the socket is broken or the client is past every limit.

// errFinished ends the connection when its reader stops.
var errFinished = errors.New("connection finished")

// End ends the connection once everything queued is written. reason is kept for the face (see
// EndingLocked); the first one wins.
func (c *Conn) End(reason error) {
	c.mu.Lock()
	c.EndLocked(reason)
	c.mu.Unlock()
}

// EndLocked is End with the lock held.
func (c *Conn) EndLocked(reason error) {
	if r := c.rareLocked(); r.endWith == nil {
		r.endWith = reason
	}
	if c.closed || c.flushing {
		// The running writer shuts the connection when it has written everything.
		return
	}
	if c.QueuedLocked() > 0 {
		c.kickLocked(nil)
		return
	}
	c.shutdownLocked()
}

// shutdownLocked stops writing and shuts the write side, so the client sees the end of the stream
// after the last bytes. It wakes the reader (unless it is already draining) so it can finish.
func (c *Conn) shutdownLocked() {
	c.closed = true
	if !c.flushing {
		c.releaseLocked()
	}
	if c.closeWriteLocked() {
		if !c.draining {
			c.stopReadingLocked()
		}
		return
	}
	c.closeSocketLocked()
	c.stopReadingLocked()
}

// closeWriteLocked shuts the socket's write side and reports whether it could.
func (c *Conn) closeWriteLocked() bool {
	if c.nc == nil {
		return c.bare != nil && c.bare.shutdownWrite() == nil
	}
	cw, ok := c.nc.(interface{ CloseWrite() error })
	return ok && cw.CloseWrite() == nil
}

// closeSocketLocked closes the connection and the descriptor a detached one kept.
func (c *Conn) closeSocketLocked() {
	if c.nc != nil {
		_ = c.nc.Close()
	}
	if c.bare != nil && c.bare.close() && c.nc == nil {
		c.sh.Stats.Detached.Add(-1)
	}
}

func (c *Conn) stopReadingLocked() {
	c.stop.Store(true)
	c.ev.StopReading()
}

// CloseNow closes the connection at once.
func (c *Conn) CloseNow(err error) {
	c.mu.Lock()
	c.closeLocked(err)
	c.mu.Unlock()
}

// closeLocked closes the connection at once.
func (c *Conn) closeLocked(error) {
	if c.closed {
		return
	}
	c.closed = true
	c.stop.Store(true)
	// Closing wakes a reader waiting on the connection, but not one parked in the Poller: the
	// socket leaves the epoll set silently when it closes.
	c.closeSocketLocked()
	c.ev.StopReading()
	if !c.flushing {
		c.releaseLocked()
	}
}

// Stopping reports whether the connection is ending, so its reader should stop.
func (c *Conn) Stopping() bool { return c.stop.Load() }

// ArmRead sets the read deadline (zero: none) unless the connection is ending, in which case it
// returns os.ErrDeadlineExceeded: a reader arming a deadline after the wake-up of StopReading
// would otherwise wait on, past it.
func (c *Conn) ArmRead(deadline time.Time) error {
	if err := c.nc.SetReadDeadline(deadline); err != nil {
		return err
	}
	if c.stop.Load() {
		return os.ErrDeadlineExceeded
	}
	return nil
}

// WakeReader is the usual Events.StopReading: a read deadline in the past.
func WakeReader(nc net.Conn) { _ = nc.SetReadDeadline(time.Now()) }

// Finish is the reader's last act: what the batch holds has been written by the caller; Finish
// writes what is queued, shuts the write side, discards what the client still sends until it
// closes or Limits.Linger passes, and closes the connection.
//
// A detached connection whose client has closed its side, with nothing left to write, is
// closed at once: there is nothing to drain (a client's disconnect, the usual end). Another
// detached connection is attached for the drain, which waits in Go's netpoller.
func (c *Conn) Finish() {
	c.mu.Lock()
	c.draining = true
	if c.clientGoneLocked() {
		// Closed at once, which ends it: no reason to keep for a writer (nor a rare part to
		// allocate for one).
		c.closeLocked(errFinished)
		c.mu.Unlock()
		return
	}
	nc, _ := c.attachLocked()
	c.EndLocked(errFinished)
	c.mu.Unlock()
	if nc != nil {
		c.drain(nc)
	}
	c.mu.Lock()
	c.closeSocketLocked()
	c.mu.Unlock()
}

// clientGoneLocked reports whether c is detached, has nothing to write, and its client's stream
// has ended (or the socket has failed): then closing it loses nothing either side still wants.
func (c *Conn) clientGoneLocked() bool {
	if c.nc != nil || c.bare == nil || c.closed || c.flushing || c.QueuedLocked() > 0 {
		return false
	}
	return c.bare.ended()
}

// drain reads and discards until the client closes its side, an error, or Limits.Linger.
func (c *Conn) drain(nc net.Conn) {
	linger := c.sh.Lim.Linger
	if linger <= 0 {
		linger = 2 * time.Second
	}
	if err := nc.SetReadDeadline(time.Now().Add(linger)); err != nil {
		return
	}
	var buf [512]byte
	for {
		if _, err := nc.Read(buf[:]); err != nil {
			return
		}
	}
}

// Quiet reports whether err only says the connection ended (the client closed it, or it was
// closed here): nothing worth logging.
func Quiet(err error) bool {
	return err == nil || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed)
}
