package netio

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// Detach lets go of the net.Conn of an idle connection and keeps a duplicate of its descriptor,
// moving w (the connection's watch, which the caller owns: its reader, about to park) to it. A
// connection a writer attached meanwhile closes that net.Conn again. It reports whether the
// connection is detached; it is not while a write through the net.Conn is in progress.
//
// An accepted net.TCPConn costs about 1 KiB for the life of the connection (Go's netFD, its two
// addresses, the netpoller's record); a TLS connection of this package's tlsrec, which drops its
// cipher state when idle, is otherwise a few hundred bytes.
func (c *ParkConn) Detach(w *Watch) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.writing > 0 || w == nil {
		return c.det != nil
	}
	if d := c.det; d != nil {
		if c.nc != nil {
			_ = c.nc.Close()
			c.nc, c.raw = nil, nil
		}
		return true
	}
	b, err := dupBare(c.raw)
	if err != nil {
		return false
	}
	if err := w.rebind(b); err != nil {
		b.close()
		return false
	}
	_ = c.nc.Close()
	c.nc, c.raw, c.det = nil, nil, &parkDetached{bare: b, w: w}
	return true
}

// Attach gives a detached connection its net.Conn again and moves the watch back to it; the
// caller owns the watch (its reader, running). It does nothing for an attached connection.
func (c *ParkConn) Attach() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.attachLocked()
}

// attachLocked is Attach with mu held.
func (c *ParkConn) attachLocked() error {
	d := c.det
	if d == nil {
		return nil
	}
	if err := c.attachWriterLocked(); err != nil {
		return err
	}
	if err := d.w.rebind(c.raw); err != nil {
		return err
	}
	d.bare.close()
	c.det = nil
	return nil
}

// attachWriterLocked gives a detached connection a net.Conn for a write that must wait, with the
// deadlines set while it was detached. The bare descriptor stays, with the watch on it, since
// only the reader may move the watch.
func (c *ParkConn) attachWriterLocked() error {
	d := c.det
	if c.nc != nil {
		return nil
	}
	nc, err := d.bare.netConn()
	if err != nil {
		return err
	}
	raw, err := nc.(syscall.Conn).SyscallConn()
	if err != nil {
		_ = nc.Close()
		return err
	}
	if err := nc.SetReadDeadline(fromUnixNano(d.readDue)); err != nil {
		_ = nc.Close()
		return err
	}
	if err := nc.SetWriteDeadline(fromUnixNano(d.writeDue)); err != nil {
		_ = nc.Close()
		return err
	}
	c.nc, c.raw = nc, raw
	return nil
}

// addr is the socket's address at either end (nil when unknown).
func (b *bareFD) addr(remote bool) net.Addr {
	var sa unix.Sockaddr
	get := unix.Getsockname
	if remote {
		get = unix.Getpeername
	}
	if err := b.Control(func(fd uintptr) { sa, _ = get(int(fd)) }); err != nil {
		return nil
	}
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return &net.TCPAddr{IP: append(net.IP(nil), a.Addr[:]...), Port: a.Port}
	case *unix.SockaddrInet6:
		return &net.TCPAddr{IP: append(net.IP(nil), a.Addr[:]...), Port: a.Port}
	case *unix.SockaddrUnix:
		return &net.UnixAddr{Name: a.Name, Net: "unix"}
	}
	return nil
}
