// Package adminapi is tern's administration API over HTTP: users, groups, their grants, and
// tokens, under /v1/admin/. It works on the same auth.Authenticator the broker uses, so a change
// applies to the next connect at once.
//
// Every route needs the admin grant on a resource topic:
//
//	GET    /v1/admin/users                  users
//	GET    /v1/admin/users/{name}           users/{name}
//	PUT    /v1/admin/users/{name}           users/{name}
//	POST   /v1/admin/users/{name}/password  users/{name}
//	DELETE /v1/admin/users/{name}           users/{name}
//	GET    /v1/admin/groups                 groups
//	PUT    /v1/admin/groups/{name}          groups/{name}
//	DELETE /v1/admin/groups/{name}          groups/{name}
//	GET    /v1/admin/grants?user=u|group=g  users/u or groups/g
//	POST   /v1/admin/grants                 users/u or groups/g, from the body
//	DELETE /v1/admin/grants                 users/u or groups/g, from the body
//	POST   /v1/admin/tokens                 tokens/{user}, from the body
//	GET    /v1/admin/tokens?user=u          tokens/u, or tokens without ?user=
//	DELETE /v1/admin/tokens/{id}            tokens/{the token's user}; tokens for an unknown id
//	POST   /v1/admin/import/ulwmq?group=g   users
//
// and, given the core and the webhooks (WithBroker, WithWebhooks), the sessions and webhooks
// routes of sessions.go,
// so "admin:#" allows everything and "admin:tokens/%u" lets a user manage its own tokens only.
// Routes whose resource is in the body authenticate after reading it (at most the body limit),
// so a refusal there may come after a 400 or 413 for the body itself.
//
// Bodies are JSON (at most 1 MiB, 8 MiB for an import; 413 beyond; 408 when one does not
// arrive within the HTTP server's read timeout) and unknown fields are refused, so a misspelt
// "grant" cannot silently create a user without grants. Errors are httpauth's JSON errors: 400
// for bad JSON, a bad grant or a refused value (the message says which), 404 for an unknown
// user, group or token, 401/403/429/503 from authentication.
package adminapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/cluster"
	"github.com/ternmq/tern/internal/httpauth"
	"github.com/ternmq/tern/internal/webhook"
)

const (
	maxBody   = 1 << 20
	maxImport = 8 << 20
)

type api struct {
	a     *auth.Authenticator
	log   *slog.Logger
	b     *broker.Broker   // nil: no sessions routes
	hooks *webhook.Manager // nil: no webhooks routes
}

// UserBody is what PUT /v1/admin/users/{name} takes.
type UserBody struct {
	Password *string  `json:"password,omitempty"`
	Groups   []string `json:"groups"`
	Grants   []string `json:"grants"`
}

// GrantsBody is what the grants routes take: a user or a group, and grants.
type GrantsBody struct {
	User   string   `json:"user,omitempty"`
	Group  string   `json:"group,omitempty"`
	Grants []string `json:"grants"`
}

// TokenBody is what POST /v1/admin/tokens takes; TTL is a Go duration ("24h"), empty: none.
type TokenBody struct {
	User   string   `json:"user"`
	Grants []string `json:"grants"`
	TTL    string   `json:"ttl,omitempty"`
}

// TokenCreated is the answer to a token creation: the secret, shown this once.
type TokenCreated struct {
	Token string         `json:"token"`
	Info  auth.TokenInfo `json:"info"`
}

