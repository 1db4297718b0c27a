//go:build unix

package bench

import (
	"syscall"

	"github.com/ternmq/tern/internal/rawio"
)

// peekRaw makes one non-blocking read into buf: what it read, and whether the connection is
// still open (nothing to read is open; the end or an error is not).
func peekRaw(rc syscall.RawConn, buf []byte) ([]byte, bool) {
	var n int
	var rerr error
	err := rc.Read(func(fd uintptr) bool {
		n, rerr = rawio.ReadFD(fd, buf)
		return true
	})
	switch {
	case err != nil:
		return nil, false
	case rerr == syscall.EAGAIN:
		return nil, true
	case rerr != nil || n <= 0:
		return nil, false
	}
	return buf[:n], true
}
