package tlsrec

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"errors"
	"hash"

	"golang.org/x/crypto/chacha20poly1305"
)

// suite is what the record layer needs of a TLS 1.3 cipher suite.
type suite struct {
	id      uint16
	keyLen  int
	hash    func() hash.Hash
	hashLen int // the size of the suite's traffic secrets
}

var suites = []suite{
	{tls.TLS_AES_128_GCM_SHA256, 16, sha256.New, sha256.Size},
	{tls.TLS_AES_256_GCM_SHA384, 32, sha512.New384, sha512.Size384},
	{tls.TLS_CHACHA20_POLY1305_SHA256, 32, sha256.New, sha256.Size},
}

func suiteByID(id uint16) *suite {
	for i := range suites {
		if suites[i].id == id {
			return &suites[i]
		}
	}
	return nil
}

const (
	ivLen     = 12 // every TLS 1.3 AEAD takes a 96-bit nonce (RFC 8446, 5.3)
	maxSecret = 48 // SHA-384
	maxKey    = 32
)

// direction is one direction's keys: the traffic secret (for KeyUpdate), the write key and IV,
// the sequence number, and the AEAD built from the key, which a parked connection drops (an
// AES-GCM instance holds about 900 bytes of key schedule and tables) and builds again on use.
type direction struct {
	secret [maxSecret]byte
	key    [maxKey]byte
	iv     [ivLen]byte
	suiteN uint8 // index in suites plus one (zero: no keys yet); a byte where a pointer takes eight
	seq    uint64
	aead   cipher.AEAD
}

// suite is the direction's cipher suite (nil before setSecret).
func (d *direction) suite() *suite {
	if d.suiteN == 0 {
		return nil
	}
	return &suites[d.suiteN-1]
}

// errSecret: a logged traffic secret has the wrong size for the negotiated suite.
var errSecret = errors.New("tlsrec: traffic secret does not fit the cipher suite")

// setSecret installs a traffic secret: its key and IV are derived and the sequence restarts.
func (d *direction) setSecret(s *suite, secret []byte) error {
	if len(secret) != s.hashLen {
		return errSecret
	}
	for i := range suites {
		if &suites[i] == s {
			d.suiteN = uint8(i + 1)
		}
	}
	copy(d.secret[:], secret)
	key, err := expandLabel(s.hash, secret, "key", s.keyLen)
	if err != nil {
		return err
	}
	iv, err := expandLabel(s.hash, secret, "iv", ivLen)
	if err != nil {
		return err
	}
	copy(d.key[:], key)
	copy(d.iv[:], iv)
	d.seq = 0
	d.aead = nil
	return nil
}

// update moves to the next traffic secret (RFC 8446, 7.2), after a KeyUpdate.
func (d *direction) update() error {
	s := d.suite()
	n := s.hashLen
	next, err := expandLabel(s.hash, d.secret[:n], "traffic upd", n)
	if err != nil {
		return err
	}
	return d.setSecret(s, next)
}

// cipher returns the direction's AEAD, building it when it was dropped.
func (d *direction) cipher() (cipher.AEAD, error) {
	if d.aead != nil {
		return d.aead, nil
	}
	s := d.suite()
	key := d.key[:s.keyLen]
	var err error
	if s.id == tls.TLS_CHACHA20_POLY1305_SHA256 {
		d.aead, err = chacha20poly1305.New(key)
		return d.aead, err
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	d.aead, err = cipher.NewGCM(b)
	return d.aead, err
}

// nonce is the per-record nonce: the IV XORed with the sequence number (RFC 8446, 5.3).
func (d *direction) nonce(out *[ivLen]byte) []byte {
	*out = d.iv
	for i := range 8 {
		out[ivLen-1-i] ^= byte(d.seq >> (8 * i))
	}
	return out[:]
}

// expandLabel is HKDF-Expand-Label (RFC 8446, 7.1) with an empty context.
func expandLabel(h func() hash.Hash, secret []byte, label string, length int) ([]byte, error) {
	const prefix = "tls13 "
	info := make([]byte, 0, 4+len(prefix)+len(label))
	info = append(info, byte(length>>8), byte(length), byte(len(prefix)+len(label)))
	info = append(info, prefix...)
	info = append(info, label...)
	info = append(info, 0) // no context
	return hkdf.Expand(h, secret, string(info), length)
}
