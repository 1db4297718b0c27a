// Package mbus is tern's mBus face: mBus clients (daemons that register a namespace, call each
// other's commands and publish events) work against tern unchanged, and their events and
// commands meet every other face through the core.
package mbus

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
)

// MaxFrame bounds one frame (and an inflated one): mBus sets no limit, tern does.
const MaxFrame = 4 << 20

// errFrame is a framing error: the client is closed with reason internal_error.
var errFrame = errors.New("mbus: bad frame")

// maxCreateFrame bounds the frames of a client that has not created its session yet (its
// command.create): a stranger is not trusted with MaxFrame.
const maxCreateFrame = 64 << 10

// readFrame reads one frame of at most limit bytes: a 4-byte big-endian length and the payload;
// with zlib, the payload is a 4-byte big-endian inflated length and a zlib stream of exactly that
// many bytes. buf is reused when it is large enough. Memory grows with the bytes that arrive, never
// with the length a header claims.
func readFrame(r io.Reader, compressed bool, buf []byte, limit int) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > uint32(limit) {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", errFrame, n, limit)
	}
	buf, err := readN(r, buf[:0], int(n))
	if err != nil {
		return nil, err
	}
	if !compressed {
		return buf, nil
	}
	return inflate(buf)
}

// readN appends n bytes from r to buf, growing it at most twice as far as the bytes that came.
func readN(r io.Reader, buf []byte, n int) ([]byte, error) {
	for len(buf) < n {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, min(n-len(buf), max(cap(buf), 4096)))
		}
		m, err := r.Read(buf[len(buf):min(cap(buf), n)])
		buf = buf[:len(buf)+m]
		if err != nil && len(buf) < n {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	return buf, nil
}

func inflate(b []byte) ([]byte, error) {
	if len(b) < 4 {
		return nil, fmt.Errorf("%w: compressed frame without its length", errFrame)
	}
	want := binary.BigEndian.Uint32(b)
	if want > MaxFrame {
		return nil, fmt.Errorf("%w: inflates to %d bytes, more than %d", errFrame, want, MaxFrame)
	}
	zr, err := zlib.NewReader(bytes.NewReader(b[4:]))
	if err != nil {
		return nil, fmt.Errorf("%w: zlib: %v", errFrame, err)
	}
	// The announced length is only a claim: start small, grow with what inflates.
	out := make([]byte, 0, min(int(want), 32<<10))
	out, err = readAllLimited(zr, out, int(want)+1)
	if err != nil {
		return nil, fmt.Errorf("%w: zlib: %v", errFrame, err)
	}
	if uint32(len(out)) != want {
		return nil, fmt.Errorf("%w: inflated to %d bytes, the frame said %d", errFrame, len(out), want)
	}
	return out, nil
}

// readAllLimited reads r into out, failing past limit bytes (a zlib bomb).
func readAllLimited(r io.Reader, out []byte, limit int) ([]byte, error) {
	for {
		if len(out) >= limit {
			return nil, errors.New("more data than announced")
		}
		if len(out) == cap(out) {
			out = append(out, 0)[:len(out)]
		}
		n, err := r.Read(out[len(out):min(cap(out), limit)])
		out = out[:len(out)+n]
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// appendFrame appends payload as one frame, compressed with zlib when asked.
func appendFrame(dst, payload []byte, compressed bool) []byte {
	if !compressed {
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(payload)))
		return append(dst, payload...)
	}
	var z bytes.Buffer
	zw := zlib.NewWriter(&z)
	_, _ = zw.Write(payload)
	_ = zw.Close()
	dst = binary.BigEndian.AppendUint32(dst, uint32(4+z.Len()))
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(payload)))
	return append(dst, z.Bytes()...)
}
