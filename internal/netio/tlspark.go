package netio

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"syscall"
)

// ParkConn is the socket under a TLS connection that can park in the Poller. tls.Conn reads
// through it; while NoWait is set (a poller worker serves the connection) a read never waits: a
// drained socket returns ErrWouldBlock, which crypto/tls treats as a timeout and does not keep
// (readRecordOrCCS makes an error sticky only when it is not a temporary net.Error). The bytes
// of an incomplete record stay in tls.Conn's rawInput; their rest makes the socket readable
// again, so a connection that parks after ErrWouldBlock never sleeps on a complete record.
type ParkConn struct {
	net.Conn
	raw syscall.RawConn
	// nowait is set and read only by the connection's reader (tls.Conn reads under its own
	// input lock; writes never read).
	nowait bool
	// State of one non-blocking read, kept here so readFn (bound once) allocates nothing.
	p      []byte
	n      int
	err    error
	readFn func(fd uintptr) bool
}

// ErrWouldBlock is what a NoWait read returns on a drained socket: a net.Error that is both a
// timeout and temporary, so tls.Conn returns it without making it sticky.
var ErrWouldBlock error = wouldBlock{}

type wouldBlock struct{}

func (wouldBlock) Error() string   { return "netio: would block" }
func (wouldBlock) Timeout() bool   { return true }
func (wouldBlock) Temporary() bool { return true }

// NewParkConn wraps a TCP or Unix connection; other connections are returned as they are.
func NewParkConn(c net.Conn) net.Conn {
	switch c.(type) {
	case *net.TCPConn, *net.UnixConn:
	default:
		return c
	}
	raw, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		return c
	}
	pc := &ParkConn{Conn: c, raw: raw}
	pc.readFn = pc.readFD
	return pc
}

// RawConn is the socket, for Poller.Watch.
func (c *ParkConn) RawConn() syscall.RawConn { return c.raw }

// CloseWrite shuts the sending side of the socket (TCP and Unix sockets have one).
func (c *ParkConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// SetNoWait says whether reads may wait (false) or return ErrWouldBlock on a drained socket.
func (c *ParkConn) SetNoWait(v bool) { c.nowait = v }

// Read reads as the socket does, or without waiting while NoWait is set.
func (c *ParkConn) Read(p []byte) (int, error) {
	if !c.nowait || len(p) == 0 {
		return c.Conn.Read(p)
	}
	c.p, c.n, c.err = p, 0, nil
	err := c.raw.Read(c.readFn)
	c.p = nil
	switch {
	case err != nil:
		return 0, err
	case c.err == syscall.EAGAIN:
		return 0, ErrWouldBlock
	case c.err != nil:
		return 0, &net.OpError{Op: "read", Net: c.LocalAddr().Network(), Addr: c.LocalAddr(), Err: c.err}
	case c.n == 0:
		return 0, io.EOF
	}
	return c.n, nil
}

// readFD reads once and never asks to wait.
func (c *ParkConn) readFD(fd uintptr) bool {
	for {
		c.n, c.err = syscall.Read(int(fd), c.p)
		if c.err != syscall.EINTR {
			break
		}
	}
	if c.n < 0 {
		c.n = 0
	}
	return true
}

// tlsListener is tls.NewListener with each TCP or Unix connection under a ParkConn.
type tlsListener struct {
	net.Listener
	cfg *tls.Config
}

// NewTLSListener is tls.NewListener whose connections can park in the Poller: their
// tls.Conn.NetConn() is a *ParkConn.
func NewTLSListener(ln net.Listener, cfg *tls.Config) net.Listener {
	return &tlsListener{Listener: ln, cfg: cfg}
}

func (l *tlsListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return tls.Server(NewParkConn(c), l.cfg), nil
}

// IsWouldBlock reports whether err is ErrWouldBlock.
func IsWouldBlock(err error) bool { return errors.Is(err, ErrWouldBlock) }