// New returns the handler for /v1/admin/.
func New(a *auth.Authenticator, identify httpauth.Identify, log *slog.Logger, opts ...Option) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &api{a: a, log: log}
	for _, o := range opts {
		o(h)
	}
	mux := http.NewServeMux()
	guard := func(pattern string, resource func(*http.Request) string, fn http.HandlerFunc) {
		mux.Handle(pattern, httpauth.Require(a, identify, auth.Admin, resource, fn))
	}
	fixed := func(s string) func(*http.Request) string { return func(*http.Request) string { return s } }
	named := func(prefix string) func(*http.Request) string {
		return func(r *http.Request) string { return prefix + r.PathValue("name") }
	}
	guard("GET /v1/admin/users", fixed("users"), h.listUsers)
	guard("GET /v1/admin/users/{name}", named("users/"), h.getUser)
	guard("PUT /v1/admin/users/{name}", named("users/"), h.putUser)
	guard("POST /v1/admin/users/{name}/password", named("users/"), h.setPassword)
	guard("DELETE /v1/admin/users/{name}", named("users/"), h.deleteUser)
	guard("GET /v1/admin/groups", fixed("groups"), h.listGroups)
	guard("PUT /v1/admin/groups/{name}", named("groups/"), h.putGroup)
	guard("DELETE /v1/admin/groups/{name}", named("groups/"), h.deleteGroup)
	// The grants routes name their user or group in the query or body; listing needs it in the
	// query, editing checks it after reading the body (see editGrants).
	guard("GET /v1/admin/grants", grantsResource, h.listGrants)
	mux.Handle("POST /v1/admin/grants", h.editGrants(identify, true))
	mux.Handle("DELETE /v1/admin/grants", h.editGrants(identify, false))
	mux.Handle("POST /v1/admin/tokens", h.createToken(identify))
	guard("GET /v1/admin/tokens", func(r *http.Request) string {
		if u := r.URL.Query().Get("user"); u != "" {
			return "tokens/" + u
		}
		return "tokens"
	}, h.listTokens)
	mux.Handle("DELETE /v1/admin/tokens/{id}", h.revokeToken(identify))
	guard("POST /v1/admin/import/ulwmq", fixed("users"), h.importULWMQ)
	h.registerCore(mux, identify)
	mux.HandleFunc("/v1/admin/", func(w http.ResponseWriter, r *http.Request) {
		httpauth.WriteError(w, http.StatusNotFound, "not_found", "no such admin route: "+r.Method+" "+r.URL.Path)
	})
	return mux
}

func grantsResource(r *http.Request) string {
	q := r.URL.Query()
	if u := q.Get("user"); u != "" {
		return "users/" + u
	}
	return "groups/" + q.Get("group")
}

// authorize authenticates the request and checks admin on resource, for routes that learn their
// resource from the body; it has written the refusal when it returns false.
func (h *api) authorize(w http.ResponseWriter, r *http.Request, identify httpauth.Identify, resource string) bool {
	p, err := h.a.Authenticate(r.Context(), httpauth.Credentials(r, identify, "http"))
	if err != nil {
		httpauth.Refuse(w, err)
		return false
	}
	if !p.Allow(auth.Admin, resource) {
		httpauth.WriteError(w, http.StatusForbidden, "forbidden", "not granted: admin on "+resource)
		return false
	}
	return true
}

// decode reads a JSON body of at most limit bytes into v, answering 400 or 413 itself.
func decode(w http.ResponseWriter, r *http.Request, limit int64, v any) bool {
	// io.ReadAll grows its buffer with the bytes that arrive, whatever Content-Length claims;
	// the HTTP server's read timeout bounds how long they may take.
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		httpauth.WriteError(w, http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("body larger than %d bytes", limit))
		return false
	case errors.Is(err, os.ErrDeadlineExceeded):
		httpauth.WriteError(w, http.StatusRequestTimeout, "body_timeout", "the request body did not arrive in time")
		return false
	case err != nil:
		httpauth.WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	err = dec.Decode(v)
	if err == nil && dec.Decode(new(json.RawMessage)) != io.EOF {
		err = errors.New("data after the JSON value")
	}
	if err != nil {
		httpauth.WriteError(w, http.StatusBadRequest, "bad_json", "request body: "+err.Error())
		return false
	}
	return true
}

