package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"

	"golang.org/x/crypto/argon2"
)

// Argon2Params are the argon2id cost parameters for new password hashes. Stored hashes carry
// their own parameters, so changing these never locks anybody out: a hash made with other
// parameters is verified with its own and re-hashed with these at the next successful login.
type Argon2Params struct {
	Memory  uint32 // KiB
	Time    uint32 // passes
	Threads uint8  // lanes
	SaltLen uint32 // bytes
	KeyLen  uint32 // bytes
}

// DefaultArgon2 follows the OWASP minimum for argon2id (19 MiB, 2 passes, 1 thread). A broker
// verifies a password once per connection, and connection storms happen (every client reconnects
// after a restart), so the cost stays at the recommended floor; Config.MaxConcurrentHashes bounds
// the memory a storm can take.
var DefaultArgon2 = Argon2Params{Memory: 19456, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 32}

// Bounds for parameters read back from a stored hash. A corrupt or hostile record must not make a
// login allocate gigabytes or spin for minutes.
const (
	maxArgonMemory  = 1 << 20 // KiB: 1 GiB
	maxArgonTime    = 64
	minArgonSalt    = 8
	maxArgonSalt    = 64
	minArgonKey     = 16
	maxArgonKey     = 64
	argonVersionStr = "v=19"
)

// legacyPrefix marks an unsalted SHA-256 hex hash imported from uLightWMQ. It is not a PHC
// algorithm name on purpose: nothing but the import writes it.
const legacyPrefix = "$sha256$"

var b64 = base64.RawStdEncoding

// withDefaults fills zero fields from DefaultArgon2.
func (p Argon2Params) withDefaults() Argon2Params {
	d := DefaultArgon2
	if p.Memory != 0 {
		d.Memory = p.Memory
	}
	if p.Time != 0 {
		d.Time = p.Time
	}
	if p.Threads != 0 {
		d.Threads = p.Threads
	}
	if p.SaltLen != 0 {
		d.SaltLen = p.SaltLen
	}
	if p.KeyLen != 0 {
		d.KeyLen = p.KeyLen
	}
	return d
}

// check applies the same bounds to configured parameters as to stored ones.
func (p Argon2Params) check() error {
	switch {
	case p.Memory < 8*uint32(p.Threads) || p.Memory > maxArgonMemory:
		return fmt.Errorf("auth: argon2 memory %d KiB out of range", p.Memory)
	case p.Time < 1 || p.Time > maxArgonTime:
		return fmt.Errorf("auth: argon2 time %d out of range", p.Time)
	case p.Threads < 1:
		return errors.New("auth: argon2 threads must be at least 1")
	case p.SaltLen < minArgonSalt || p.SaltLen > maxArgonSalt:
		return fmt.Errorf("auth: argon2 salt length %d out of range", p.SaltLen)
	case p.KeyLen < minArgonKey || p.KeyLen > maxArgonKey:
		return fmt.Errorf("auth: argon2 key length %d out of range", p.KeyLen)
	}
	return nil
}

// phc is a parsed "$argon2id$v=19$m=..,t=..,p=..$salt$hash" string.
type phc struct {
	params Argon2Params
	salt   []byte
	hash   []byte
}

// String encodes the hash in the PHC string format.
func (h phc) String() string {
	return fmt.Sprintf("$argon2id$%s$m=%d,t=%d,p=%d$%s$%s", argonVersionStr,
		h.params.Memory, h.params.Time, h.params.Threads, b64.EncodeToString(h.salt), b64.EncodeToString(h.hash))
}

var errPHC = errors.New("auth: malformed argon2id hash")

