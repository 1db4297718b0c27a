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
// kind of connection (TLS, WebSocket), is not Able. One goroutine at a time may use it.
type Writer struct {
	raw syscall.RawConn
	// State of one write, kept here so writeFn (bound once) allocates nothing per write.
	writeFn func(fd uintptr) bool
	b       []byte
	n       int
	err     error
}

// NewWriter returns a Writer for c, Able when c is a TCP or Unix socket.
func NewWriter(c net.Conn) Writer {
	var w Writer
	switch c.(type) {
	case *net.TCPConn, *net.UnixConn:
		if raw, err := c.(syscall.Conn).SyscallConn(); err == nil {
			w.raw = raw
		}
	}
	return w
}

// Able reports whether TryWrite may be used.
func (w *Writer) Able() bool { return w.raw != nil }

// TryWrite writes what the socket takes now; n < len(b) with a nil error means it is full.
//
// A write deadline that has passed does not fail it. Such a deadline is a blocking writer's,
// left behind when that write finished: TryWrite reports nothing written, so the caller hands the
// bytes to its blocking writer, which arms a fresh deadline.
func (w *Writer) TryWrite(b []byte) (int, error) {
	if w.writeFn == nil {
		w.writeFn = w.writeFD
	}
	w.b, w.n, w.err = b, 0, nil
	err := w.raw.Write(w.writeFn)
	w.b = nil
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if w.err == syscall.EAGAIN {
		return 0, nil
	}
	return w.n, w.err
}

// writeFD makes one write attempt and never asks the poller to wait.
func (w *Writer) writeFD(fd uintptr) bool {
	for {
		w.n, w.err = syscall.Write(int(fd), w.b)
		if w.err != syscall.EINTR {
			break
		}
	}
	if w.n < 0 {
		w.n = 0
	}
	return true
}
