package mqtt

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ternmq/tern/internal/message"
	"github.com/ternmq/tern/internal/mqtt/packet"
)

// readBufSize is the pooled read buffer. Larger packets get a buffer of their own for as long as
// they take to arrive.
const readBufSize = 16 << 10

// readBuf is what a connection needs only while it has bytes to process: the read buffer and the
// reusable structures a PUBLISH is decoded into. It is pooled, so an idle connection holds none.
type readBuf struct {
	data  [readBufSize]byte
	pub   packet.Publish
	msg   message.Message
	users []message.UserProperty
}

var readBufs = sync.Pool{New: func() any { return new(readBuf) }}

// packetReader frames MQTT packets out of a connection.
//
// On TCP and Unix sockets it waits for readability through syscall.RawConn and takes a buffer from
// the pool only when there are bytes, giving it back whenever the socket is drained and no partial
// packet is pending. An idle connection therefore holds no read buffer at all, which is most of what makes
// thousands of idle clients cheap. Other connections (TLS, WebSocket) read through net.Conn and
// keep their buffer.
type packetReader struct {
	conn net.Conn
	raw  syscall.RawConn
	// rb is held while bytes are being processed; nil while idle on a raw connection.
	rb *readBuf
	// buf is rb.data, or a larger buffer while a packet bigger than rb.data arrives.
	buf     []byte
	start   int // first unconsumed byte
	end     int // end of valid data
	maxSize int
	// deadline is set while a read deadline is armed, so a wait without one clears it.
	deadline bool
	// beforeRead runs before each read: the connection writes what the packets handled so far
	// produced (broker.Batch) before it takes more or waits.
	beforeRead func()

	// stop is set when the connection is shutting down: a read already waiting is woken by a
	// deadline in the past, and stop keeps a later read from arming a new one over it.
	stop atomic.Bool

	// waiters counts the server's readers that wait on the goroutine that handled their last
	// packets (a lazy read); at maxLazyWaiters a lazy read returns errWouldBlock instead.
	waiters *atomic.Int32

	// State of one raw read, kept here so readFn (bound once) allocates nothing per read.
	readFn     func(fd uintptr) bool
	n          int
	rerr       error
	lazy       bool
	holding    bool
	wouldBlock bool
}

// maxLazyWaiters bounds how many connections of one server keep a grown goroutine stack while
// they wait, so a crowd of connections that each sent a little still waits on minimal stacks.
const maxLazyWaiters = 64

// errWouldBlock: a lazy read found the socket drained and no room among the lazy waiters.
var errWouldBlock = errors.New("mqtt: would block")

func newPacketReader(c net.Conn, maxSize int) *packetReader {
	r := &packetReader{conn: c, maxSize: maxSize}
	if sc, ok := c.(syscall.Conn); ok {
		switch c.(type) {
		case *net.TCPConn, *net.UnixConn:
			if raw, err := sc.SyscallConn(); err == nil {
				r.raw = raw
				r.readFn = r.readFD
			}
		}
	}
	return r
}

// next returns the next whole packet; body aliases the buffer until the following call.
// idle bounds each wait for bytes (zero: no bound); when it passes, next returns
// os.ErrDeadlineExceeded. lazy is a read on a goroutine that has handled packets: on a raw socket
// it waits only while fewer than maxLazyWaiters others do, and otherwise returns errWouldBlock
// when the socket is drained.
func (r *packetReader) next(idle time.Duration, lazy bool) (typ, flags byte, body []byte, err error) {
	for {
		if r.buf != nil && r.end > r.start {
			data := r.buf[r.start:r.end]
			t, f, rem, hl, perr := packet.ParseFixedHeader(data)
			if perr == nil {
				total := hl + rem
				if total > r.maxSize {
					return 0, 0, nil, &packet.Error{Code: packet.PacketTooLarge, Reason: "packet exceeds the server's maximum packet size"}
				}
				if len(data) >= total {
					r.start += total
					return t, f, data[hl:total], nil
				}
				r.ensure(total)
			} else if !errors.Is(perr, packet.ErrIncomplete) {
				return 0, 0, nil, perr
			}
		}
		if err := r.fill(idle, lazy); err != nil {
			return 0, 0, nil, err
		}
	}
}

// ensure makes room for a packet of size total starting at r.start.
func (r *packetReader) ensure(total int) {
	pending := r.end - r.start
	if total <= len(r.buf) {
		if r.start+total > len(r.buf) {
			copy(r.buf, r.buf[r.start:r.end])
			r.start, r.end = 0, pending
		}
		return
	}
	big := make([]byte, total)
	copy(big, r.buf[r.start:r.end])
	r.buf, r.start, r.end = big, 0, pending
}

// compact moves pending bytes to the front, or gives the buffer back when nothing is pending.
func (r *packetReader) compact() {
	if r.start == r.end {
		r.start, r.end = 0, 0
		if r.raw != nil {
			r.release()
		} else if len(r.buf) > readBufSize {
			r.buf = r.rb.data[:]
		}
		return
	}
	if r.end == len(r.buf) {
		n := copy(r.buf, r.buf[r.start:r.end])
		r.start, r.end = 0, n
	}
}

func (r *packetReader) acquire() {
	if r.rb == nil {
		r.rb = readBufs.Get().(*readBuf)
		r.buf = r.rb.data[:]
	}
}

func (r *packetReader) release() {
	if r.rb != nil {
		readBufs.Put(r.rb)
		r.rb = nil
	}
	r.buf = nil
}

// fill reads more bytes after what is pending.
func (r *packetReader) fill(idle time.Duration, lazy bool) error {
	if r.beforeRead != nil {
		r.beforeRead()
	}
	r.compact()
	if idle > 0 || r.deadline {
		var t time.Time
		if idle > 0 {
			t = time.Now().Add(idle)
		}
		if err := r.conn.SetReadDeadline(t); err != nil {
			return err
		}
		r.deadline = idle > 0
	}
	if r.stop.Load() {
		return os.ErrDeadlineExceeded
	}
	if r.raw == nil {
		r.acquire()
		n, err := r.conn.Read(r.buf[r.end:])
		r.end += n
		if n > 0 {
			return nil
		}
		if err == nil {
			err = io.ErrNoProgress
		}
		return err
	}
	r.n, r.rerr, r.lazy, r.wouldBlock = 0, nil, lazy && r.waiters != nil, false
	err := r.raw.Read(r.readFn)
	if r.holding {
		r.holding = false
		r.waiters.Add(-1)
	}
	if err != nil {
		return err
	}
	switch {
	case r.wouldBlock:
		return errWouldBlock
	case r.rerr != nil:
		return r.rerr
	case r.n == 0:
		return io.EOF
	}
	r.end += r.n
	return nil
}

// readFD is the raw read: the poller calls it, and again each time the socket becomes readable
// while it returns false.
func (r *packetReader) readFD(fd uintptr) bool {
	r.acquire()
	for {
		r.n, r.rerr = syscall.Read(int(fd), r.buf[r.end:])
		if r.rerr != syscall.EINTR {
			break
		}
	}
	if r.rerr != syscall.EAGAIN {
		return true
	}
	r.rerr = nil
	// Drained: hold no buffer while waiting for the socket to become readable.
	if r.end == 0 {
		r.release()
	}
	if r.lazy && !r.holding {
		if r.waiters.Add(1) > maxLazyWaiters {
			r.waiters.Add(-1)
			r.wouldBlock = true
			return true
		}
		r.holding = true
	}
	return false
}

// close gives the buffer back.
func (r *packetReader) close() { r.release() }
