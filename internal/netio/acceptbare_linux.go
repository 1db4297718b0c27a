package netio

import (
	"net"
	"syscall"

	"github.com/ternmq/tern/internal/rawio"
)

// Socket is an accepted TCP or Unix connection held as a bare descriptor: no net.Conn, no entry
// in Go's netpoller (see ServeBare). A face gives it to Conn.InitBare, which closes it with the
// connection, and waits for it in the Poller.
type Socket struct {
	fd *bareFD
}

// RawConn is the socket for the Poller and for reads and writes that do not wait.
func (s *Socket) RawConn() syscall.RawConn { return s.fd }

// CanServeBare reports whether ServeBare can serve ln: a TCP or Unix listener, on Linux.
func CanServeBare(ln net.Listener) bool {
	switch ln.(type) {
	case *net.TCPListener, *net.UnixListener:
		return true
	}
	return false
}

// ServeBare is Serve for a face whose connections start detached (Conn.Detach): each accepted
// connection's descriptor is duplicated into a Socket and its net.Conn closed at once.
//
// Why at once, rather than when the connection first parks: the runtime allocates a netpoller
// record (pollDesc) outside the heap for every socket Go's net package opens and never gives that
// memory back to the OS, only reuses it. Closed right after the accept, one record serves accept
// after accept; kept until the connections detach, a connect storm leaves as many records
// resident as connections it opened at once. (Accepting with accept4 on the listener's descriptor
// would skip even the one record, but Go offers no wait for a listener's readability other than
// its own Accept, and a duplicate of the listener would outlive the listener's Close.)
func (r *Registry[C]) ServeBare(ln net.Listener, serve func(*Socket)) error {
	return serveLoop(r, ln, func() (*Socket, error) { return acceptBare(ln) }, serve)
}

// acceptBare accepts one connection as a Socket. The options Go's net package sets on an
// accepted TCP connection (no Nagle delay, keep-alive probes) belong to the socket and stay.
func acceptBare(ln net.Listener) (*Socket, error) {
	nc, err := ln.Accept()
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	rc, err := nc.(syscall.Conn).SyscallConn()
	if err != nil {
		return nil, err
	}
	b, err := dupBare(rc)
	if err != nil {
		return nil, &net.OpError{Op: "accept", Net: ln.Addr().Network(), Addr: ln.Addr(), Err: err}
	}
	return &Socket{fd: b}, nil
}

// InitBare prepares c for a socket ServeBare accepted: c starts detached, as if Detach had been
// called, with the watch the face makes on s.RawConn().
func (c *Conn) InitBare(s *Socket, lim *Limits, stats *Stats, pool *BufPool, ev Events) {
	c.bare, c.lim, c.stats, c.pool, c.ev = s.fd, lim, stats, pool, ev
	c.wr = rawio.NewRawWriter(s.fd)
	stats.Detached.Add(1)
}
