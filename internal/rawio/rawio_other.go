//go:build !unix

package rawio

import "errors"

// Supported reports whether sockets here are descriptors that take a read or write that never
// waits: not here (Windows), where Go's sockets are overlapped handles. No Writer is Able and
// callers use their net.Conn.
const Supported = false

// ReadFD is unsupported here (see Supported).
func ReadFD(uintptr, []byte) (int, error) { return 0, errors.ErrUnsupported }

func (op *Op) writeFD(uintptr) bool {
	op.err = errors.ErrUnsupported
	return true
}
