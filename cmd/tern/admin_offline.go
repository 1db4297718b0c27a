package main

import (
	"cmp"
	"fmt"
	"io"
	"time"

	"github.com/ternmq/tern/internal/adminapi"
	"github.com/ternmq/tern/internal/auth"
)

// offlineOps works on the authenticator over the data directory's records.
type offlineOps struct {
	a     *auth.Authenticator
	close func() error
}

// parseGrants parses action:filter grants as the admin API does, so both modes accept the same.
func parseGrants(ss []string) ([]auth.Grant, error) {
	out := make([]auth.Grant, 0, len(ss))
	for _, s := range ss {
		g, err := auth.ParseGrant(s)
		if err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	return out, nil
}

func (o *offlineOps) User(name string) (auth.User, error) { return o.a.User(name) }

func (o *offlineOps) PutUser(name string, b adminapi.UserBody) error {
	grants, err := parseGrants(b.Grants)
	if err != nil {
		return err
	}
	var pw []byte
	if b.Password != nil {
		pw = []byte(*b.Password)
	}
	return o.a.PutUser(auth.User{Name: name, Groups: b.Groups, Grants: grants}, pw)
}

func (o *offlineOps) SetPassword(name, password string) error {
	return o.a.SetPassword(name, []byte(password))
}

func (o *offlineOps) DeleteUser(name string) error  { return o.a.DeleteUser(name) }
func (o *offlineOps) Users() ([]auth.User, error)   { return o.a.Users() }
func (o *offlineOps) Groups() ([]auth.Group, error) { return o.a.Groups() }
func (o *offlineOps) DeleteGroup(name string) error { return o.a.DeleteGroup(name) }

func (o *offlineOps) PutGroup(name string, gs []string) error {
	grants, err := parseGrants(gs)
	if err != nil {
		return err
	}
	return o.a.PutGroup(auth.Group{Name: name, Grants: grants})
}

func (o *offlineOps) EditGrants(g adminapi.GrantsBody, add bool) ([]auth.Grant, error) {
	grants, err := parseGrants(g.Grants)
	if err != nil {
		return nil, err
	}
	return o.a.EditGrants(g.User != "", cmp.Or(g.User, g.Group), grants, add)
}

func (o *offlineOps) Grants(user bool, name string) ([]auth.Grant, error) {
	if user {
		u, err := o.a.User(name)
		return u.Grants, err
	}
	gs, err := o.a.Groups()
	for _, g := range gs {
		if g.Name == name {
			return g.Grants, err
		}
	}
	return nil, cmp.Or(err, fmt.Errorf("%w: group %q", auth.ErrNotFound, name))
}

func (o *offlineOps) CreateToken(b adminapi.TokenBody) (adminapi.TokenCreated, error) {
	grants, err := parseGrants(b.Grants)
	if err != nil {
		return adminapi.TokenCreated{}, err
	}
	ttl, err := parseTTL(b.TTL)
	if err != nil {
		return adminapi.TokenCreated{}, err
	}
	secret, info, err := o.a.CreateToken(b.User, grants, ttl)
	return adminapi.TokenCreated{Token: secret, Info: info}, err
}

func (o *offlineOps) RevokeToken(id string) error                  { return o.a.RevokeToken(id) }
func (o *offlineOps) Tokens(user string) ([]auth.TokenInfo, error) { return o.a.ListTokens(user) }

func (o *offlineOps) ImportULWMQ(r io.Reader, group string) (int, int, error) {
	var groups []string
	if group != "" {
		groups = append(groups, group)
	}
	return o.a.ImportULWMQ(r, groups...)
}

func (o *offlineOps) Close() error { return o.close() }

// parseTTL checks a token lifetime the way the admin API does; "" means none.
func parseTTL(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("--ttl %q: a positive duration like 24h or 30m", s)
	}
	return d, nil
}