// parsePHC decodes an argon2id PHC string, refusing parameters outside the bounds above.
func parsePHC(s string) (phc, error) {
	parts := strings.Split(s, "$")
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, hash
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" || parts[2] != argonVersionStr {
		return phc{}, errPHC
	}
	var h phc
	var seen [3]bool
	for _, kv := range strings.Split(parts[3], ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || len(v) == 0 || len(v) > 10 || (len(v) > 1 && v[0] == '0') {
			return phc{}, errPHC
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return phc{}, errPHC
		}
		var i int
		switch k {
		case "m":
			i, h.params.Memory = 0, uint32(n)
		case "t":
			i, h.params.Time = 1, uint32(n)
		case "p":
			if n > 255 {
				return phc{}, errPHC
			}
			i, h.params.Threads = 2, uint8(n)
		default:
			return phc{}, errPHC
		}
		if seen[i] {
			return phc{}, errPHC
		}
		seen[i] = true
	}
	var err error
	if h.salt, err = b64.Strict().DecodeString(parts[4]); err != nil {
		return phc{}, errPHC
	}
	if h.hash, err = b64.Strict().DecodeString(parts[5]); err != nil {
		return phc{}, errPHC
	}
	h.params.SaltLen, h.params.KeyLen = uint32(len(h.salt)), uint32(len(h.hash))
	if !seen[0] || !seen[1] || !seen[2] || h.params.check() != nil {
		return phc{}, errPHC
	}
	return h, nil
}

// hasher computes argon2id hashes under a concurrency limit. Each hash holds Memory KiB while it
// runs, so without the limit a few hundred simultaneous logins could exhaust memory.
type hasher struct {
	params Argon2Params
	sem    chan struct{}
	// dummy is verified against when a user is unknown, so that an unknown name takes as long as
	// a wrong password and names cannot be probed by timing.
	dummy phc
	// count is how many argon2 computations ran (tests check what the verified cache saves).
	count atomic.Uint64
}

func newHasher(p Argon2Params, concurrency int) *hasher {
	h := &hasher{params: p, sem: make(chan struct{}, concurrency)}
	h.dummy = phc{params: p, salt: make([]byte, p.SaltLen), hash: make([]byte, p.KeyLen)}
	return h
}

func (h *hasher) key(ctx context.Context, pw, salt []byte, p Argon2Params) ([]byte, error) {
	select {
	case h.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-h.sem }()
	h.count.Add(1)
	return argon2.IDKey(pw, salt, p.Time, p.Memory, p.Threads, p.KeyLen), nil
}

// hash makes a new PHC string for pw with a random salt.
func (h *hasher) hash(ctx context.Context, pw []byte) (string, error) {
	salt := make([]byte, h.params.SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	k, err := h.key(ctx, pw, salt, h.params)
	if err != nil {
		return "", err
	}
	return phc{params: h.params, salt: salt, hash: k}.String(), nil
}

// verify checks pw against a stored hash (argon2id PHC or legacy SHA-256 hex) in constant time.
// rehash is true when the password was right but the stored hash is legacy or made with other
// parameters than the configured ones.
func (h *hasher) verify(ctx context.Context, stored string, pw []byte) (ok, rehash bool, err error) {
	if hexHash, legacy := strings.CutPrefix(stored, legacyPrefix); legacy {
		want, err := hex.DecodeString(hexHash)
		if err != nil || len(want) != sha256.Size {
			return false, false, errPHC
		}
		got := sha256.Sum256(pw)
		ok := subtle.ConstantTimeCompare(got[:], want) == 1
		return ok, ok, nil
	}
	p, err := parsePHC(stored)
	if err != nil {
		return false, false, err
	}
	k, err := h.key(ctx, pw, p.salt, p.params)
	if err != nil {
		return false, false, err
	}
	ok = subtle.ConstantTimeCompare(k, p.hash) == 1
	return ok, ok && p.params != h.params, nil
}

// burn spends the time of one verification on nothing (see dummy).
func (h *hasher) burn(ctx context.Context, pw []byte) {
	_, _ = h.key(ctx, pw, h.dummy.salt, h.dummy.params)
}

// validStoredHash reports whether s is a hash this package can verify, for hashes given from
// outside (SetPasswordHash).
func validStoredHash(s string) bool {
	if hexHash, ok := strings.CutPrefix(s, legacyPrefix); ok {
		b, err := hex.DecodeString(hexHash)
		return err == nil && len(b) == sha256.Size
	}
	_, err := parsePHC(s)
	return err == nil
}
