package adminapi

import (
	"cmp"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/httpauth"
	"github.com/ternmq/tern/internal/webhook"
)

// The core's sessions and the webhooks, for administrators (the console's sessions and webhooks
// pages):
//
//	GET    /v1/admin/sessions?q=&sort=&order=&limit=   sessions
//	GET    /v1/admin/sessions/{id}                      sessions/{id}
//	POST   /v1/admin/sessions/{id}/disconnect           sessions/{id}
//	DELETE /v1/admin/sessions/{id}/queue                sessions/{id}
//	GET    /v1/admin/faces                              sessions
//	GET    /v1/admin/webhooks                           webhooks (the caller's own hooks without)
//	POST   /v1/admin/webhooks/{id}/retry                the hook's owner, or webhooks
//
// Session routes act through the core's own calls (broker.Kick, PurgeQueue), so a disconnected
// client goes as it would on a takeover and its session lives on as its expiry says.

// Option adds what some routes need besides authentication.
type Option func(*api)

// WithBroker enables the sessions routes.
func WithBroker(b *broker.Broker) Option { return func(h *api) { h.b = b } }

// WithWebhooks enables the webhooks routes.
func WithWebhooks(m *webhook.Manager) Option { return func(h *api) { h.hooks = m } }

// maxSessionList bounds one answer of GET /v1/admin/sessions.
const maxSessionList = 1000

// SessionList is the answer of GET /v1/admin/sessions: the matching sessions (at most limit of
// them, in the order asked) and how many matched.
type SessionList struct {
	Total    int                  `json:"total"`
	Sessions []broker.SessionInfo `json:"sessions"`
}

func (h *api) registerCore(mux *http.ServeMux, identify httpauth.Identify) {
	guard := func(pattern string, resource func(*http.Request) string, fn http.HandlerFunc) {
		mux.Handle(pattern, httpauth.Require(h.a, identify, auth.Admin, resource, fn))
	}
	fixed := func(s string) func(*http.Request) string { return func(*http.Request) string { return s } }
	session := func(r *http.Request) string { return "sessions/" + r.PathValue("id") }
	if h.b != nil {
		guard("GET /v1/admin/sessions", fixed("sessions"), h.listSessions)
		guard("GET /v1/admin/sessions/{id}", session, h.getSession)
		guard("POST /v1/admin/sessions/{id}/disconnect", session, h.kick)
		guard("DELETE /v1/admin/sessions/{id}/queue", session, h.purge)
		guard("GET /v1/admin/faces", fixed("sessions"), func(w http.ResponseWriter, _ *http.Request) {
			h.reply(w, http.StatusOK, h.b.FaceCounts(), nil)
		})
	}
	if h.hooks != nil {
		// Any authenticated client: the manager shows each its own hooks, or all to an admin.
		mux.HandleFunc("GET /v1/admin/webhooks", func(w http.ResponseWriter, r *http.Request) {
			if p := h.principal(w, r, identify); p != nil {
				h.reply(w, http.StatusOK, h.hooks.Status(p), nil)
			}
		})
		mux.HandleFunc("POST /v1/admin/webhooks/{id}/retry", func(w http.ResponseWriter, r *http.Request) {
			p := h.principal(w, r, identify)
			if p == nil {
				return
			}
			if err := h.hooks.RetryNow(p, r.PathValue("id")); err != nil {
				httpauth.WriteError(w, http.StatusNotFound, "not_found", err.Error())
				return
			}
			w.WriteHeader(http.StatusNoContent)
		})
	}
}

func (h *api) principal(w http.ResponseWriter, r *http.Request, identify httpauth.Identify) *auth.Principal {
	p, err := h.a.Authenticate(r.Context(), httpauth.Credentials(r, identify, "http"))
	if err != nil {
		httpauth.Refuse(w, err)
		return nil
	}
	return p
}

// sessionOrder compares sessions by a sort key of GET /v1/admin/sessions.
var sessionOrder = map[string]func(a, b broker.SessionInfo) int{
	"client_id": func(a, b broker.SessionInfo) int { return strings.Compare(a.ClientID, b.ClientID) },
	"identity":  func(a, b broker.SessionInfo) int { return strings.Compare(a.Identity, b.Identity) },
	"face":      func(a, b broker.SessionInfo) int { return strings.Compare(a.Face, b.Face) },
	"queued":    func(a, b broker.SessionInfo) int { return cmp.Compare(a.Queued, b.Queued) },
	"inflight":  func(a, b broker.SessionInfo) int { return cmp.Compare(a.Inflight, b.Inflight) },
	"online": func(a, b broker.SessionInfo) int {
		return cmp.Compare(boolInt(a.Online), boolInt(b.Online))
	},
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// listSessions answers GET /v1/admin/sessions: q is a substring of the client id, identity or
// face (case-insensitive); sort one of sessionOrder's keys (default queued, deepest first);
// order asc or desc; limit 1..1000 (default 200).
func (h *api) listSessions(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	key := cmp.Or(q.Get("sort"), "queued")
	order, ok := sessionOrder[key]
	if !ok {
		httpauth.WriteError(w, http.StatusBadRequest, "bad_parameter", "sort must be client_id, identity, face, queued, inflight or online")
		return
	}
	desc := key == "queued" || key == "inflight" || key == "online"
	switch q.Get("order") {
	case "":
	case "asc":
		desc = false
	case "desc":
		desc = true
	default:
		httpauth.WriteError(w, http.StatusBadRequest, "bad_parameter", "order must be asc or desc")
		return
	}
	limit := 200
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxSessionList {
			httpauth.WriteError(w, http.StatusBadRequest, "bad_parameter", "limit must be 1..1000")
			return
		}
		limit = n
	}
	needle := strings.ToLower(q.Get("q"))
	all := h.b.Sessions(0)
	out := all[:0]
	for _, s := range all {
		if needle == "" || strings.Contains(strings.ToLower(s.ClientID), needle) ||
			strings.Contains(strings.ToLower(s.Identity), needle) || strings.Contains(s.Face, needle) {
			out = append(out, s)
		}
	}
	slices.SortStableFunc(out, func(a, b broker.SessionInfo) int {
		c := order(a, b)
		if desc {
			c = -c
		}
		return cmp.Or(c, strings.Compare(a.ClientID, b.ClientID))
	})
	total := len(out)
	h.reply(w, http.StatusOK, SessionList{Total: total, Sessions: out[:min(total, limit)]}, nil)
}

func (h *api) getSession(w http.ResponseWriter, r *http.Request) {
	d, err := h.b.SessionDetail(r.PathValue("id"))
	if err != nil {
		h.coreError(w, err)
		return
	}
	h.reply(w, http.StatusOK, d, nil)
}

func (h *api) kick(w http.ResponseWriter, r *http.Request) {
	if err := h.b.Kick(r.PathValue("id")); err != nil {
		h.coreError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *api) purge(w http.ResponseWriter, r *http.Request) {
	n, err := h.b.PurgeQueue(r.PathValue("id"))
	if err != nil {
		h.coreError(w, err)
		return
	}
	h.reply(w, http.StatusOK, map[string]int{"purged": n}, nil)
}

func (h *api) coreError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, broker.ErrNoSession):
		httpauth.WriteError(w, http.StatusNotFound, "not_found", err.Error())
	case errors.Is(err, broker.ErrNotConnected):
		httpauth.WriteError(w, http.StatusConflict, "not_connected", err.Error())
	default:
		h.log.Warn("admin request failed", "err", err)
		httpauth.WriteError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
	}
}
