package netio

import (
	"net"
	"syscall"

	"github.com/ternmq/tern/internal/rawio"
)

// Detach lets go of an idle connection's net.Conn and keeps only a descriptor of its socket.
// (It also ends the two-descriptor state of one that a writer attached, see Attach.)
//
// An accepted net.TCPConn costs about 1 KiB that a connection keeps for its whole life: Go's
// netFD, its two addresses and, outside the heap, the netpoller's record of the descriptor
// (bench/sockcost). A broker of mostly idle devices pays that per device for nothing, since a
// parked connection waits in the Poller, not in Go's netpoller. A detached connection holds a
// bareFD instead: its reader reads and its writers write through it without waiting, which is
// all an idle connection needs (a keep-alive ping, a delivery now and then). A wait in Go's
// netpoller (a busy reader's lazy wait, a writer waiting for room, the drain at the end) attaches
// it again first (Attach).
//
// The reader calls Detach, owning w and about to park; it moves w and the non-blocking writes to
// a duplicate of the socket's descriptor, then closes the net.Conn. It returns what the reader
// reads through from then on, or nil when the connection is not idle (bytes are queued or being
// written, or it is ending) or is not a socket.
func (c *Conn) Detach(w *Watch) syscall.RawConn {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.nc == nil {
		return c.bareRaw()
	}
	if c.flushing || c.closed || c.endWithLocked() != nil || c.QueuedLocked() > 0 || w == nil {
		return nil
	}
	if c.bare == nil {
		sc, ok := c.nc.(syscall.Conn)
		if !ok {
			return nil
		}
		rc, err := sc.SyscallConn()
		if err != nil {
			return nil
		}
		b, err := dupBare(rc)
		if err != nil {
			return nil
		}
		if err := w.rebind(b); err != nil {
			b.close()
			return nil
		}
		c.bare, c.wr = b, rawio.NewRawWriter(b)
	}
	_ = c.nc.Close()
	c.nc = nil
	c.sh.Stats.Detached.Add(1)
	return c.bare
}

// Attach gives a detached connection a net.Conn again and returns it; an attached connection's is
// returned as it is. The reader calls it, owning w, when its connection is busy again. Unless
// bytes are being written, w and the non-blocking writes move to the net.Conn and the kept
// descriptor is closed, so that a connection holds two descriptors only while a writer that had
// to wait attached it (writeWaiting), until its reader's next Attach or Detach.
func (c *Conn) Attach(w *Watch) (net.Conn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	nc, err := c.attachLocked()
	if err != nil || c.bare == nil || c.flushing || w == nil {
		return nc, err
	}
	rc, err := nc.(syscall.Conn).SyscallConn()
	if err != nil || w.rebind(rc) != nil {
		return nc, nil
	}
	c.wr = rawio.NewWriter(nc)
	c.bare.close()
	c.bare = nil
	return nc, nil
}

// bareRaw is the kept descriptor as a syscall.RawConn (nil when there is none).
func (c *Conn) bareRaw() syscall.RawConn {
	if c.bare == nil {
		return nil
	}
	return c.bare
}

// attachLocked gives a detached connection a net.Conn again and returns it; an attached
// connection's is returned as it is. Caller holds the lock.
func (c *Conn) attachLocked() (net.Conn, error) {
	if c.nc != nil || c.bare == nil {
		return c.nc, nil
	}
	nc, err := c.bare.netConn()
	if err != nil {
		return nil, err
	}
	c.nc = nc
	c.sh.Stats.Detached.Add(-1)
	c.sh.Stats.Attaches.Add(1)
	return nc, nil
}
