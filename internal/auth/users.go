package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// User is a stored identity: its groups and its own grants.
type User struct {
	Name   string   `json:"name"`             // the login name, and the identity (%u)
	Groups []string `json:"groups,omitempty"` // groups whose grants the user inherits
	Grants []Grant  `json:"grants,omitempty"` // the user's own grants
	// PasswordScheme is "argon2id", "sha256" (imported, upgraded at the next login) or "" (no
	// password: the user signs in by certificate or token only). PutUser ignores it.
	PasswordScheme string `json:"password_scheme,omitempty"`
}

// Group is a named list of grants that users inherit.
type Group struct {
	Name   string  `json:"name"`             // what users list in User.Groups
	Grants []Grant `json:"grants,omitempty"` // granted to every member
}

// userRecord is what the store holds for a user.
type userRecord struct {
	Name    string    `json:"name"`
	Hash    string    `json:"hash,omitempty"`
	Groups  []string  `json:"groups,omitempty"`
	Grants  []Grant   `json:"grants,omitempty"`
	Created time.Time `json:"created"`
}

func (r userRecord) user() User {
	u := User{Name: r.Name, Groups: r.Groups, Grants: r.Grants}
	switch {
	case strings.HasPrefix(r.Hash, legacyPrefix):
		u.PasswordScheme = "sha256"
	case r.Hash != "":
		u.PasswordScheme = "argon2id"
	}
	return u
}

const maxNameLen = 256

// validName checks a user or group name: 1..256 bytes of printable UTF-8 without '/', '+' or '#',
// so that it can stand for %u in a topic filter as exactly one level.
func validName(kind, s string) error {
	if s == "" || len(s) > maxNameLen || !utf8.ValidString(s) {
		return fmt.Errorf("auth: %s name must be 1..%d bytes of UTF-8", kind, maxNameLen)
	}
	for _, r := range s {
		if r == '/' || r == '+' || r == '#' || !unicode.IsPrint(r) {
			return fmt.Errorf("auth: %s name %q contains %q", kind, s, r)
		}
	}
	return nil
}

func validUserName(s string) error {
	if s == tokenUsername {
		return fmt.Errorf("auth: user name %q is reserved for token logins", s)
	}
	return validName("user", s)
}

func (a *Authenticator) getUser(name string) (userRecord, bool, error) {
	var r userRecord
	ok, err := a.getJSON(nsUsers, name, &r)
	return r, ok, err
}

func (a *Authenticator) putUser(r userRecord) error { return a.putJSON(nsUsers, r.Name, r) }

func (a *Authenticator) getGroup(name string) (Group, bool, error) {
	var g Group
	ok, err := a.getJSON(nsGroups, name, &g)
	return g, ok, err
}

func (a *Authenticator) getJSON(ns, key string, v any) (bool, error) {
	b, ok, err := a.st.Get(ns, key)
	if err != nil || !ok {
		return false, err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("auth: corrupt %s record %q: %w", ns, key, err)
	}
	return true, nil
}

func (a *Authenticator) putJSON(ns, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return a.st.Put(ns, key, b)
}

// PutUser creates or replaces a user's groups and grants. A non-nil password sets the password
// (hashed with argon2id); nil keeps the current one, or leaves a new user without a password
// (certificate or token only). Empty passwords are refused.
func (a *Authenticator) PutUser(u User, password []byte) error {
	if err := validUserName(u.Name); err != nil {
		return err
	}
	for _, g := range u.Groups {
		if err := validName("group", g); err != nil {
			return err
		}
	}
	if err := validateGrants(u.Grants); err != nil {
		return err
	}
	var hash string
	if password != nil {
		if len(password) == 0 {
			return errors.New("auth: empty password")
		}
		var err error
		if hash, err = a.hasher.hash(context.Background(), password); err != nil {
			return err
		}
	}
	a.writeMu.Lock()
	defer a.writeMu.Unlock()
	old, exists, err := a.getUser(u.Name)
	if err != nil {
		return err
	}
	rec := userRecord{Name: u.Name, Hash: hash, Groups: slices.Clone(u.Groups), Grants: slices.Clone(u.Grants), Created: a.now().UTC()}
	if exists {
		rec.Created = old.Created
		if password == nil {
			rec.Hash = old.Hash
		}
	}
	if err := a.putUser(rec); err != nil {
		return err
	}
	a.open.Store(false)
	return nil
}

// SetPassword replaces the password of an existing user, keeping its groups and grants. It is
// one read-modify-write under writeMu, so a concurrent change of the user's grants is not lost
// (PutUser with the groups and grants read beforehand could undo it). Empty passwords are
// refused.
func (a *Authenticator) SetPassword(name string, password []byte) error {
	if len(password) == 0 {
		return errors.New("auth: empty password")
	}
	// Hash before taking writeMu: argon2 is slow, and logins upgrading hashes wait on writeMu.
	hash, err := a.hasher.hash(context.Background(), password)
	if err != nil {
		return err
	}
	return a.updateUser(name, func(rec *userRecord) { rec.Hash = hash })
}

