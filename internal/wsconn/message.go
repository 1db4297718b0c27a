package wsconn

import (
	"fmt"
	"time"
	"unicode/utf8"
)

// Close codes a server sends with CloseWith (RFC 6455 section 7.4.1).
const (
	StatusNormal          uint16 = closeNormal
	StatusGoingAway       uint16 = 1001
	StatusUnsupportedData uint16 = closeUnsupported
	StatusInvalidPayload  uint16 = 1007
	StatusPolicyViolation uint16 = 1008
	StatusMessageTooBig   uint16 = closeTooBig
	StatusTryAgainLater   uint16 = 1013
)

// ReadMessage reads the next whole message, text or binary, of at most limit bytes; a longer
// one ends the connection (close 1009), as does a text message that is not UTF-8 (1007). The
// message is the caller's. A Conn read with ReadMessage is read with it only (not with Read).
//
// Like Read it keeps its place: a transport error that is not final (a deadline,
// netio.ErrWouldBlock) returns with the message so far kept, and the next call goes on. Between
// messages the Conn holds no buffer, so a quiet connection costs only its framing state.
func (c *Conn) ReadMessage(limit int) (text bool, msg []byte, err error) {
	c.msgMode = true
	for {
		if c.rerr != nil {
			return false, nil, c.rerr
		}
		if c.dataHdr {
			if c.left > 0 {
				if err := c.readPayload(); err != nil {
					return false, nil, err
				}
				continue
			}
			c.dataHdr, c.inFrame = false, false
			if c.cur.fin {
				return c.endMessage()
			}
		}
		if err := c.readHeader(); err != nil {
			return false, nil, err
		}
		if c.dataHdr && uint64(len(c.msg))+c.cur.length > uint64(limit) {
			return false, nil, c.fail(&protocolError{closeTooBig, fmt.Sprintf("a message may have at most %d bytes", limit)})
		}
	}
}

// readPayload reads what the transport has of the current frame's payload into c.msg.
func (c *Conn) readPayload() error {
	if cap(c.msg)-len(c.msg) < int(c.left) {
		grown := make([]byte, len(c.msg), len(c.msg)+int(c.left))
		copy(grown, c.msg)
		c.msg = grown
	}
	p := c.msg[len(c.msg) : len(c.msg)+int(c.left)]
	n, err := c.readRaw(p)
	if n > 0 {
		c.pos = unmask(c.cur.mask, c.pos, p[:n])
		c.left -= uint64(n)
		c.msg = c.msg[:len(c.msg)+n]
		return nil
	}
	return c.transportError(err, true)
}

// endMessage hands over the message just completed.
func (c *Conn) endMessage() (bool, []byte, error) {
	msg, text := c.msg, c.msgText
	c.msg = nil
	if msg == nil {
		msg = []byte{}
	}
	if text && !utf8.Valid(msg) {
		return false, nil, c.fail(&protocolError{StatusInvalidPayload, "a text message must be UTF-8"})
	}
	return text, msg, nil
}

// WriteMessage sends p as one text or binary frame within timeout (none when zero). Writes are
// serialised; a failed write fails every later one.
func (c *Conn) WriteMessage(text bool, p []byte, timeout time.Duration) error {
	op := byte(opBinary)
	if text {
		op = opText
	}
	return c.writeFrame(op, p, timeout)
}

// CloseWith ends the server's side with a close frame carrying code and reason (cut to fit a
// control frame), then the transport's CloseWrite where it has one; the transport stays open
// for the client's close frame, which a read then reports as io.EOF. It waits for a write under
// way, which that write's deadline bounds.
func (c *Conn) CloseWith(code uint16, reason string) error {
	if err := c.sendClose(code, reason); err != nil {
		return err
	}
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
