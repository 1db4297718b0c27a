package wsconn

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/ternmq/tern/internal/netio"
)

// Conn is an accepted WebSocket connection as a byte stream: Read returns the payloads of the
// client's binary messages back to back, Write sends its bytes as one binary frame. A text frame
// is refused (close 1003): the stream is binary. Pings are answered and pongs ignored; a close
// frame is echoed and ends the stream (io.EOF).
//
// Read keeps its place in the framing between calls and reads no further than the caller asks,
// so an error from the transport (a deadline, netio.ErrWouldBlock) loses nothing: the next Read
// goes on where this one stopped. Only a protocol error or the end of the stream is final.
// One goroutine reads at a time; Write may be called concurrently with Read.
type Conn struct {
	nc    net.Conn
	proto string

	// Reader state: only the reading goroutine touches it.
	pre     []byte                   // bytes that came with the handshake, read first
	hdr     [maxHeader]byte          // the frame header read so far
	hdrN    int                      // how much of hdr is read
	cur     header                   // the frame being read (valid when inFrame)
	pos     int                      // payload bytes of cur read so far (for the mask's phase)
	left    uint64                   // payload bytes of cur still to read
	inFrame bool                     // a data frame's payload is being read
	inMsg   bool                     // a fragmented message awaits its continuation
	msgMode bool                     // ReadMessage is used: text frames are accepted
	dataHdr bool                     // ReadMessage: a data frame's header is read, its payload not yet all
	msgText bool                     // the message under way is text
	msg     []byte                   // ReadMessage's message so far
	ctrl    *[maxControlPayload]byte // a control frame's payload, while it is read
	rerr    error                    // the final read error

	onClose func() // see OnClose

	// Writer state.
	wmu       sync.Mutex
	closeSent bool
	werr      error
}

// Subprotocol is the subprotocol chosen in the handshake ("" for none).
func (c *Conn) Subprotocol() string { return c.proto }

// NetConn is the transport under the WebSocket (a TCP, Unix or TLS connection).
func (c *Conn) NetConn() net.Conn { return c.nc }

// ParkConn is the socket under the WebSocket when it can park in the netio.Poller (the transport
// is a netio.ParkConn, or TLS over one), else nil. Reads through the WebSocket then honour its
// SetNoWait.
func (c *Conn) ParkConn() *netio.ParkConn {
	nc := c.nc
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	pc, _ := nc.(*netio.ParkConn)
	return pc
}

// Read implements net.Conn.
func (c *Conn) Read(p []byte) (int, error) {
	for {
		if c.rerr != nil {
			return 0, c.rerr
		}
		if len(p) == 0 {
			return 0, nil
		}
		if c.inFrame && c.left > 0 {
			if uint64(len(p)) > c.left {
				p = p[:c.left]
			}
			n, err := c.readRaw(p)
			if n > 0 {
				c.pos = unmask(c.cur.mask, c.pos, p[:n])
				c.left -= uint64(n)
				if c.left == 0 {
					c.inFrame = false
				}
				return n, nil
			}
			return 0, c.transportError(err, true)
		}
		c.inFrame = false
		if err := c.readHeader(); err != nil {
			return 0, err
		}
	}
}