func parseGrants(w http.ResponseWriter, ss []string) ([]auth.Grant, bool) {
	out := make([]auth.Grant, 0, len(ss))
	for _, s := range ss {
		g, err := auth.ParseGrant(s)
		if err != nil {
			httpauth.WriteError(w, http.StatusBadRequest, "bad_grant", err.Error())
			return nil, false
		}
		out = append(out, g)
	}
	return out, true
}

// reply writes v as JSON, or the error err stands for.
func (h *api) reply(w http.ResponseWriter, status int, v any, err error) {
	if err != nil {
		switch {
		case errors.Is(err, auth.ErrNotFound):
			httpauth.WriteError(w, http.StatusNotFound, "not_found", err.Error())
		case errors.Is(err, auth.ErrBadGrant):
			httpauth.WriteError(w, http.StatusBadRequest, "bad_grant", err.Error())
		case errors.Is(err, auth.ErrWALMode):
			httpauth.WriteError(w, http.StatusBadRequest, "ulwmq_wal_mode", err.Error())
		case errors.Is(err, cluster.ErrNoLeader), errors.Is(err, cluster.ErrClosed):
			// A cluster node that cannot commit the change refuses it rather than report it done.
			httpauth.WriteError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
		default:
			// Validation errors (names, empty passwords, grants beyond a user's) are the
			// request's fault; store failures are logged.
			h.log.Warn("admin request failed", "err", err)
			httpauth.WriteError(w, http.StatusBadRequest, "rejected", err.Error())
		}
		return
	}
	if v == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (h *api) listUsers(w http.ResponseWriter, _ *http.Request) {
	us, err := h.a.Users()
	h.reply(w, http.StatusOK, orEmpty(us), err)
}

func (h *api) getUser(w http.ResponseWriter, r *http.Request) {
	u, err := h.a.User(r.PathValue("name"))
	h.reply(w, http.StatusOK, u, err)
}

func (h *api) putUser(w http.ResponseWriter, r *http.Request) {
	var b UserBody
	if !decode(w, r, maxBody, &b) {
		return
	}
	grants, ok := parseGrants(w, b.Grants)
	if !ok {
		return
	}
	var pw []byte
	if b.Password != nil {
		pw = []byte(*b.Password)
	}
	name := r.PathValue("name")
	if err := h.a.PutUser(auth.User{Name: name, Groups: b.Groups, Grants: grants}, pw); err != nil {
		h.reply(w, 0, nil, err)
		return
	}
	u, err := h.a.User(name)
	h.reply(w, http.StatusOK, u, err)
}

func (h *api) setPassword(w http.ResponseWriter, r *http.Request) {
	var b struct {
		Password string `json:"password"`
	}
	if !decode(w, r, maxBody, &b) {
		return
	}
	h.reply(w, 0, nil, h.a.SetPassword(r.PathValue("name"), []byte(b.Password)))
}

func (h *api) deleteUser(w http.ResponseWriter, r *http.Request) {
	h.reply(w, 0, nil, h.a.DeleteUser(r.PathValue("name")))
}

func (h *api) listGroups(w http.ResponseWriter, _ *http.Request) {
	gs, err := h.a.Groups()
	h.reply(w, http.StatusOK, orEmpty(gs), err)
}

func (h *api) putGroup(w http.ResponseWriter, r *http.Request) {
	var b struct {
		Grants []string `json:"grants"`
	}
	if !decode(w, r, maxBody, &b) {
		return
	}
	grants, ok := parseGrants(w, b.Grants)
	if !ok {
		return
	}
	g := auth.Group{Name: r.PathValue("name"), Grants: grants}
	h.reply(w, http.StatusOK, g, h.a.PutGroup(g))
}

func (h *api) deleteGroup(w http.ResponseWriter, r *http.Request) {
	h.reply(w, 0, nil, h.a.DeleteGroup(r.PathValue("name")))
}

func (h *api) listGrants(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if (q.Get("user") == "") == (q.Get("group") == "") {
		httpauth.WriteError(w, http.StatusBadRequest, "bad_request", "give exactly one of ?user= and ?group=")
		return
	}
	if u := q.Get("user"); u != "" {
		us, err := h.a.User(u)
		h.reply(w, http.StatusOK, orEmpty(us.Grants), err)
		return
	}
	gs, err := h.a.Groups()
	for _, g := range gs {
		if g.Name == q.Get("group") {
			h.reply(w, http.StatusOK, orEmpty(g.Grants), err)
			return
		}
	}
	if err == nil {
		err = fmt.Errorf("%w: group %q", auth.ErrNotFound, q.Get("group"))
	}
	h.reply(w, 0, nil, err)
}

func (h *api) editGrants(identify httpauth.Identify, add bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b GrantsBody
		if !decode(w, r, maxBody, &b) {
			return
		}
		if (b.User == "") == (b.Group == "") {
			httpauth.WriteError(w, http.StatusBadRequest, "bad_request", "give exactly one of user and group")
			return
		}
		resource, name := "users/"+b.User, b.User
		if b.Group != "" {
			resource, name = "groups/"+b.Group, b.Group
		}
		if !h.authorize(w, r, identify, resource) {
			return
		}
		grants, ok := parseGrants(w, b.Grants)
		if !ok {
			return
		}
		got, err := h.a.EditGrants(b.User != "", name, grants, add)
		h.reply(w, http.StatusOK, orEmpty(got), err)
	})
}

