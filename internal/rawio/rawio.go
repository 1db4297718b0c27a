// Package rawio writes to a TCP or Unix socket without waiting: one write(2), which on Go's
// non-blocking sockets takes what fits in the socket buffer and returns. A connection's reader
// uses it to write for other connections (broker.Batch) without ever being held up by one.
package rawio

import (
	"errors"
	"net"
	"os"
	"syscall"
)

// Writer makes non-blocking writes on one socket. Its zero value, and a Writer for any other
// kind of connection (TLS, WebSocket), is not Able. It is small, since every connection holds
// one; the state of a write is in an Op, which the caller holds only while it has bytes to write.
type Writer struct {
	raw syscall.RawConn
}

// Op is the state of one write, kept by the caller so that a write allocates nothing: the
// callback the runtime calls is bound once per Op. One goroutine at a time may use it.
type Op struct {
	fn  func(fd uintptr) bool
	b   []byte
	n   int
	err error
}

// NewWriter returns a Writer for c, Able when c is a TCP or Unix socket.
func NewWriter(c net.Conn) Writer {
	var w Writer
	if !Supported {
		return w
	}
	switch c.(type) {
	case *net.TCPConn, *net.UnixConn:
		if raw, err := c.(syscall.Conn).SyscallConn(); err == nil {
			w.raw = raw
		}
	}
	return w
}

// NewRawWriter returns a Writer for a socket given as its syscall.RawConn.
func NewRawWriter(raw syscall.RawConn) Writer { return Writer{raw: raw} }

// Able reports whether TryWrite may be used.
func (w *Writer) Able() bool { return w.raw != nil }

// TryWrite writes what the socket takes now, through op; n < len(b) with a nil error means it is
// full.
//
// A write deadline that has passed does not fail it. Such a deadline is a blocking writer's,
// left behind when that write finished: TryWrite reports nothing written, so the caller hands the
// bytes to its blocking writer, which arms a fresh deadline.
func (w *Writer) TryWrite(op *Op, b []byte) (int, error) {
	if op.fn == nil {
		op.fn = op.writeFD
	}
	op.b, op.n, op.err = b, 0, nil
	err := w.raw.Write(op.fn)
	op.b = nil
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if op.err == syscall.EAGAIN {
		return 0, nil
	}
	return op.n, op.err
}
