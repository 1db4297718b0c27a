//go:build !linux

package netio

import (
	"net"
	"syscall"
)

// bareFD is the kept descriptor of a detached connection; without the Poller nothing detaches.
type bareFD struct{}

func (*bareFD) shutdownWrite() error { return errNoPoller }
func (*bareFD) close() bool          { return false }

// Detach does nothing: without the Poller a connection waits on a goroutine of its own.
func (c *Conn) Detach(*Watch) syscall.RawConn { return nil }

// Attach returns the connection, which is always attached here.
func (c *Conn) Attach(*Watch) (net.Conn, error) { return c.nc, nil }

// attachLocked returns the connection, which is always attached here.
func (c *Conn) attachLocked() (net.Conn, error) { return c.nc, nil }
