package netio

import (
	"math"
	"net"
	"os"
	"runtime"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ternmq/tern/internal/rawio"
)

// bareFD is a socket descriptor held without Go's net package or its netpoller: what a detached
// connection keeps (Conn.Detach). It is a syscall.RawConn whose Read and Write never wait: a
// callback asking to wait gets ErrWouldBlock, so only non-blocking readers and writers use it.
//
// Its count of callers makes a close safe against the reads and writes of other goroutines, which
// Go's netFD does with its reference counts: the descriptor is closed only when no callback runs,
// and a callback never runs after the close, so a number the kernel has given to a new socket is
// never written to. (A sync.RWMutex did this too, in 24 bytes where the count takes 4: every
// detached connection holds a bareFD.)
type bareFD struct {
	// users counts the callbacks running on fd; closing, its top bit, is set by close, which
	// then waits for the count to fall to zero. A caller that finds it set fails.
	users atomic.Int32
	fd    int32
	// peer names the client's end when the socket was accepted bare ("" otherwise: remoteAddr
	// asks the socket).
	peer string
}

// closing is the top bit of bareFD.users.
const closing = math.MinInt32

// enter counts a caller in, unless the descriptor is closing or closed; leave counts it out.
// Callbacks run between them never wait (the socket is non-blocking), so close's wait is short.
func (b *bareFD) enter() bool {
	if b.users.Add(1) < 0 {
		b.users.Add(-1)
		return false
	}
	return true
}

func (b *bareFD) leave() { b.users.Add(-1) }

// dupBare duplicates the socket under rc into a bareFD.
func dupBare(rc syscall.RawConn) (*bareFD, error) {
	fd, err := dupFD(rc)
	if err != nil {
		return nil, err
	}
	return &bareFD{fd: int32(fd)}, nil
}

// Control runs f with the descriptor unless it is closed.
func (b *bareFD) Control(f func(fd uintptr)) error {
	if !b.enter() {
		return net.ErrClosed
	}
	defer b.leave()
	f(uintptr(b.fd))
	return nil
}

// Read runs f once; f returning false (it would wait) gives ErrWouldBlock.
func (b *bareFD) Read(f func(fd uintptr) bool) error { return b.once(f) }

// Write runs f once; f returning false (it would wait) gives ErrWouldBlock.
func (b *bareFD) Write(f func(fd uintptr) bool) error { return b.once(f) }

func (b *bareFD) once(f func(fd uintptr) bool) error {
	if !b.enter() {
		return net.ErrClosed
	}
	defer b.leave()
	if !f(uintptr(b.fd)) {
		return ErrWouldBlock
	}
	return nil
}

// netConn makes a net.Conn of a duplicate of the descriptor, registered with Go's netpoller.
// (net.FileConn duplicates what it is given once more; the first duplicate is closed at once.)
func (b *bareFD) netConn() (net.Conn, error) {
	fd, err := dupFD(b)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "socket")
	defer f.Close()
	return net.FileConn(f)
}

// shutdownWrite shuts the socket's write side.
func (b *bareFD) shutdownWrite() error {
	var serr error
	if err := b.Control(func(fd uintptr) { serr = unix.Shutdown(int(fd), unix.SHUT_WR) }); err != nil {
		return err
	}
	return serr
}

// close closes the descriptor once no callback runs, and reports whether this call closed it;
// later calls of the other methods fail with net.ErrClosed.
func (b *bareFD) close() bool {
	for {
		n := b.users.Load()
		if n < 0 {
			return false
		}
		if b.users.CompareAndSwap(n, n|closing) {
			break
		}
	}
	for b.users.Load() != closing {
		runtime.Gosched()
	}
	_ = unix.Close(int(b.fd))
	return true
}

// ended reads and discards what the socket holds, without waiting, and reports whether its
// stream has ended or failed (false: more may come). It reads at most 8 KiB: a client still
// sending that much is drained the usual way.
func (b *bareFD) ended() bool {
	var buf [512]byte
	gone := false
	_ = b.Control(func(fd uintptr) {
		for range 16 {
			n, err := rawio.ReadFD(fd, buf[:])
			switch {
			case err == unix.EAGAIN:
				return
			case err != nil || n == 0:
				gone = true
				return
			}
		}
	})
	return gone
}

// remoteAddr is the peer's address as net.TCPAddr.String gives it ("" when unknown).
func (b *bareFD) remoteAddr() string {
	if b.peer != "" {
		return b.peer
	}
	if a := b.addr(true); a != nil {
		return a.String()
	}
	return ""
}