func (h *api) createToken(identify httpauth.Identify) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b TokenBody
		if !decode(w, r, maxBody, &b) {
			return
		}
		if b.User == "" {
			httpauth.WriteError(w, http.StatusBadRequest, "bad_request", "a token needs a user")
			return
		}
		if !h.authorize(w, r, identify, "tokens/"+b.User) {
			return
		}
		grants, ok := parseGrants(w, b.Grants)
		if !ok {
			return
		}
		var ttl time.Duration
		if b.TTL != "" {
			var err error
			if ttl, err = time.ParseDuration(b.TTL); err != nil || ttl < 0 {
				httpauth.WriteError(w, http.StatusBadRequest, "bad_ttl", fmt.Sprintf("ttl %q: a positive duration like 24h", b.TTL))
				return
			}
		}
		secret, info, err := h.a.CreateToken(b.User, grants, ttl)
		h.reply(w, http.StatusCreated, TokenCreated{Token: secret, Info: info}, err)
	})
}

func (h *api) listTokens(w http.ResponseWriter, r *http.Request) {
	ts, err := h.a.ListTokens(r.URL.Query().Get("user"))
	h.reply(w, http.StatusOK, orEmpty(ts), err)
}

func (h *api) revokeToken(identify httpauth.Identify) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		// The token's user decides the resource, so look it up first; an unknown id needs admin
		// on all tokens to be told so, or the answer would reveal which ids exist.
		resource := "tokens"
		ts, err := h.a.ListTokens("")
		if err != nil {
			h.reply(w, 0, nil, err)
			return
		}
		for _, t := range ts {
			if t.ID == id {
				resource = "tokens/" + t.User
			}
		}
		if !h.authorize(w, r, identify, resource) {
			return
		}
		h.reply(w, 0, nil, h.a.RevokeToken(id))
	})
}

func (h *api) importULWMQ(w http.ResponseWriter, r *http.Request) {
	var groups []string
	if g := r.URL.Query().Get("group"); g != "" {
		groups = append(groups, g)
	}
	n, skipped, err := h.a.ImportULWMQ(http.MaxBytesReader(w, r.Body, maxImport), groups...)
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		httpauth.WriteError(w, http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("users.db larger than %d bytes", int64(maxImport)))
		return
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		httpauth.WriteError(w, http.StatusRequestTimeout, "body_timeout", "the request body did not arrive in time")
		return
	}
	h.reply(w, http.StatusOK, map[string]int{"imported": n, "skipped": skipped}, err)
}

// orEmpty makes a nil list encode as [] rather than null.
func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
