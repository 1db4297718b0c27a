// Package packet encodes and decodes MQTT 3.1, 3.1.1 and 5.0 control packets.
//
// The codec sits on the broker's hot path, so it is built around two rules:
//
//   - Decoders alias their input. Every []byte field of a decoded packet points
//     into the body passed to Decode; a caller that keeps a field beyond the
//     life of that buffer must copy it. Decode reuses the slices already held
//     by the struct, so a struct decoded into repeatedly stops allocating.
//   - Encoders append. Append writes the whole wire packet (fixed header
//     included) to dst and allocates only when dst lacks room.
//
// Every decoder rejects bad input with an *Error that carries the reason code
// an MQTT 5 receiver should answer with, and no input makes a decoder panic.
// Every encoder refuses to write a packet that its own decoder would reject.
package packet

import (
	"errors"
	"fmt"
)

// Version is the protocol level byte of CONNECT.
type Version byte

// Protocol levels. V31 ("MQIsdp") differs from V311 only in the CONNECT
// protocol name and the CONNACK flags byte, so everything else treats the two
// alike: any version below V5 is "v3".
const (
	V31  Version = 3
	V311 Version = 4
	V5   Version = 5
)

func (v Version) valid() bool { return v == V31 || v == V311 || v == V5 }

func (v Version) String() string {
	switch v {
	case V31:
		return "3.1"
	case V311:
		return "3.1.1"
	case V5:
		return "5.0"
	}
	return fmt.Sprintf("Version(%d)", byte(v))
}

// Control packet types, the high nibble of the first byte.
const (
	CONNECT     byte = 1
	CONNACK     byte = 2
	PUBLISH     byte = 3
	PUBACK      byte = 4
	PUBREC      byte = 5
	PUBREL      byte = 6
	PUBCOMP     byte = 7
	SUBSCRIBE   byte = 8
	SUBACK      byte = 9
	UNSUBSCRIBE byte = 10
	UNSUBACK    byte = 11
	PINGREQ     byte = 12
	PINGRESP    byte = 13
	DISCONNECT  byte = 14
	AUTH        byte = 15
)

var typeNames = [16]string{"RESERVED", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC",
	"PUBREL", "PUBCOMP", "SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ",
	"PINGRESP", "DISCONNECT", "AUTH"}

// TypeName names a packet type for logs; unknown types get "RESERVED".
func TypeName(typ byte) string {
	if int(typ) < len(typeNames) {
		return typeNames[typ]
	}
	return typeNames[0]
}

// MaxRemaining is the largest remaining length a 4-byte variable byte
// integer can express.
const MaxRemaining = 268435455

// Error is what every decoder returns for bad input, and what encoders return
// for a packet they refuse to write. Code is the reason code the receiver
// should send (in a DISCONNECT, or a CONNACK while connecting); Reason is
// short enough to be sent as an MQTT 5 Reason String.
//
// Errors returned by this package may be shared: treat them as read-only.
type Error struct {
	Code   ReasonCode
	Reason string
}

func (e *Error) Error() string {
	return "mqtt: " + e.Reason + " (" + e.Code.String() + ")"
}

// CodeOf returns the reason code carried by err when it is (or wraps) an
// *Error, and UnspecifiedError otherwise; a broker can use it to pick the
// DISCONNECT reason for any decode failure.
func CodeOf(err error) ReasonCode {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return UnspecifiedError
}

func malformed(reason string) *Error { return &Error{Code: MalformedPacket, Reason: reason} }
func protocolErr(reason string) *Error {
	return &Error{Code: ProtocolError, Reason: reason}
}

// Shared errors: static messages keep the error paths allocation-free, which
// matters when a hostile peer makes us reject packets in a loop.
var (
	errShort         = malformed("packet shorter than its fields")
	errTrailing      = malformed("unexpected bytes after the packet's fields")
	errBadFlags      = malformed("invalid fixed header flags")
	errBadVarint     = malformed("variable byte integer longer than 4 bytes")
	errBadUTF8       = malformed("string is not well-formed UTF-8 or contains U+0000")
	errTypeZero      = malformed("reserved packet type 0")
	errZeroPacketID  = protocolErr("packet identifier 0")
	errBadVersion    = &Error{Code: UnsupportedProtocolVersion, Reason: "unsupported protocol version"}
	errTooLarge      = &Error{Code: PacketTooLarge, Reason: "packet exceeds the maximum size"}
	errStringTooLong = malformed("string or binary field longer than 65535 bytes")
	errV5Only        = protocolErr("AUTH exists only in MQTT 5")
)

// ErrIncomplete reports that b does not yet hold a whole fixed header.
var ErrIncomplete = errors.New("mqtt: incomplete fixed header")

// ParseFixedHeader inspects the start of b. With a complete fixed header it
// returns the type, the low-nibble flags, the remaining length and the
// header's own length (1 + varint bytes). Too few bytes yield ErrIncomplete; a
// remaining length longer than 4 bytes or packet type 0 yield an *Error with
// MalformedPacket. Flags are not checked here: each Decode checks its own.
func ParseFixedHeader(b []byte) (typ, flags byte, remaining, headerLen int, err error) {
	if len(b) == 0 {
		return 0, 0, 0, 0, ErrIncomplete
	}
	typ, flags = b[0]>>4, b[0]&0x0F
	if typ == 0 {
		// Rejected before the length so that garbage fails fast instead of
		// waiting for more bytes.
		return 0, 0, 0, 0, errTypeZero
	}
	n, used, err := readVarint(b[1:])
	if err != nil {
		return 0, 0, 0, 0, err
	}
	return typ, flags, n, 1 + used, nil
}

// Packet is implemented by every packet struct in this package.
type Packet interface {
	// Type is the packet type constant (CONNECT..AUTH).
	Type() byte
	// Append appends the whole wire packet to dst.
	Append(dst []byte, v Version) ([]byte, error)
	// Decode parses a body of exactly remaining-length bytes.
	Decode(flags byte, body []byte, v Version) error
}

// New returns a fresh, empty packet of the given type, or nil for a type
// this package does not know. It allocates; the hot path keeps its own
// structs instead.
func New(typ byte) Packet {
	switch typ {
	case CONNECT:
		return &Connect{}
	case CONNACK:
		return &Connack{}
	case PUBLISH:
		return &Publish{}
	case PUBACK:
		return &Puback{}
	case PUBREC:
		return &Pubrec{}
	case PUBREL:
		return &Pubrel{}
	case PUBCOMP:
		return &Pubcomp{}
	case SUBSCRIBE:
		return &Subscribe{}
	case SUBACK:
		return &Suback{}
	case UNSUBSCRIBE:
		return &Unsubscribe{}
	case UNSUBACK:
		return &Unsuback{}
	case PINGREQ:
		return &Pingreq{}
	case PINGRESP:
		return &Pingresp{}
	case DISCONNECT:
		return &Disconnect{}
	case AUTH:
		return &Auth{}
	}
	return nil
}

// Decode parses one whole wire packet from b (fixed header included) into a
// fresh struct. It is a convenience for tests and tools; b must hold exactly
// one packet.
func Decode(b []byte, v Version) (Packet, error) {
	typ, flags, rem, hl, err := ParseFixedHeader(b)
	if err == ErrIncomplete {
		return nil, errShort
	}
	if err != nil {
		return nil, err
	}
	if len(b)-hl < rem {
		return nil, errShort
	}
	if len(b)-hl > rem {
		return nil, errTrailing
	}
	p := New(typ)
	if err := p.Decode(flags, b[hl:], v); err != nil {
		return nil, err
	}
	return p, nil
}
