package console

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// A console session is a row in this server-side table, found by the hash of the cookie's
// random value: the browser holds only that value (HttpOnly, so no script reads it), and the
// table holds what the person logged in with, presented again on each API request so that a
// revoked token, a changed password or a deleted user ends the session at the next request.
//
// The table is bounded: at most maxSessions rows (the least recently used goes when a new one
// comes), at most maxPerIdentity per identity (that identity's oldest goes), and a row ends
// idleTimeout after its last use or maxLifetime after the login, whichever is first. As in
// internal/auth, expiry is kept in the rows and compared with the console's clock rather than
// left to golang-lru's expirable cache (wall clock only, and a goroutine per cache).

const (
	maxSessions    = 1024
	maxPerIdentity = 16
	idleTimeout    = time.Hour
	maxLifetime    = 12 * time.Hour
)

// kind is how a session authenticates its requests.
type kind int

const (
	// kindNone presents nothing: open mode, or anonymous access.
	kindNone kind = iota
	kindPassword
	kindToken
	// kindCert relies on the client certificate each request brings; the session only checks
	// that it names the same identity.
	kindCert
)

// session is one logged-in browser.
type session struct {
	csrf     string
	kind     kind
	username string
	// secret is the password or the token: needed to authenticate each request as the person
	// would (auth caches the password check, so this costs no hash per request).
	secret   string
	identity string // who logged in ("" in open mode and for anonymous access)
	created  time.Time

	mu       sync.Mutex
	lastUsed time.Time
}

type table struct {
	now func() time.Time
	mu  sync.Mutex
	tab *simplelru.LRU[string, *session] // key: hex SHA-256 of the cookie value
}

func newTable(now func() time.Time) *table {
	tab, err := simplelru.NewLRU[string, *session](maxSessions, nil)
	if err != nil {
		panic(err) // only for a size below one
	}
	return &table{now: now, tab: tab}
}

func keyOf(cookie string) string {
	sum := sha256.Sum256([]byte(cookie))
	return hex.EncodeToString(sum[:])
}

// randomToken is 32 random bytes, URL-safe.
func randomToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// add stores s and returns the cookie value that finds it.
func (t *table) add(s *session) string {
	cookie := randomToken()
	now := t.now()
	s.created, s.lastUsed, s.csrf = now, now, randomToken()
	t.mu.Lock()
	defer t.mu.Unlock()
	// Keep each identity's sessions within maxPerIdentity, dropping its oldest.
	var mine []string
	for _, k := range t.tab.Keys() { // oldest first
		if v, ok := t.tab.Peek(k); ok && v.identity == s.identity {
			mine = append(mine, k)
		}
	}
	for len(mine) >= maxPerIdentity {
		t.tab.Remove(mine[0])
		mine = mine[1:]
	}
	t.tab.Add(keyOf(cookie), s)
	return cookie
}

// get returns the live session the cookie value names, nil if none.
func (t *table) get(cookie string) *session {
	if cookie == "" {
		return nil
	}
	k := keyOf(cookie)
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.tab.Get(k)
	if !ok {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Sub(s.lastUsed) > idleTimeout || now.Sub(s.created) > maxLifetime {
		t.tab.Remove(k)
		return nil
	}
	s.lastUsed = now
	return s
}

func (t *table) remove(cookie string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.tab.Remove(keyOf(cookie))
}

func (t *table) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.tab.Len()
}
