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
)

// MaxFrame bounds one frame (and an inflated one): mBus sets no limit, tern does.
const MaxFrame = 4 << 20

// errFrame is a framing error: the client is closed with reason internal_error.
var errFrame = errors.New("mbus: bad frame")

// readFrame reads one frame: a 4-byte big-endian length and the payload; with zlib, the payload
// is a 4-byte big-endian inflated length and a zlib stream of exactly that many bytes.
func readFrame(r io.Reader, compressed bool, buf []byte) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > MaxFrame {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", errFrame, n, MaxFrame)
	}
	if cap(buf) < int(n) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, err
	}
	if !compressed {
		return buf, nil
	}
	return inflate(buf)
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
	out := make([]byte, 0, want)
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
