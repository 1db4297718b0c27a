package netio

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// fdOp is one system call made on a socket through syscall.RawConn.Control, with its arguments
// and results. Control takes a callback, and a closure that captures its results escapes to the
// heap with them: three allocations per call, for calls made on every connection (a park is an
// epoll_ctl, an accept of a storm an accept4). An fdOp comes from a pool with its callback bound
// once, so these calls allocate nothing.
type fdOp struct {
	call func(fd uintptr) // o.do, bound once
	kind fdOpKind
	epfd int
	op   int
	ev   unix.EpollEvent
	// sa receives the peer's address of an accept4 (salen its length).
	sa    unix.RawSockaddrAny
	salen uint32
	n     int // the result: a descriptor
	err   error
}

type fdOpKind uint8

const (
	opNumber   fdOpKind = iota // n = the descriptor itself
	opEpollCtl                 // epoll_ctl(epfd, op, fd, &ev)
	opAccept                   // n = accept4(fd, &sa), non-blocking and close-on-exec
	opDup                      // n = a close-on-exec duplicate of fd
)

var fdOps = sync.Pool{New: func() any {
	o := new(fdOp)
	o.call = o.do
	return o
}}

func (o *fdOp) do(fd uintptr) {
	switch o.kind {
	case opNumber:
		o.n = int(fd)
	case opEpollCtl:
		o.err = unix.EpollCtl(o.epfd, o.op, int(fd), &o.ev)
	case opAccept:
		o.salen = uint32(unsafe.Sizeof(o.sa))
		n, _, e := unix.Syscall6(unix.SYS_ACCEPT4, fd, uintptr(unsafe.Pointer(&o.sa)),
			uintptr(unsafe.Pointer(&o.salen)), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
		if e != 0 {
			o.err = e
		} else {
			o.n = int(n)
		}
	case opDup:
		o.n, o.err = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	}
}

// getFDOp returns a pooled fdOp of kind, its results cleared; putFDOp gives it back.
func getFDOp(kind fdOpKind) *fdOp {
	o := fdOps.Get().(*fdOp)
	o.kind, o.n, o.err = kind, -1, nil
	return o
}

func putFDOp(o *fdOp) { fdOps.Put(o) }

// run makes the call on rc's descriptor: the error is Control's (the socket is closed) or the
// call's.
func (o *fdOp) run(rc syscall.RawConn) error {
	if err := rc.Control(o.call); err != nil {
		return err
	}
	return o.err
}

// fdNumber returns the descriptor under rc.
func fdNumber(rc syscall.RawConn) (int, error) {
	o := getFDOp(opNumber)
	defer putFDOp(o)
	err := o.run(rc)
	return o.n, err
}

// epollCtl runs epoll_ctl(epfd, op, fd, ev) on the descriptor under rc.
func epollCtl(rc syscall.RawConn, epfd, op int, ev unix.EpollEvent) error {
	o := getFDOp(opEpollCtl)
	defer putFDOp(o)
	o.epfd, o.op, o.ev = epfd, op, ev
	return o.run(rc)
}

// dupFD duplicates the descriptor under rc (close-on-exec, as Go opens every descriptor).
func dupFD(rc syscall.RawConn) (int, error) {
	o := getFDOp(opDup)
	defer putFDOp(o)
	err := o.run(rc)
	return o.n, err
}

// accept4 takes a connection from the backlog of the listening socket under rc without waiting,
// and names its peer as Go's net package would.
func accept4(rc syscall.RawConn) (fd int, peer string, err error) {
	o := getFDOp(opAccept)
	defer putFDOp(o)
	if err := o.run(rc); err != nil {
		return -1, "", err
	}
	return o.n, peerName(&o.sa, o.salen), nil
}

// peerName formats an address from accept4 as net.TCPAddr.String does (an IPv4-mapped IPv6
// address as IPv4, no zone), or a Unix socket's as x/sys/unix names it (an unnamed or abstract
// peer starts with "@"). The string is the only allocation.
func peerName(sa *unix.RawSockaddrAny, salen uint32) string {
	switch sa.Addr.Family {
	case unix.AF_INET:
		in := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(in.Addr), netPort(in.Port)).String()
	case unix.AF_INET6:
		in := (*unix.RawSockaddrInet6)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom16(in.Addr).Unmap(), netPort(in.Port)).String()
	case unix.AF_UNIX:
		in := (*unix.RawSockaddrUnix)(unsafe.Pointer(sa))
		n := min(int(salen)-int(unsafe.Offsetof(in.Path)), len(in.Path))
		if n <= 0 {
			return "@" // unnamed
		}
		path := unsafe.Slice((*byte)(unsafe.Pointer(&in.Path[0])), n)
		if path[0] == 0 {
			return "@" + string(path[1:]) // abstract
		}
		if i := bytes.IndexByte(path, 0); i >= 0 {
			path = path[:i]
		}
		return string(path)
	}
	return ""
}

// netPort reads a port kept in network byte order.
func netPort(p uint16) uint16 { return binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&p))[:]) }
