package netio

import (
	"context"
	"net"
	"os"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

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
// connection is held as a bare descriptor in a Socket, never as a net.Conn.
//
// While connections wait in the backlog of a listener from Listen (a connect storm), they are
// taken with accept4 on the listener's own descriptor: one system call each. When the backlog
// is empty, the wait goes through ln.Accept: it is the only wait for a listener's readability
// Go offers, and the one that sees the listener close. The connection it returns is duplicated
// into a Socket, and its net.Conn is closed at once. That path costs nine more system calls:
// the options Go sets on an accepted socket, its netpoller registration and removal, the
// duplicate and the close. It also uses the runtime's netpoller record (pollDesc), which the
// runtime never gives back to the OS, only reuses: closed right after the accept, one record
// serves accept after accept. A listener not made by Listen always takes that path.
func (r *Registry[C]) ServeBare(ln net.Listener, serve func(*Socket)) error {
	rc, err := ln.(syscall.Conn).SyscallConn()
	fast := err == nil
	if _, ok := ln.(*net.TCPListener); ok && fast {
		fast = hasAcceptedOptions(rc)
	}
	return serveLoop(r, ln, func() (*Socket, error) {
		if fast {
			if s := acceptWaiting(rc); s != nil {
				return s, nil
			}
		}
		return acceptBare(ln)
	}, serve)
}

// Listen is net.Listen, except that a TCP listener gets the options Go's net package sets on
// each connection it accepts (no Nagle delay; keep-alive probes after 15 s, every 15 s, 9 of
// them) before it listens. Every connection then inherits them from the start, so ServeBare
// may take connections with accept4, which sets none. (Set later, they would miss the
// connections already in the backlog.)
func Listen(network, addr string) (net.Listener, error) {
	lc := net.ListenConfig{Control: func(network, _ string, c syscall.RawConn) error {
		if !strings.HasPrefix(network, "tcp") {
			return nil
		}
		return setAcceptedOptions(c)
	}}
	return lc.Listen(context.Background(), network, addr)
}

// acceptedOptions are the options Go sets on each TCP connection it accepts.
var acceptedOptions = [...]struct{ level, opt, v int }{
	{unix.IPPROTO_TCP, unix.TCP_NODELAY, 1},
	{unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
	{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, 15},
	{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, 15},
	{unix.IPPROTO_TCP, unix.TCP_KEEPCNT, 9},
}

// setAcceptedOptions sets acceptedOptions on a socket.
func setAcceptedOptions(rc syscall.RawConn) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		for _, o := range acceptedOptions {
			if err := unix.SetsockoptInt(int(fd), o.level, o.opt, o.v); err != nil && serr == nil {
				serr = os.NewSyscallError("setsockopt", err)
			}
		}
	})
	if err != nil {
		return err
	}
	return serr
}

// hasAcceptedOptions reports whether the socket has acceptedOptions.
func hasAcceptedOptions(rc syscall.RawConn) bool {
	ok := true
	err := rc.Control(func(fd uintptr) {
		for _, o := range acceptedOptions {
			if v, err := unix.GetsockoptInt(int(fd), o.level, o.opt); err != nil || v != o.v {
				ok = false
			}
		}
	})
	return err == nil && ok
}

// acceptWaiting takes a connection from the listener's backlog without waiting, or returns nil:
// none is waiting, or accept4 failed (the listener closed, out of descriptors, a connection
// reset before it was taken), which the ordinary accept then meets and reports.
func acceptWaiting(rc syscall.RawConn) *Socket {
	nfd, peer, err := accept4(rc)
	if err != nil {
		return nil
	}
	return &Socket{fd: &bareFD{fd: int32(nfd), peer: peer}}
}

// acceptBare accepts one connection through ln.Accept, waiting for it, as a Socket. The options
// Go's net package sets on an accepted TCP connection belong to the socket and stay.
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
func (c *Conn) InitBare(s *Socket, sh *Shared, ev Events) {
	c.bare, c.sh, c.ev = s.fd, sh, ev
	c.wr = rawio.NewRawWriter(s.fd)
	sh.Stats.Detached.Add(1)
}
