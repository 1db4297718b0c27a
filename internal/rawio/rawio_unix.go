//go:build unix

package rawio

import "syscall"

// Supported reports whether sockets here are descriptors that take a read(2) or write(2) that
// never waits. Elsewhere (Windows) nothing is Able and callers use their net.Conn.
const Supported = true

// ReadFD reads once from a non-blocking descriptor (a RawConn.Read callback's), retrying only
// when a signal interrupted it; a drained socket answers syscall.EAGAIN. n is never negative.
func ReadFD(fd uintptr, p []byte) (int, error) {
	for {
		n, err := syscall.Read(int(fd), p)
		if err != syscall.EINTR {
			return max(n, 0), err
		}
	}
}

// writeFD makes one write attempt and never asks the poller to wait.
func (op *Op) writeFD(fd uintptr) bool {
	for {
		n, err := syscall.Write(int(fd), op.b)
		if err != syscall.EINTR {
			op.n, op.err = max(n, 0), err
			return true
		}
	}
}
