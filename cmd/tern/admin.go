package main

// The management commands (tern user, grant, token) work on a data directory while tern is
// stopped, or on a running tern through its admin API. adminOps is what both offer, so each
// command is written once.

import (
	"bytes"
	"cmp"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/ternmq/tern/internal/adminapi"
	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/config"
	"github.com/ternmq/tern/internal/store/pebblestore"
)

type adminOps interface {
	User(name string) (auth.User, error)
	PutUser(name string, b adminapi.UserBody) error
	DeleteUser(name string) error
	Users() ([]auth.User, error)
	EditGrants(g adminapi.GrantsBody, add bool) ([]auth.Grant, error)
	Grants(user bool, name string) ([]auth.Grant, error)
	PutGroup(name string, grants []string) error
	DeleteGroup(name string) error
	Groups() ([]auth.Group, error)
	CreateToken(b adminapi.TokenBody) (adminapi.TokenCreated, error)
	RevokeToken(id string) error
	Tokens(user string) ([]auth.TokenInfo, error)
	ImportULWMQ(r io.Reader, group string) (imported, skipped int, err error)
	Close() error
}

// adminFlags choose between the data directory and a running server.
type adminFlags struct {
	dataDir   string
	server    string
	adminUser string
	adminPass string
	adminTok  string
	cafile    string
	cert, key string
}

func (f *adminFlags) register(cmd *cobra.Command) {
	fs := cmd.PersistentFlags()
	fs.StringVar(&f.dataDir, "data-dir", config.Default().DataDir, "work on this data directory (tern must not be running on it)")
	fs.StringVar(&f.server, "server", "", "work on a running tern through its admin API instead, e.g. http://127.0.0.1:8080")
	fs.StringVar(&f.adminUser, "admin-user", "", "admin user name for --server (password from $TERN_ADMIN_PASSWORD)")
	fs.StringVar(&f.adminTok, "admin-token", "", "admin bearer token for --server (or $TERN_ADMIN_TOKEN)")
	fs.StringVar(&f.cafile, "cacert", "", "CA file (PEM) to trust for an https --server")
	fs.StringVar(&f.cert, "cert", "", "client certificate (PEM) for an https --server with mutual TLS")
	fs.StringVar(&f.key, "key", "", "the client certificate's key (PEM)")
}

// open returns the operations on the chosen target.
func (f *adminFlags) open() (adminOps, error) {
	if f.server != "" {
		return f.remote()
	}
	st, err := pebblestore.Open(f.dataDir, pebblestore.Options{})
	if err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) || errors.Is(err, syscall.EAGAIN) || strings.Contains(err.Error(), "lock") {
			return nil, fmt.Errorf("data directory %s is in use, probably by a running tern: use --server to go through its admin API (%w)", f.dataDir, err)
		}
		return nil, fmt.Errorf("data directory %s: %w", f.dataDir, err)
	}
	a, err := auth.New(auth.Config{}, st.Records(), nil)
	if err != nil {
		_ = st.Close()
		return nil, err
	}
	return &offlineOps{a: a, close: st.Close}, nil
}

// offlineOps works on the authenticator over the data directory's records.
type offlineOps struct {
	a     *auth.Authenticator
	close func() error
}