// readHeader reads the next frame's header and handles control frames whole; it returns with a
// data frame under way (or a zero-length one done), or with an error.
func (c *Conn) readHeader() error {
	need := 2
	if c.hdrN >= 2 {
		need = headerLen(c.hdr[1])
	}
	for c.hdrN < need {
		n, err := c.readRaw(c.hdr[c.hdrN:need])
		c.hdrN += n
		if c.hdrN >= 2 {
			need = headerLen(c.hdr[1])
		}
		if err != nil && c.hdrN < need {
			return c.transportError(err, c.hdrN > 0)
		}
	}
	h, _, err := parseHeader(c.hdr[:c.hdrN])
	if err != nil {
		var pe *protocolError
		if errors.As(err, &pe) {
			return c.fail(pe)
		}
		return c.fail(&protocolError{closeProtocol, "malformed frame header"})
	}
	switch h.opcode {
	case opText, opBinary:
		if h.opcode == opText && !c.msgMode {
			return c.fail(&protocolError{closeUnsupported, "text frames are not accepted: the stream is binary"})
		}
		if c.inMsg {
			return c.fail(&protocolError{closeProtocol, "a new message began before the last one ended"})
		}
		c.msgText = h.opcode == opText
	case opContinuation:
		if !c.inMsg {
			return c.fail(&protocolError{closeProtocol, "continuation frame without a message"})
		}
	default:
		return c.readControl(h)
	}
	c.hdrN = 0
	c.inMsg = !h.fin
	c.cur, c.pos, c.left, c.inFrame = h, 0, h.length, h.length > 0
	c.dataHdr = true
	return nil
}

// readControl reads a control frame's payload (keeping what it has read across calls) and acts
// on it once it is whole.
func (c *Conn) readControl(h header) error {
	if c.ctrl == nil {
		c.ctrl = new([maxControlPayload]byte)
		c.pos = 0
	}
	for uint64(c.pos) < h.length {
		n, err := c.readRaw(c.ctrl[c.pos:h.length])
		c.pos += n
		if err != nil && uint64(c.pos) < h.length {
			return c.transportError(err, true)
		}
	}
	body := c.ctrl[:h.length]
	unmask(h.mask, 0, body)
	c.hdrN, c.pos = 0, 0
	switch h.opcode {
	case opPing:
		err := c.writeControl(opPong, body)
		c.ctrl = nil
		if err != nil {
			c.rerr = err
			return err
		}
	case opPong:
		c.ctrl = nil
	case opClose:
		code := uint16(closeNormal)
		if len(body) >= 2 {
			code = binary.BigEndian.Uint16(body)
		}
		c.ctrl = nil
		// Echo the close (RFC 6455 section 5.5.1), then the stream is over.
		_ = c.sendClose(code, "")
		c.rerr = io.EOF
		return io.EOF
	}
	return nil
}

// readRaw reads from the handshake's leftover bytes, then from the transport.
func (c *Conn) readRaw(p []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(p, c.pre)
		c.pre = c.pre[n:]
		if len(c.pre) == 0 {
			c.pre = nil
		}
		return n, nil
	}
	return c.nc.Read(p)
}

// transportError passes a transport error on: a timeout or ErrWouldBlock leaves the state as
// it is, for the next Read; the end of the stream inside a frame is unexpected; others are
// final.
func (c *Conn) transportError(err error, midFrame bool) error {
	if err == nil {
		return nil
	}
	var ne net.Error
	if errors.Is(err, netio.ErrWouldBlock) || errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		return err
	}
	if errors.Is(err, io.EOF) && midFrame {
		err = io.ErrUnexpectedEOF
	}
	c.rerr = err
	return err
}

// fail ends the stream for a protocol error: the client is told why in a close frame.
func (c *Conn) fail(pe *protocolError) error {
	_ = c.sendClose(pe.code, pe.reason)
	c.rerr = pe
	return pe
}

// Write sends p as one binary frame.
func (c *Conn) Write(p []byte) (int, error) {
	if err := c.writeFrame(opBinary, p, 0); err != nil {
		return 0, err
	}
	return len(p), nil
}

// maxPooledFrame: frames up to this size are built in a pooled buffer and written at once;
// larger ones go as their header and then their payload.
const maxPooledFrame = 128 << 10

var framePool = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

// writeFrame writes one frame (header and payload in one write when it fits the pool's
// buffers, so a TLS transport makes one record of it), within timeout unless it is zero. A
// failed or partial write leaves the framing broken: every later write fails.
func (c *Conn) writeFrame(opcode byte, p []byte, timeout time.Duration) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return c.werr
	}
	if c.closeSent {
		return net.ErrClosed
	}
	if timeout > 0 {
		_ = c.nc.SetWriteDeadline(time.Now().Add(timeout))
		defer func() { _ = c.nc.SetWriteDeadline(time.Time{}) }()
	}
	return c.writeLocked(opcode, p)
}

