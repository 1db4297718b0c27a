package tlsrec

import (
	"crypto/tls"
	"fmt"
	"slices"
)

// TLS 1.3 record framing (RFC 8446, 5).
const (
	headerLen     = 5
	maxPlaintext  = 1 << 14
	maxCiphertext = maxPlaintext + 256
	tagLen        = 16 // AES-GCM and ChaCha20-Poly1305 alike
	// maxRecord is the most bytes one record of ours takes on the wire.
	maxRecord = headerLen + maxPlaintext + 1 + tagLen

	typeChangeCipherSpec = 20
	typeAlert            = 21
	typeHandshake        = 22
	typeApplicationData  = 23

	handshakeKeyUpdate = 24
)

// TLS alerts this package sends or names (RFC 8446, 6).
const (
	alertCloseNotify       = 0
	alertUnexpectedMessage = 10
	alertBadRecordMAC      = 20
	alertRecordOverflow    = 22
	alertDecodeError       = 50
)

// alertError is a fatal problem with what the client sent: the connection sends the alert and
// fails with the error.
type alertError struct {
	alert  byte
	reason string
}

func (e *alertError) Error() string { return "tls: " + e.reason }

// remoteAlert is an alert the client sent, other than close_notify.
type remoteAlert byte

func (a remoteAlert) Error() string {
	return fmt.Sprintf("remote error: %v", tls.AlertError(a))
}

// seal appends one record carrying data as content type typ, encrypted under d. nonce is
// scratch space of the caller's (on the stack it would escape through the AEAD interface: an
// allocation per record).
func (d *direction) seal(dst []byte, typ byte, data []byte, nonce *[ivLen]byte) ([]byte, error) {
	aead, err := d.cipher()
	if err != nil {
		return dst, err
	}
	n := len(data) + 1 + aead.Overhead()
	dst = slices.Grow(dst, headerLen+n) // Seal's output must land in dst, after the header
	dst = append(dst, typeApplicationData, 3, 3, byte(n>>8), byte(n))
	start := len(dst)
	dst = append(dst, data...)
	dst = append(dst, typ)
	out := aead.Seal(dst[start:start], d.nonce(nonce), dst[start:], dst[start-headerLen:start])
	d.seq++
	return dst[:start+len(out)], nil
}

var errEmptyInner = &alertError{alertUnexpectedMessage, "record with no content type"}

// open decrypts record (header and ciphertext) in place and returns its content type and
// content, which alias record. nonce is scratch space, as for seal.
func (d *direction) open(record []byte, nonce *[ivLen]byte) (typ byte, content []byte, err error) {
	aead, err := d.cipher()
	if err != nil {
		return 0, nil, err
	}
	ct := record[headerLen:]
	plain, err := aead.Open(ct[:0], d.nonce(nonce), ct, record[:headerLen])
	if err != nil {
		return 0, nil, &alertError{alertBadRecordMAC, "invalid record: message authentication failed"}
	}
	d.seq++
	// The content type is the last non-zero byte; zeros after it are padding.
	i := len(plain) - 1
	for i >= 0 && plain[i] == 0 {
		i--
	}
	if i < 0 {
		return 0, nil, errEmptyInner
	}
	if i > maxPlaintext {
		return 0, nil, &alertError{alertRecordOverflow, "record content exceeds 16 KiB"}
	}
	return plain[i], plain[:i], nil
}

// recordHeader checks a record header that arrived after the handshake and returns the length
// of the record's ciphertext.
func recordHeader(h []byte) (int, error) {
	n := int(h[3])<<8 | int(h[4])
	switch {
	case h[0] != typeApplicationData:
		return 0, &alertError{alertUnexpectedMessage, fmt.Sprintf("unexpected record type %d after the handshake", h[0])}
	case n > maxCiphertext:
		return 0, &alertError{alertRecordOverflow, "record exceeds the TLS 1.3 maximum"}
	case n < tagLen+1:
		return 0, &alertError{alertDecodeError, "record too short"}
	}
	return n, nil
}
