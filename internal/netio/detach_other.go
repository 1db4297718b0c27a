//go:build !linux

package netio

import (
	"net"
	"syscall"
)

// bareFD is the kept descriptor of a detached connection; without the Poller nothing detaches.
type bareFD struct{ peer string }

func (*bareFD) shutdownWrite() error { return errNoPoller }
func (*bareFD) close() bool          { return false }
func (*bareFD) ended() bool          { return false }

// Detach does nothing: without the Poller a connection waits on a goroutine of its own.
func (c *Conn) Detach(*Watch) syscall.RawConn { return nil }

// Attach returns the connection, which is always attached here.
func (c *Conn) Attach(*Watch) (net.Conn, error) { return c.nc, nil }

// attachLocked returns the connection, which is always attached here.
func (c *Conn) attachLocked() (net.Conn, error) { return c.nc, nil }

// Socket is an accepted bare socket; without the Poller there are none.
type Socket struct{}

// RawConn is nil: there are no bare sockets here.
func (*Socket) RawConn() syscall.RawConn { return nil }

// CanServeBare is false: without the Poller every connection has its net.Conn.
func CanServeBare(net.Listener) bool { return false }

// Listen is net.Listen: without ServeBare no options need to be set ahead.
func Listen(network, addr string) (net.Listener, error) { return net.Listen(network, addr) }

// ServeBare fails: see CanServeBare.
func (r *Registry[C]) ServeBare(net.Listener, func(*Socket)) error { return errNoPoller }

// InitBare is never called here (CanServeBare is false).
func (c *Conn) InitBare(*Socket, *Shared, Events) {}

func (*bareFD) remoteAddr() string { return "" }

// Detach does nothing: without the Poller nothing parks.
func (c *ParkConn) Detach(*Watch) bool { return false }

// Attach does nothing: a ParkConn is always attached here.
func (c *ParkConn) Attach() error { return nil }

func (c *ParkConn) attachLocked() error       { return errNoPoller }
func (c *ParkConn) attachWriterLocked() error { return errNoPoller }

func (*bareFD) addr(bool) net.Addr { return nil }

func (*bareFD) Control(func(fd uintptr)) error    { return errNoPoller }
func (*bareFD) Read(func(fd uintptr) bool) error  { return errNoPoller }
func (*bareFD) Write(func(fd uintptr) bool) error { return errNoPoller }
