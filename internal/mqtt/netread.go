package mqtt

import (
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/ternmq/tern/internal/mqtt/packet"
)

// readBufSize is the pooled read buffer. Larger packets get a buffer of their own for as long as
// they take to arrive.
const readBufSize = 16 << 10

var readBufs = sync.Pool{New: func() any { b := make([]byte, readBufSize); return &b }}

// packetReader frames MQTT packets out of a connection.
//
// On TCP and Unix sockets it waits for readability through syscall.RawConn and only then takes a
// buffer from the pool, giving it back whenever the socket is drained and no partial packet is
// pending. An idle connection therefore holds no read buffer at all, which is most of what makes
// thousands of idle clients cheap. Other connections (TLS, WebSocket) read through net.Conn and
// keep their buffer.
type packetReader struct {
	conn    net.Conn
	raw     syscall.RawConn
	buf     []byte // nil while idle on a raw connection
	pooled  *[]byte
	start   int // first unconsumed byte
	end     int // end of valid data
	maxSize int
}

func newPacketReader(c net.Conn, maxSize int) *packetReader {
	r := &packetReader{conn: c, maxSize: maxSize}
	if sc, ok := c.(syscall.Conn); ok {
		switch c.(type) {
		case *net.TCPConn, *net.UnixConn:
			if raw, err := sc.SyscallConn(); err == nil {
				r.raw = raw
			}
		}
	}
	return r
}

// next returns the next whole packet; body aliases the buffer until the following call.
// idle is the deadline for the wait when no bytes are pending (zero: none).
func (r *packetReader) next(idle time.Duration) (typ, flags byte, body []byte, err error) {
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
		if err := r.fill(idle); err != nil {
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
	r.release()
	r.buf, r.start, r.end = big, 0, pending
}

// compact moves pending bytes to the front, or gives the buffer back when nothing is pending.
func (r *packetReader) compact() {
	if r.start == r.end {
		r.start, r.end = 0, 0
		if r.raw != nil || len(r.buf) > readBufSize {
			r.release()
		}
		return
	}
	if r.end == len(r.buf) {
		n := copy(r.buf, r.buf[r.start:r.end])
		r.start, r.end = 0, n
	}
}

func (r *packetReader) acquire() {
	if r.buf == nil {
		r.pooled = readBufs.Get().(*[]byte)
		r.buf = *r.pooled
	}
}

func (r *packetReader) release() {
	if r.pooled != nil {
		readBufs.Put(r.pooled)
		r.pooled = nil
	}
	r.buf = nil
}

// fill reads more bytes after what is pending.
func (r *packetReader) fill(idle time.Duration) error {
	r.compact()
	if idle > 0 {
		if err := r.conn.SetReadDeadline(time.Now().Add(idle)); err != nil {
			return err
		}
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
	var n int
	var rerr error
	err := r.raw.Read(func(fd uintptr) bool {
		r.acquire()
		for {
			n, rerr = syscall.Read(int(fd), r.buf[r.end:])
			if rerr != syscall.EINTR {
				break
			}
		}
		if rerr == syscall.EAGAIN {
			// Drained: hold no buffer while waiting for the socket to become readable.
			if r.end == 0 {
				r.release()
			}
			return false
		}
		return true
	})
	if err != nil {
		return err
	}
	if rerr != nil {
		return rerr
	}
	if n == 0 {
		return io.EOF
	}
	r.end += n
	return nil
}

// close gives the buffer back.
func (r *packetReader) close() { r.release() }
