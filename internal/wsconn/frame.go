package wsconn

import (
	"encoding/binary"
	"errors"
)

// Opcodes (RFC 6455 section 5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// Close codes (RFC 6455 section 7.4.1).
const (
	closeNormal      = 1000
	closeProtocol    = 1002
	closeUnsupported = 1003
	closeTooBig      = 1009
)

// maxControlPayload is the most a control frame may carry.
const maxControlPayload = 125

// maxHeader is the longest frame header: 2 bytes, an 8-byte length, a 4-byte mask.
const maxHeader = 14

// header is a client frame's header.
type header struct {
	fin    bool
	opcode byte
	length uint64
	mask   [4]byte
}

// errShort: the header is not complete yet.
var errShort = errors.New("websocket: incomplete frame header")

// protocolError is a frame the connection must be closed for, with the close code to send.
type protocolError struct {
	code   uint16
	reason string
}

func (e *protocolError) Error() string { return "websocket: " + e.reason }

// parseHeader reads a client frame's header from the start of b: the header and its length, or
// errShort when b holds only part of it, or a *protocolError for a frame no client may send
// (reserved bits without an extension, an unknown opcode, an unmasked frame, a fragmented or
// oversized control frame, a length with its top bit set).
func parseHeader(b []byte) (header, int, error) {
	if len(b) < 2 {
		return header{}, 0, errShort
	}
	var h header
	h.fin = b[0]&0x80 != 0
	if b[0]&0x70 != 0 {
		return h, 0, &protocolError{closeProtocol, "reserved bits set (no extension was agreed)"}
	}
	h.opcode = b[0] & 0x0F
	switch h.opcode {
	case opContinuation, opText, opBinary, opClose, opPing, opPong:
	default:
		return h, 0, &protocolError{closeProtocol, "unknown opcode"}
	}
	if b[1]&0x80 == 0 {
		return h, 0, &protocolError{closeProtocol, "client frames must be masked"}
	}
	n := 2
	switch l := b[1] & 0x7F; l {
	case 126:
		if len(b) < n+2 {
			return h, 0, errShort
		}
		h.length = uint64(binary.BigEndian.Uint16(b[n:]))
		n += 2
	case 127:
		if len(b) < n+8 {
			return h, 0, errShort
		}
		h.length = binary.BigEndian.Uint64(b[n:])
		if h.length>>63 != 0 {
			return h, 0, &protocolError{closeProtocol, "frame length out of range"}
		}
		n += 8
	default:
		h.length = uint64(l)
	}
	if h.opcode >= opClose && (!h.fin || h.length > maxControlPayload) {
		return h, 0, &protocolError{closeProtocol, "control frames must be whole and at most 125 bytes"}
	}
	if len(b) < n+4 {
		return h, 0, errShort
	}
	copy(h.mask[:], b[n:n+4])
	return h, n + 4, nil
}

// headerLen is how many bytes the header starting with b0, b1 takes (b1's length code and mask
// bit decide it).
func headerLen(b1 byte) int {
	n := 2
	switch b1 & 0x7F {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if b1&0x80 != 0 {
		n += 4
	}
	return n
}

// unmask applies the frame's mask to b, whose first byte is payload byte number pos of the frame;
// it returns the position after b.
func unmask(mask [4]byte, pos int, b []byte) int {
	end := pos + len(b)
	var k [4]byte // the mask rotated to start at pos
	for j := range k {
		k[j] = mask[(pos+j)&3]
	}
	// Eight bytes at a time: the phase of the mask is the same after eight bytes.
	k64 := uint64(binary.LittleEndian.Uint32(k[:]))
	k64 |= k64 << 32
	for len(b) >= 8 {
		binary.LittleEndian.PutUint64(b, binary.LittleEndian.Uint64(b)^k64)
		b = b[8:]
	}
	for i := range b {
		b[i] ^= k[i&3]
	}
	return end
}

// appendFrameHeader appends an unmasked server frame header (FIN set) for a payload of n bytes.
func appendFrameHeader(b []byte, opcode byte, n int) []byte {
	b = append(b, 0x80|opcode)
	switch {
	case n <= 125:
		return append(b, byte(n))
	case n <= 0xFFFF:
		return binary.BigEndian.AppendUint16(append(b, 126), uint16(n))
	default:
		return binary.BigEndian.AppendUint64(append(b, 127), uint64(n))
	}
}
