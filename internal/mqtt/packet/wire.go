package packet

import (
	"slices"
	"unicode/utf8"
)

// Primitive wire types shared by every packet. Readers take the unread part
// of a body and return the value and what is left; each checks its bounds so
// that no packet decoder indexes past the end of its input.

// readVarint decodes a variable byte integer. A short input gives
// ErrIncomplete (the fixed-header reader waits for more bytes on that);
// inside a body use readVarintBody. Non-minimal encodings (0x80 0x00 for 0)
// are accepted: the spec only requires senders to be minimal.
func readVarint(b []byte) (n, used int, err error) {
	mult := 1
	for i := 0; i < 4; i++ {
		if i >= len(b) {
			return 0, 0, ErrIncomplete
		}
		c := b[i]
		n += int(c&0x7F) * mult
		if c&0x80 == 0 {
			return n, i + 1, nil
		}
		mult <<= 7
	}
	return 0, 0, errBadVarint
}

func readVarintBody(b []byte) (int, []byte, error) {
	n, used, err := readVarint(b)
	if err == ErrIncomplete {
		return 0, nil, errShort
	}
	if err != nil {
		return 0, nil, err
	}
	return n, b[used:], nil
}

func varintLen(n int) int {
	switch {
	case n < 1<<7:
		return 1
	case n < 1<<14:
		return 2
	case n < 1<<21:
		return 3
	}
	return 4
}

// appendVarint writes n (0..MaxRemaining, checked by callers) minimally.
func appendVarint(dst []byte, n int) []byte {
	for {
		c := byte(n & 0x7F)
		n >>= 7
		if n == 0 {
			return append(dst, c)
		}
		dst = append(dst, c|0x80)
	}
}

func readByte(b []byte) (byte, []byte, error) {
	if len(b) < 1 {
		return 0, nil, errShort
	}
	return b[0], b[1:], nil
}

func readU16(b []byte) (uint16, []byte, error) {
	if len(b) < 2 {
		return 0, nil, errShort
	}
	return uint16(b[0])<<8 | uint16(b[1]), b[2:], nil
}

func readU32(b []byte) (uint32, []byte, error) {
	if len(b) < 4 {
		return 0, nil, errShort
	}
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]), b[4:], nil
}

// readBinary reads 2-byte-length-prefixed binary data. The result aliases b
// and has its capacity clipped, so a caller appending to it cannot scribble
// over the rest of the packet.
func readBinary(b []byte) ([]byte, []byte, error) {
	if len(b) < 2 {
		return nil, nil, errShort
	}
	n := int(b[0])<<8 | int(b[1])
	if len(b)-2 < n {
		return nil, nil, errShort
	}
	return b[2 : 2+n : 2+n], b[2+n:], nil
}

// readString is readBinary plus the UTF-8 rules of MQTT strings.
func readString(b []byte) ([]byte, []byte, error) {
	s, rest, err := readBinary(b)
	if err != nil {
		return nil, nil, err
	}
	if !validUTF8(s) {
		return nil, nil, errBadUTF8
	}
	return s, rest, nil
}

// Byte classes for the string scans below. Most MQTT strings are short
// ASCII, so the scans look each byte up in a table and only bytes marked
// there (NUL, non-ASCII, and for topic names the wildcards) leave the loop.
const (
	clsNUL      = 1 << iota // U+0000, never allowed
	clsNonASCII             // start or continuation of a multi-byte rune
	clsWildcard             // '+' or '#', not allowed in topic names
)

var byteClass = func() (t [256]uint8) {
	t[0] = clsNUL
	for c := utf8.RuneSelf; c < 256; c++ {
		t[c] = clsNonASCII
	}
	t['+'], t['#'] = clsWildcard, clsWildcard
	return t
}()

// validUTF8 reports whether s is well-formed UTF-8 without U+0000. Go's
// decoder already rejects surrogate code points (U+D800..U+DFFF), overlong
// forms and values above U+10FFFF, which is exactly what MQTT forbids.
func validUTF8(s []byte) bool {
	for i, c := range s {
		if byteClass[c]&(clsNUL|clsNonASCII) != 0 {
			return validSlow(s[i:], false) == nil
		}
	}
	return true
}

// validSlow finishes a scan that met a NUL or a non-ASCII byte: the rest
// must be valid UTF-8 without NUL (and, for topic names, without
// wildcards). A NUL byte can only ever encode U+0000 in valid UTF-8, and
// '+'/'#' only themselves, so byte checks are exact.
func validSlow(rest []byte, topic bool) error {
	if !utf8.Valid(rest) {
		return errBadUTF8
	}
	var seen uint8
	for _, c := range rest {
		seen |= byteClass[c]
	}
	if seen&clsNUL != 0 {
		return errBadUTF8
	}
	if topic && seen&clsWildcard != 0 {
		return errTopicWildcard
	}
	return nil
}

var errTopicWildcard = &Error{Code: TopicNameInvalid, Reason: "topic name contains a wildcard"}

// checkTopicName applies the codec's share of the topic-name rules: UTF-8
// (Malformed) and no '+' or '#' (TopicNameInvalid). Emptiness depends on the
// packet and version, so callers check it.
func checkTopicName(s []byte) error {
	for i, c := range s {
		if byteClass[c] != 0 {
			// Finish with the full check so that a string that is both
			// malformed and wildcarded is reported as malformed.
			return validSlow(s[i:], true)
		}
	}
	return nil
}

// Encoding side. Every packet computes its remaining length first (the
// header precedes the body), validating as it goes, so a refused packet
// leaves dst untouched.

// binSize is the encoded size of a binary field, or an error if too long.
func binSize(b []byte) (int, error) {
	if len(b) > 0xFFFF {
		return 0, errStringTooLong
	}
	return 2 + len(b), nil
}

// strSize is binSize plus the UTF-8 rules, so we never emit what we would
// reject.
func strSize(s []byte) (int, error) {
	if len(s) > 0xFFFF {
		return 0, errStringTooLong
	}
	if !validUTF8(s) {
		return 0, errBadUTF8
	}
	return 2 + len(s), nil
}

func appendU16(dst []byte, v uint16) []byte { return append(dst, byte(v>>8), byte(v)) }

func appendU32(dst []byte, v uint32) []byte {
	return append(dst, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

// appendBinary writes a length-prefixed field; callers validated the length.
func appendBinary(dst, b []byte) []byte {
	dst = append(dst, byte(len(b)>>8), byte(len(b)))
	return append(dst, b...)
}

// appendHeader checks the remaining length, grows dst once for the whole
// packet (so the field appends that follow never reallocate) and writes the
// fixed header.
func appendHeader(dst []byte, first byte, remaining int) ([]byte, error) {
	if remaining > MaxRemaining {
		return dst, errTooLarge
	}
	dst = slices.Grow(dst, 1+varintLen(remaining)+remaining)
	dst = append(dst, first)
	return appendVarint(dst, remaining), nil
}

var errBadVersionArg = &Error{Code: UnsupportedProtocolVersion, Reason: "version must be 3, 4 or 5"}

func checkVersion(v Version) error {
	if !v.valid() {
		return errBadVersionArg
	}
	return nil
}
