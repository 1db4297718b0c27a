package netio

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/ternmq/tern/internal/rawio"
)

// ParkConn is the socket under a TLS connection that can park in the Poller. tls.Conn reads
// through it; while NoWait is set (a poller worker serves the connection) a read never waits: a
// drained socket returns ErrWouldBlock, which crypto/tls treats as a timeout and does not keep
// (readRecordOrCCS makes an error sticky only when it is not a temporary net.Error). The bytes
// of an incomplete record stay in tls.Conn's rawInput; their rest makes the socket readable
// again, so a connection that parks after ErrWouldBlock never sleeps on a complete record.
//
// A parked ParkConn can also let go of its net.Conn (Detach), as Conn.Detach does for a plain
// connection: it keeps a bare descriptor, which reads that do not wait and writes the socket
// takes at once go through; a read that waits attaches it again, and a write that must wait
// attaches it for itself (two descriptors, until the reader's next Detach or Attach).
type ParkConn struct {
	// mu guards nc, raw, det and writing: a writer may attach the connection while its reader
	// reads.
	mu  sync.Mutex
	nc  net.Conn // nil while detached (unless a writer attached it)
	raw syscall.RawConn
	det *parkDetached // set while detached
	// writing counts writes through nc in progress; Detach waits for none.
	writing int32
	// nowait is set and read only by the connection's reader (tls.Conn reads under its own
	// input lock; writes never read).
	nowait bool
	// State of one non-blocking read, kept here so readFn (bound once) allocates nothing.
	p      []byte
	n      int
	err    error
	readFn func(fd uintptr) bool
}

// parkDetached is what a detached ParkConn keeps instead of its net.Conn.
type parkDetached struct {
	bare *bareFD
	w    *Watch // moved back to the net.Conn's descriptor on Attach
	// Deadlines set while detached, in Unix nanoseconds (0: none), for the net.Conn an attach
	// makes.
	readDue, writeDue int64
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
	pc := &ParkConn{nc: c, raw: raw}
	pc.readFn = pc.readFD
	return pc
}

// RawConn is the socket, for Poller.Watch.
func (c *ParkConn) RawConn() syscall.RawConn {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.det != nil {
		return c.det.bare
	}
	return c.raw
}

// CloseWrite shuts the sending side of the socket (TCP and Unix sockets have one).
func (c *ParkConn) CloseWrite() error {
	c.mu.Lock()
	nc, det := c.nc, c.det
	c.mu.Unlock()
	if nc != nil {
		if cw, ok := nc.(interface{ CloseWrite() error }); ok {
			return cw.CloseWrite()
		}
		return nil
	}
	return det.bare.shutdownWrite()
}

// SetNoWait says whether reads may wait (false) or return ErrWouldBlock on a drained socket.
func (c *ParkConn) SetNoWait(v bool) { c.nowait = v }

// Detached reports whether the connection holds a bare descriptor instead of its net.Conn.
func (c *ParkConn) Detached() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.det != nil
}

// Read reads as the socket does, or without waiting while NoWait is set.
func (c *ParkConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	nc, raw := c.nc, c.raw
	if c.det != nil {
		if !c.nowait && len(p) > 0 {
			// A read that waits does so in Go's netpoller.
			err := c.attachLocked()
			nc = c.nc
			c.mu.Unlock()
			if err != nil {
				return 0, err
			}
			return nc.Read(p)
		}
		raw = c.det.bare
	}
	c.mu.Unlock()
	if !c.nowait || len(p) == 0 {
		return nc.Read(p) // attached (det nil): nc is set
	}
	c.p, c.n, c.err = p, 0, nil
	err := raw.Read(c.readFn)
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

// Write writes p. A detached connection writes what the socket takes at once through its bare
// descriptor, and attaches for a write that must wait.
func (c *ParkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	done := 0
	if c.det != nil && c.nc == nil {
		n, err := tryWrite(c.det.bare, p)
		if err != nil || n == len(p) {
			c.mu.Unlock()
			return n, err
		}
		done = n
		if err := c.attachWriterLocked(); err != nil {
			c.mu.Unlock()
			return done, err
		}
	}
	nc := c.nc
	c.writing++
	c.mu.Unlock()
	n, err := nc.Write(p[done:])
	c.mu.Lock()
	c.writing--
	c.mu.Unlock()
	return done + n, err
}

// rawOps keep the state of writes through a bare descriptor (rawio.Op), which only detached
// connections make: a pool rather than an Op in every one of them.
var rawOps = sync.Pool{New: func() any { return new(rawio.Op) }}

// tryWrite writes what the socket under raw takes now (rawio.Writer.TryWrite).
func tryWrite(raw syscall.RawConn, p []byte) (int, error) {
	op := rawOps.Get().(*rawio.Op)
	w := rawio.NewRawWriter(raw)
	n, err := w.TryWrite(op, p)
	rawOps.Put(op)
	return n, err
}

// Close closes the socket: its net.Conn and the descriptor a detached connection keeps.
func (c *ParkConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var err error
	if c.nc != nil {
		err = c.nc.Close()
	}
	if c.det != nil {
		c.det.bare.close()
	}
	return err
}

// LocalAddr is the socket's local address.
func (c *ParkConn) LocalAddr() net.Addr { return c.addr(false) }

// RemoteAddr is the client's address.
func (c *ParkConn) RemoteAddr() net.Addr { return c.addr(true) }

func (c *ParkConn) addr(remote bool) net.Addr {
	c.mu.Lock()
	nc, det := c.nc, c.det
	c.mu.Unlock()
	switch {
	case nc != nil && remote:
		return nc.RemoteAddr()
	case nc != nil:
		return nc.LocalAddr()
	}
	return det.bare.addr(remote)
}

// SetDeadline sets both deadlines.
func (c *ParkConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

// SetReadDeadline sets the read deadline; a detached connection keeps it for its next attach.
func (c *ParkConn) SetReadDeadline(t time.Time) error { return c.setDeadline(t, false) }

// SetWriteDeadline sets the write deadline; a detached connection keeps it for its next attach.
func (c *ParkConn) SetWriteDeadline(t time.Time) error { return c.setDeadline(t, true) }

func (c *ParkConn) setDeadline(t time.Time, write bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d := c.det; d != nil {
		due := &d.readDue
		if write {
			due = &d.writeDue
		}
		*due = unixNano(t)
	}
	switch {
	case c.nc == nil:
		return nil
	case write:
		return c.nc.SetWriteDeadline(t)
	}
	return c.nc.SetReadDeadline(t)
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// readFD reads once and never asks to wait.
func (c *ParkConn) readFD(fd uintptr) bool {
	c.n, c.err = rawio.ReadFD(fd, c.p)
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
