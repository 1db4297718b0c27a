package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// TokenPrefix starts every token tern issues, so that one is recognisable in a configuration file
// or a leak report, and so that Authenticate knows to check it locally rather than ask the
// external URL.
const TokenPrefix = "tern_"

// A token is TokenPrefix, a public id (16 hex digits, the store key and what RevokeToken takes),
// '_' and 43 characters of base64url carrying 256 random bits. Only its SHA-256 is stored: unlike
// a password, a random secret of that size cannot be guessed, so a slow hash would add nothing but
// cost on every connect.
const (
	tokenIDBytes     = 8
	tokenSecretBytes = 32
)

// TokenInfo describes an issued token (never its secret).
type TokenInfo struct {
	ID   string `json:"id"`   // public id: the store key, and what RevokeToken takes
	User string `json:"user"` // the user the token acts for
	// Grants are what the token allows. Nil means the user's own grants, as they are at each use.
	Grants  []Grant   `json:"grants,omitempty"`
	Created time.Time `json:"created"` // when it was issued
	// Expires is when the token stops working; zero means never.
	Expires time.Time `json:"expires,omitzero"`
}

type tokenRecord struct {
	TokenInfo
	Hash string `json:"hash"` // hex SHA-256 of the whole secret
}

// clientIDStandIn fills %c when a token's grants are compared with its user's at creation, when
// no client id is known. It contains U+0000, which no filter level can, so it only ever equals
// itself: a token grant "x/%c" is covered by a user grant "x/%c" or "x/+", not by "x/dev1".
const clientIDStandIn = "\x00client-id"

func isTernToken(s string) bool { return strings.HasPrefix(s, TokenPrefix) }

// parseToken splits a token into its id; ok is false if it does not have the issued shape.
func parseToken(s string) (id string, ok bool) {
	rest, ok := strings.CutPrefix(s, TokenPrefix)
	if !ok {
		return "", false
	}
	// The id is hex, so the first '_' ends it even though base64url may contain '_'.
	id, secret, ok := strings.Cut(rest, "_")
	if !ok || len(id) != 2*tokenIDBytes || len(secret) != base64.RawURLEncoding.EncodedLen(tokenSecretBytes) {
		return "", false
	}
	if _, err := hex.DecodeString(id); err != nil {
		return "", false
	}
	return id, true
}

func hashToken(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// CreateToken issues a token for an existing user and returns its secret, which is not kept and
// cannot be shown again. grants narrow what the token may do: each allow grant must be covered by
// the user's current grants, denies included (%u and %c compared as placeholders), otherwise the
// token is refused; deny grants only narrow and are always accepted. Nil grants mean "whatever
// the user may do". ttl 0 means no expiry.
//
// Each use re-checks the token's grants against the user's grants of the moment and drops those
// no longer covered, so narrowing a user narrows its tokens; deleting the user revokes them. A
// token with grants has exactly those, plus every deny grant its user has at that moment (from
// the user, its groups and Config.DefaultGrants): an allow the token kept must not reach what the
// user is denied. Config.DefaultGrants' allow grants are not added to it.
//
// Clients present the secret as a bearer token, or over MQTT as the password with the user name
// empty or "token" (MQTT 3.1.1 needs a user name whenever there is a password).
func (a *Authenticator) CreateToken(user string, grants []Grant, ttl time.Duration) (string, TokenInfo, error) {
	if ttl < 0 {
		return "", TokenInfo{}, errors.New("auth: negative token lifetime")
	}
	if err := validateGrants(grants); err != nil {
		return "", TokenInfo{}, err
	}
	if _, ok, err := a.getUser(user); err != nil {
		return "", TokenInfo{}, err
	} else if !ok {
		return "", TokenInfo{}, fmt.Errorf("%w: user %q", ErrNotFound, user)
	}
	if len(grants) > 0 {
		cover, _, _, err := a.coverPrincipal(user, clientIDStandIn, true)
		if err != nil {
			return "", TokenInfo{}, err
		}
		for _, g := range grants {
			if g.Deny {
				continue
			}
			f, ok := expand(g.Filter, user, clientIDStandIn, true, true)
			if !ok || !cover.AllowFilter(g.Action, f) {
				return "", TokenInfo{}, fmt.Errorf("auth: token grant %v exceeds the grants of user %q", g, user)
			}
		}
	}
	var buf [tokenIDBytes + tokenSecretBytes]byte
	if _, err := rand.Read(buf[:]); err != nil {
		return "", TokenInfo{}, err
	}
	id := hex.EncodeToString(buf[:tokenIDBytes])
	secret := TokenPrefix + id + "_" + base64.RawURLEncoding.EncodeToString(buf[tokenIDBytes:])
	now := a.now().UTC()
	info := TokenInfo{ID: id, User: user, Grants: slices.Clone(grants), Created: now}
	if ttl > 0 {
		info.Expires = now.Add(ttl)
	}
	if err := a.putJSON(nsTokens, id, tokenRecord{TokenInfo: info, Hash: hashToken(secret)}); err != nil {
		return "", TokenInfo{}, err
	}
	a.open.Store(false)
	return secret, info, nil
}

// coverPrincipal is the user's principal for comparing grants against (unrestricted for a
// superuser), the user's groups and its deny grants as written (none for a superuser). cOK says
// whether clientID may fill %c.
func (a *Authenticator) coverPrincipal(user, clientID string, cOK bool) (*Principal, []string, []Grant, error) {
	grants, groups, super, err := a.effectiveGrants(user)
	if err != nil {
		return nil, nil, nil, err
	}
	if super {
		return Unrestricted(user), groups, nil, nil
	}
	var denies []Grant
	for _, g := range grants {
		if g.Deny {
			denies = append(denies, g)
		}
	}
	return compilePrincipal(user, clientID, placeholderOK(user), cOK, SourceInternal, grants), groups, denies, nil
}

// RevokeToken deletes a token; it stops working at once.
func (a *Authenticator) RevokeToken(id string) error {
	_, ok, err := a.st.Get(nsTokens, id)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: token %q", ErrNotFound, id)
	}
	return a.st.Delete(nsTokens, id)
}

