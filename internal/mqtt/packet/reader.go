package packet

import (
	"errors"
	"io"
)

// Reader frames whole packets out of a byte stream for clients, tools and
// tests. It reads into one internal buffer, as much as the stream offers at
// once, and hands out bodies that alias that buffer.
type Reader struct {
	r         io.Reader
	buf       []byte
	start     int // first unconsumed byte
	end       int // end of buffered data
	maxPacket int
	err       error // sticky read or framing error
}

// DefaultBufSize is used when NewReader is given a bufSize <= 0.
const DefaultBufSize = 4096

// maxWire is the largest packet the protocol can express.
const maxWire = 1 + 4 + MaxRemaining

// NewReader returns a Reader on r. bufSize is the initial buffer size; the
// buffer grows, up to the size of one packet, when a packet does not fit.
// maxPacket bounds a whole packet, fixed header included (as MQTT 5's
// Maximum Packet Size does); larger packets fail with PacketTooLarge.
// maxPacket <= 0 means no limit beyond the protocol's own.
func NewReader(r io.Reader, bufSize, maxPacket int) *Reader {
	if bufSize <= 0 {
		bufSize = DefaultBufSize
	}
	if maxPacket <= 0 || maxPacket > maxWire {
		maxPacket = maxWire
	}
	if bufSize < 5 {
		bufSize = 5 // room for any fixed header
	}
	return &Reader{r: r, buf: make([]byte, bufSize), maxPacket: maxPacket}
}

// Next returns the next packet's type, flags and body (exactly the
// remaining-length bytes). body is valid until the next call to Next. At a
// clean end of stream it returns io.EOF; a stream ending inside a packet
// gives io.ErrUnexpectedEOF. Framing errors (*Error) and read errors are
// sticky: every later call returns the same error.
func (r *Reader) Next() (typ, flags byte, body []byte, err error) {
	if e, ok := r.err.(*Error); ok {
		return 0, 0, nil, e
	}
	for {
		typ, flags, rem, hl, perr := ParseFixedHeader(r.buf[r.start:r.end])
		if perr == nil {
			total := hl + rem
			if total > r.maxPacket {
				r.err = errTooLarge
				return 0, 0, nil, r.err
			}
			if r.end-r.start >= total {
				body = r.buf[r.start+hl : r.start+total : r.start+total]
				r.start += total
				return typ, flags, body, nil
			}
			if err := r.fill(total); err != nil {
				return 0, 0, nil, err
			}
			continue
		}
		if perr != ErrIncomplete {
			r.err = perr
			return 0, 0, nil, perr
		}
		if err := r.fill(5); err != nil {
			return 0, 0, nil, err
		}
	}
}

// fill reads at least one more byte into the buffer, first making room for
// a packet of need bytes starting at r.start. It moves unconsumed bytes to
// the front (invalidating earlier bodies, which the API allows) and grows
// the buffer only when the packet alone is larger than it.
func (r *Reader) fill(need int) error {
	if r.err != nil {
		if r.err == io.EOF && r.end > r.start {
			return io.ErrUnexpectedEOF
		}
		return r.err
	}
	if r.start == r.end {
		r.start, r.end = 0, 0
	}
	if r.start+need > len(r.buf) {
		if need > len(r.buf) {
			// Double to amortise a run of growing packets, but never past
			// the largest packet we accept.
			size := min(2*len(r.buf), r.maxPacket)
			nb := make([]byte, max(size, need))
			r.end = copy(nb, r.buf[r.start:r.end])
			r.buf = nb
		} else {
			r.end = copy(r.buf, r.buf[r.start:r.end])
		}
		r.start = 0
	}
	// io.Reader may legally return 0, nil; give up after many in a row
	// instead of spinning, as bufio does.
	for empty := 0; empty < 100; empty++ {
		n, err := r.r.Read(r.buf[r.end:])
		if n < 0 || n > len(r.buf)-r.end {
			r.err = errors.New("mqtt: reader returned an invalid count")
			return r.err
		}
		r.end += n
		if err != nil {
			r.err = err
			if n > 0 {
				return nil // use the bytes first; the error comes next time
			}
			if err == io.EOF && r.end > r.start {
				return io.ErrUnexpectedEOF
			}
			return err
		}
		if n > 0 {
			return nil
		}
	}
	r.err = io.ErrNoProgress
	return r.err
}

// Ready reports whether a whole packet is buffered, so that Next returns without reading (or
// with the framing error it already has).
func (r *Reader) Ready() bool {
	_, _, rem, hl, err := ParseFixedHeader(r.buf[r.start:r.end])
	if err != nil {
		return err != ErrIncomplete
	}
	return r.end-r.start >= hl+rem
}

// Buffered returns how many bytes have been read but not yet returned.
func (r *Reader) Buffered() int { return r.end - r.start }