func (c *Conn) writeLocked(opcode byte, p []byte) error {
	var err error
	if len(p)+maxHeader <= maxPooledFrame {
		bp := framePool.Get().(*[]byte)
		b := append(appendFrameHeader((*bp)[:0], opcode, len(p)), p...)
		_, err = c.nc.Write(b)
		if cap(b) <= maxPooledFrame {
			*bp = b[:0]
			framePool.Put(bp)
		}
	} else {
		var hb [maxHeader]byte
		if _, err = c.nc.Write(appendFrameHeader(hb[:0], opcode, len(p))); err == nil {
			_, err = c.nc.Write(p)
		}
	}
	if err != nil {
		c.werr = err
	}
	return err
}

// controlWriteWait bounds the write of a frame the reader sends (a pong, a close): a client that
// pings and never reads must not hold the reader, which may be a worker of the poller's pool.
const controlWriteWait = 5 * time.Second

// writeControl writes a pong within controlWriteWait.
func (c *Conn) writeControl(opcode byte, body []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return c.werr
	}
	if c.closeSent {
		return nil // the client's ping crossed our close: nothing more is sent
	}
	_ = c.nc.SetWriteDeadline(time.Now().Add(controlWriteWait))
	err := c.writeLocked(opcode, body)
	_ = c.nc.SetWriteDeadline(time.Time{})
	return err
}

// sendClose sends a close frame once, within controlWriteWait.
func (c *Conn) sendClose(code uint16, reason string) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.nc.SetWriteDeadline(time.Now().Add(controlWriteWait))
	err := c.sendCloseLocked(code, reason)
	_ = c.nc.SetWriteDeadline(time.Time{})
	return err
}

func (c *Conn) sendCloseLocked(code uint16, reason string) error {
	if c.closeSent || c.werr != nil {
		return c.werr
	}
	if len(reason) > maxControlPayload-2 {
		reason = reason[:maxControlPayload-2]
	}
	body := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(reason)), code)
	err := c.writeLocked(opClose, append(body, reason...))
	c.closeSent = true
	return err
}

// CloseWrite ends the server's side with a normal close frame (CloseWith). The client answers
// with its close frame, which Read reports as io.EOF.
func (c *Conn) CloseWrite() error { return c.CloseWith(closeNormal, "") }

// Close sends a close frame if no write is under way (a writer blocked on a full socket must
// not hold Close up) and closes the transport, then runs what OnClose gave it.
func (c *Conn) Close() error {
	if c.wmu.TryLock() {
		_ = c.nc.SetWriteDeadline(time.Now().Add(closeFrameWait))
		_ = c.sendCloseLocked(closeNormal, "")
		c.wmu.Unlock()
	}
	err := c.nc.Close()
	if c.onClose != nil {
		c.onClose()
	}
	return err
}

// OnClose gives Close something to run after it has closed the transport, such as letting go
// of the upgrade request's count (fn must tolerate more than one call: Close may be called
// again). Call it before the Conn is handed on.
func (c *Conn) OnClose(fn func()) { c.onClose = fn }

// closeFrameWait bounds the close frame's write on Close.
const closeFrameWait = 100 * time.Millisecond

// LocalAddr implements net.Conn.
func (c *Conn) LocalAddr() net.Addr { return c.nc.LocalAddr() }

// RemoteAddr implements net.Conn.
func (c *Conn) RemoteAddr() net.Addr { return c.nc.RemoteAddr() }

// SetDeadline implements net.Conn.
func (c *Conn) SetDeadline(t time.Time) error { return c.nc.SetDeadline(t) }

// SetReadDeadline implements net.Conn.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.nc.SetReadDeadline(t) }

// SetWriteDeadline implements net.Conn.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.nc.SetWriteDeadline(t) }