// ListTokens lists the tokens of user, or of everybody if user is "", in id order. Expired
// tokens are listed until they are presented (which deletes them) or revoked.
func (a *Authenticator) ListTokens(user string) ([]TokenInfo, error) {
	var out []TokenInfo
	err := a.st.Scan(nsTokens, func(key string, b []byte) error {
		var r tokenRecord
		if err := json.Unmarshal(b, &r); err != nil {
			return fmt.Errorf("auth: corrupt token record %q: %w", key, err)
		}
		if user == "" || r.User == user {
			out = append(out, r.TokenInfo)
		}
		return nil
	})
	return out, err
}

// tokenPrincipal checks a token tern issued.
func (a *Authenticator) tokenPrincipal(tok, clientID string) (*Principal, cause, error) {
	id, ok := parseToken(tok)
	if !ok {
		return nil, causeBadToken, fmt.Errorf("%w: malformed token", ErrBadCredentials)
	}
	var r tokenRecord
	found, err := a.getJSON(nsTokens, id, &r)
	if err != nil {
		return nil, causeUnavailable, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	want := hashToken(tok)
	if !found || subtle.ConstantTimeCompare([]byte(want), []byte(r.Hash)) != 1 {
		return nil, causeBadToken, fmt.Errorf("%w: unknown or revoked token", ErrBadCredentials)
	}
	if !r.Expires.IsZero() && !a.now().Before(r.Expires) {
		if err := a.st.Delete(nsTokens, id); err != nil {
			a.log.Warn("auth: deleting expired token failed", "id", id, "error", err)
		}
		return nil, causeExpiredToken, fmt.Errorf("%w: token expired", ErrBadCredentials)
	}
	if _, ok, err := a.getUser(r.User); err != nil {
		return nil, causeUnavailable, fmt.Errorf("%w: %v", ErrUnavailable, err)
	} else if !ok {
		return nil, causeBadToken, fmt.Errorf("%w: the token's user no longer exists", ErrBadCredentials)
	}
	var p *Principal
	if r.Grants == nil {
		p, err = a.userPrincipal(r.User, clientID, SourceToken)
	} else {
		p, err = a.narrowedPrincipal(r.User, clientID, r.Grants)
	}
	if err != nil {
		return nil, causeUnavailable, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	p.Expires = r.Expires
	return p, 0, nil
}

// narrowedPrincipal keeps the token's deny grants, the allow grants that the user's current
// grants still cover, and adds the user's current deny grants.
func (a *Authenticator) narrowedPrincipal(user, clientID string, grants []Grant) (*Principal, error) {
	uOK, cOK := placeholderOK(user), placeholderOK(clientID)
	cover, groups, denies, err := a.coverPrincipal(user, clientID, cOK)
	if err != nil {
		return nil, err
	}
	kept := make([]Grant, 0, len(grants)+len(denies))
	for _, g := range grants {
		if g.Deny {
			kept = append(kept, g)
		} else if f, ok := expand(g.Filter, user, clientID, uOK, cOK); ok && cover.AllowFilter(g.Action, f) {
			kept = append(kept, g)
		}
	}
	kept = append(kept, denies...)
	p := buildPrincipal(user, clientID, SourceToken, kept)
	p.Groups = groups
	return p, nil
}
