package main

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
	"time"

	"github.com/ternmq/tern/internal/adminapi"
	"github.com/ternmq/tern/internal/auth"
)

// remoteOps goes through the admin API of a running tern.
type remoteOps struct {
	base string
	c    *http.Client
	auth func(*http.Request)
}

// remote checks the server flags and builds the client. Credentials: --admin-user with
// --admin-password or $TERN_ADMIN_PASSWORD, or --admin-token, or $TERN_ADMIN_TOKEN when neither
// flag is given; a client certificate (--cert, --key) may come with either or replace them.
func (f *adminFlags) remote() (*remoteOps, error) {
	u, err := url.Parse(f.server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--server %q: give http://host:port or https://host:port", f.server)
	}
	if u.Scheme == "http" && (f.cafile != "" || f.cert != "") {
		return nil, fmt.Errorf("--server %s is plain http: --cafile and --cert need https", f.server)
	}
	user, pass, tok := f.adminUser, f.adminPass, f.adminTok
	switch {
	case user != "" && tok != "":
		return nil, errors.New("give --admin-user or --admin-token, not both")
	case user != "":
		if pass = cmp.Or(pass, os.Getenv("TERN_ADMIN_PASSWORD")); pass == "" {
			return nil, fmt.Errorf("--admin-user %s needs a password: set $TERN_ADMIN_PASSWORD or give --admin-password", user)
		}
	case pass != "":
		return nil, errors.New("--admin-password needs --admin-user")
	case tok == "":
		tok = os.Getenv("TERN_ADMIN_TOKEN")
	}

	tr := &http.Transport{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12}}
	if f.cafile != "" {
		pem, err := os.ReadFile(f.cafile)
		if err != nil {
			return nil, fmt.Errorf("--cafile: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--cafile %s holds no PEM certificate", f.cafile)
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	if (f.cert == "") != (f.key == "") {
		return nil, errors.New("give --cert and --key together")
	}
	if f.cert != "" {
		kp, err := tls.LoadX509KeyPair(f.cert, f.key)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		tr.TLSClientConfig.Certificates = []tls.Certificate{kp}
	}
	r := &remoteOps{base: strings.TrimRight(f.server, "/"), c: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
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

// apiError is a refusal from the admin API. A 404 unwraps to auth.ErrNotFound, so callers treat
// both modes alike.
type apiError struct {
	method, path string
	status       int
	code, msg    string
}

func (e *apiError) Error() string {
	s := fmt.Sprintf("%s %s: %d %s", e.method, e.path, e.status, http.StatusText(e.status))
	if e.msg != "" {
		s += ": " + e.msg
	}
	switch e.status {
	case http.StatusUnauthorized:
		s += " (check --admin-user with --admin-password or $TERN_ADMIN_PASSWORD, or --admin-token)"
	case http.StatusForbidden:
		s += " (the admin credentials lack that admin grant)"
	case http.StatusTooManyRequests:
		s += " (too many failed sign-ins from this address; wait a little)"
	}
	return s
}

func (e *apiError) Unwrap() error {
	if e.status == http.StatusNotFound && e.code == "not_found" {
		return auth.ErrNotFound
	}
	return nil
}

// call sends a JSON request (or in as it is, if it is a reader) and decodes a JSON answer into
// out (nil: none expected).
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
		return fmt.Errorf("cannot reach tern's admin API at %s (is tern running with an HTTP listener there?): %w", r.base, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		e := &apiError{method: method, path: path, status: resp.StatusCode}
		var body struct {
			Error struct{ Code, Message string }
		}
		if json.Unmarshal(raw, &body) == nil {
			e.code, e.msg = body.Error.Code, body.Error.Message
		}
		return e
	}
	if out == nil || len(raw) == 0 {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("%s %s: unexpected answer (is %s a tern HTTP listener?): %w", method, path, r.base, err)
	}
	return nil
}

func userPath(name string) string { return "/v1/admin/users/" + url.PathEscape(name) }

func (r *remoteOps) User(name string) (u auth.User, err error) {
	return u, r.call("GET", userPath(name), nil, &u)
}

func (r *remoteOps) PutUser(name string, b adminapi.UserBody) error {
	return r.call("PUT", userPath(name), b, nil)
}

func (r *remoteOps) SetPassword(name, password string) error {
	return r.call("POST", userPath(name)+"/password", map[string]string{"password": password}, nil)
}

func (r *remoteOps) DeleteUser(name string) error { return r.call("DELETE", userPath(name), nil, nil) }

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
	method := "DELETE"
	if add {
		method = "POST"
	}
	return out, r.call(method, "/v1/admin/grants", g, &out)
}

func (r *remoteOps) Grants(user bool, name string) (out []auth.Grant, err error) {
	q := url.Values{}
	if user {
		q.Set("user", name)
	} else {
		q.Set("group", name)
	}
	return out, r.call("GET", "/v1/admin/grants?"+q.Encode(), nil, &out)
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
	path := "/v1/admin/tokens"
	if user != "" {
		path += "?user=" + url.QueryEscape(user)
	}
	return out, r.call("GET", path, nil, &out)
}

func (r *remoteOps) ImportULWMQ(rd io.Reader, group string) (int, int, error) {
	var out struct{ Imported, Skipped int }
	path := "/v1/admin/import/ulwmq"
	if group != "" {
		path += "?group=" + url.QueryEscape(group)
	}
	err := r.call("POST", path, rd, &out)
	return out.Imported, out.Skipped, err
}

func (r *remoteOps) Close() error { return nil }