func (o *offlineOps) User(name string) (auth.User, error) { return o.a.User(name) }
func (o *offlineOps) PutUser(name string, b adminapi.UserBody) error {
	grants, err := config.ParseGrants(b.Grants)
	if err != nil {
		return err
	}
	var pw []byte
	if b.Password != nil {
		pw = []byte(*b.Password)
	}
	return o.a.PutUser(auth.User{Name: name, Groups: b.Groups, Grants: grants}, pw)
}
func (o *offlineOps) DeleteUser(name string) error  { return o.a.DeleteUser(name) }
func (o *offlineOps) Users() ([]auth.User, error)   { return o.a.Users() }
func (o *offlineOps) Groups() ([]auth.Group, error) { return o.a.Groups() }
func (o *offlineOps) DeleteGroup(name string) error { return o.a.DeleteGroup(name) }
func (o *offlineOps) PutGroup(name string, gs []string) error {
	grants, err := config.ParseGrants(gs)
	if err != nil {
		return err
	}
	return o.a.PutGroup(auth.Group{Name: name, Grants: grants})
}
func (o *offlineOps) EditGrants(g adminapi.GrantsBody, add bool) ([]auth.Grant, error) {
	grants, err := config.ParseGrants(g.Grants)
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
	grants, err := config.ParseGrants(b.Grants)
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

// remoteOps goes through the admin API.
type remoteOps struct {
	base string
	c    *http.Client
	auth func(*http.Request)
}

func (f *adminFlags) remote() (*remoteOps, error) {
	u, err := url.Parse(f.server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--server %q: give http://host:port or https://host:port", f.server)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12}}
	if f.cafile != "" {
		pem, err := os.ReadFile(f.cafile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", f.cafile)
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	if f.cert != "" {
		kp, err := tls.LoadX509KeyPair(f.cert, f.key)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		tr.TLSClientConfig.Certificates = []tls.Certificate{kp}
	}
	r := &remoteOps{base: strings.TrimRight(f.server, "/"), c: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
	user, pass := f.adminUser, cmp.Or(f.adminPass, os.Getenv("TERN_ADMIN_PASSWORD"))
	tok := cmp.Or(f.adminTok, os.Getenv("TERN_ADMIN_TOKEN"))
	r.auth = func(req *http.Request) {
		switch {
		case tok != "":
			req.Header.Set("Authorization", "Bearer "+tok)
		case user != "":
			req.SetBasicAuth(user, pass)
		}
	}
	return r, nil
}

// call sends a JSON request and decodes a JSON answer into out (nil: none expected).
func (r *remoteOps) call(method, path string, in, out any) error {
	var body io.Reader
	switch v := in.(type) {
	case nil:
	case io.Reader:
		body = v
	default:
		raw, err := json.Marshal(v)
		if err != nil {
			return err
		}
		body = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, r.base+path, body)
	if err != nil {
		return err
	}
	r.auth(req)
	resp, err := r.c.Do(req)
	if err != nil {
		return fmt.Errorf("is tern running? %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error struct{ Code, Message string }
		}
		if json.Unmarshal(raw, &e) == nil && e.Error.Message != "" {
			return fmt.Errorf("%s %s: %s (%s)", method, path, e.Error.Message, resp.Status)
		}
		return fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	if out == nil || len(raw) == 0 {
		return nil
	}
	return json.Unmarshal(raw, out)
}

func (r *remoteOps) User(name string) (u auth.User, err error) {
	err = r.call("GET", "/v1/admin/users/"+url.PathEscape(name), nil, &u)
	if err != nil && strings.Contains(err.Error(), "404") {
		err = fmt.Errorf("%w: %v", auth.ErrNotFound, err)
	}
	return u, err
}
func (r *remoteOps) PutUser(name string, b adminapi.UserBody) error {
	return r.call("PUT", "/v1/admin/users/"+url.PathEscape(name), b, nil)
}
func (r *remoteOps) DeleteUser(name string) error {
	return r.call("DELETE", "/v1/admin/users/"+url.PathEscape(name), nil, nil)
}
func (r *remoteOps) Users() (us []auth.User, err error) {
	return us, r.call("GET", "/v1/admin/users", nil, &us)
}
func (r *remoteOps) Groups() (gs []auth.Group, err error) {
	return gs, r.call("GET", "/v1/admin/groups", nil, &gs)
}
func (r *remoteOps) PutGroup(name string, grants []string) error {
	return r.call("PUT", "/v1/admin/groups/"+url.PathEscape(name), map[string][]string{"grants": grants}, nil)
}
func (r *remoteOps) DeleteGroup(name string) error {
	return r.call("DELETE", "/v1/admin/groups/"+url.PathEscape(name), nil, nil)
}
func (r *remoteOps) EditGrants(g adminapi.GrantsBody, add bool) (out []auth.Grant, err error) {
	return out, r.call(map[bool]string{true: "POST", false: "DELETE"}[add], "/v1/admin/grants", g, &out)
}
func (r *remoteOps) Grants(user bool, name string) (out []auth.Grant, err error) {
	q := "group="
	if user {
		q = "user="
	}
	return out, r.call("GET", "/v1/admin/grants?"+q+url.QueryEscape(name), nil, &out)
}
func (r *remoteOps) CreateToken(b adminapi.TokenBody) (out adminapi.TokenCreated, err error) {
	if _, err := parseTTL(b.TTL); err != nil {
		return out, err
	}
	return out, r.call("POST", "/v1/admin/tokens", b, &out)
}
func (r *remoteOps) RevokeToken(id string) error {
	return r.call("DELETE", "/v1/admin/tokens/"+url.PathEscape(id), nil, nil)
}
func (r *remoteOps) Tokens(user string) (out []auth.TokenInfo, err error) {
	return out, r.call("GET", "/v1/admin/tokens?user="+url.QueryEscape(user), nil, &out)
}
func (r *remoteOps) ImportULWMQ(rd io.Reader, group string) (int, int, error) {
	var out struct{ Imported, Skipped int }
	err := r.call("POST", "/v1/admin/import/ulwmq?group="+url.QueryEscape(group), rd, &out)
	return out.Imported, out.Skipped, err
}
func (r *remoteOps) Close() error { return nil }

// withOps runs fn on the target the flags name, closing it after.
func withOps(f *adminFlags, fn func(adminOps) error) error {
	ops, err := f.open()
	if err != nil {
		return err
	}
	err = fn(ops)
	return errors.Join(err, ops.Close())
}