// updateUser changes an existing user in one read-modify-write under writeMu, so concurrent
// changes to other fields of the record are not lost.
func (a *Authenticator) updateUser(name string, change func(*userRecord)) error {
	a.writeMu.Lock()
	defer a.writeMu.Unlock()
	rec, ok, err := a.getUser(name)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: user %q", ErrNotFound, name)
	}
	change(&rec)
	return a.putUser(rec)
}

// SetPasswordHash stores an already hashed password for an existing user: an argon2id PHC string
// ("$argon2id$v=19$m=..,t=..,p=..$salt$hash") or "$sha256$" and 64 hex digits (unsalted, as
// uLightWMQ kept them; upgraded at the next login). Configuration files can so carry users
// without clear-text passwords.
func (a *Authenticator) SetPasswordHash(name, hash string) error {
	if !validStoredHash(hash) {
		return errors.New("auth: not an argon2id PHC string or $sha256$ hex hash")
	}
	if strings.HasPrefix(hash, legacyPrefix) {
		hash = strings.ToLower(hash)
	}
	return a.updateUser(name, func(rec *userRecord) { rec.Hash = hash })
}

// DeleteUser removes a user and revokes the tokens issued to it.
func (a *Authenticator) DeleteUser(name string) error {
	a.writeMu.Lock()
	_, ok, err := a.getUser(name)
	if err == nil && ok {
		err = a.st.Delete(nsUsers, name)
	}
	a.writeMu.Unlock()
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: user %q", ErrNotFound, name)
	}
	toks, err := a.ListTokens(name)
	if err != nil {
		return err
	}
	for _, t := range toks {
		if err := a.st.Delete(nsTokens, t.ID); err != nil {
			return err
		}
	}
	return nil
}

// Users lists the users in name order.
func (a *Authenticator) Users() ([]User, error) {
	var out []User
	err := a.st.Scan(nsUsers, func(key string, b []byte) error {
		var r userRecord
		if err := json.Unmarshal(b, &r); err != nil {
			return fmt.Errorf("auth: corrupt user record %q: %w", key, err)
		}
		out = append(out, r.user())
		return nil
	})
	return out, err
}

// PutGroup creates or replaces a group.
func (a *Authenticator) PutGroup(g Group) error {
	if err := validName("group", g.Name); err != nil {
		return err
	}
	if err := validateGrants(g.Grants); err != nil {
		return err
	}
	g.Grants = slices.Clone(g.Grants)
	return a.putJSON(nsGroups, g.Name, g)
}

// DeleteGroup removes a group. Users keep naming it (and gain its grants again if it is
// re-created).
func (a *Authenticator) DeleteGroup(name string) error {
	_, ok, err := a.getGroup(name)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: group %q", ErrNotFound, name)
	}
	return a.st.Delete(nsGroups, name)
}

// Groups lists the groups in name order.
func (a *Authenticator) Groups() ([]Group, error) {
	var out []Group
	err := a.st.Scan(nsGroups, func(key string, b []byte) error {
		var g Group
		if err := json.Unmarshal(b, &g); err != nil {
			return fmt.Errorf("auth: corrupt group record %q: %w", key, err)
		}
		out = append(out, g)
		return nil
	})
	return out, err
}

// EditGrants adds (add true) or removes grants of a user (user true) or a group, in one
// read-modify-write, and returns the resulting grants. Adding a grant already there, or removing
// one that is not, changes nothing.
func (a *Authenticator) EditGrants(user bool, name string, grants []Grant, add bool) ([]Grant, error) {
	if err := validateGrants(grants); err != nil {
		return nil, err
	}
	edit := func(have []Grant) []Grant {
		for _, g := range grants {
			i := slices.Index(have, g)
			switch {
			case add && i < 0:
				have = append(have, g)
			case !add && i >= 0:
				have = slices.Delete(have, i, i+1)
			}
		}
		return have
	}
	if user {
		var out []Grant
		err := a.updateUser(name, func(rec *userRecord) {
			rec.Grants = edit(rec.Grants)
			out = rec.Grants
		})
		return out, err
	}
	a.writeMu.Lock()
	defer a.writeMu.Unlock()
	g, ok, err := a.getGroup(name)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%w: group %q", ErrNotFound, name)
	}
	g.Grants = edit(g.Grants)
	return g.Grants, a.putJSON(nsGroups, g.Name, g)
}

// User returns one user.
func (a *Authenticator) User(name string) (User, error) {
	rec, ok, err := a.getUser(name)
	if err != nil {
		return User{}, err
	}
	if !ok {
		return User{}, fmt.Errorf("%w: user %q", ErrNotFound, name)
	}
	return rec.user(), nil
}
