package httpapi

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/ternmq/tern/internal/httpauth"
	"github.com/ternmq/tern/internal/webhook"
)

// WebhookBody is what POST /v1/webhooks takes.
type WebhookBody struct {
	Filter          string  `json:"filter"`
	URL             string  `json:"url"`
	Secret          string  `json:"secret"`
	MaxAttempts     int     `json:"max_attempts"`
	Rate            float64 `json:"rate"`
	Concurrency     int     `json:"concurrency"`
	DeadLetterTopic string  `json:"dead_letter_topic"`
}

// RegisterWebhooks adds /v1/webhooks: create (201, the hook with its secret), list (the caller's,
// or all with admin on "webhooks"; no secrets), one hook's status, delete (the owner or an admin).
func (s *Server) RegisterWebhooks(mux *http.ServeMux, hooks *webhook.Manager, identify httpauth.Identify) {
	v := *s
	v.identify = identify
	mux.HandleFunc("POST /v1/webhooks", func(w http.ResponseWriter, r *http.Request) {
		p := v.principal(w, r)
		if p == nil {
			return
		}
		var b WebhookBody
		const limit = 64 << 10
		raw, err := readBody(w, r, limit)
		if err != nil {
			bodyFailed(w, err, limit)
			return
		}
		if err := json.Unmarshal(raw, &b); err != nil {
			httpauth.WriteError(w, http.StatusBadRequest, "bad_json", err.Error())
			return
		}
		h, err := hooks.Create(p, webhook.Hook{Filter: b.Filter, URL: b.URL, Secret: b.Secret, MaxAttempts: b.MaxAttempts,
			Rate: b.Rate, Concurrency: b.Concurrency, DeadLetterTopic: b.DeadLetterTopic})
		switch {
		case errors.Is(err, webhook.ErrForbidden):
			httpauth.WriteError(w, http.StatusForbidden, "not_authorized", err.Error())
		case errors.Is(err, webhook.ErrForbiddenTarget):
			httpauth.WriteError(w, http.StatusBadRequest, "forbidden_target", err.Error())
		case errors.Is(err, webhook.ErrTooMany):
			httpauth.WriteError(w, http.StatusTooManyRequests, "quota_exceeded", err.Error())
		case err != nil:
			httpauth.WriteError(w, http.StatusBadRequest, "bad_webhook", err.Error())
		default:
			writeJSON(w, http.StatusCreated, h)
		}
	})
	mux.HandleFunc("GET /v1/webhooks", func(w http.ResponseWriter, r *http.Request) {
		if p := v.principal(w, r); p != nil {
			writeJSON(w, http.StatusOK, hooks.List(p))
		}
	})
	// One hook with how its deliveries go (attempts, failures, last error, dead letters); on a
	// cluster node, answered on every node.
	mux.HandleFunc("GET /v1/webhooks/{id}", func(w http.ResponseWriter, r *http.Request) {
		p := v.principal(w, r)
		if p == nil {
			return
		}
		st, err := hooks.StatusOf(p, r.PathValue("id"))
		if err != nil {
			httpauth.WriteError(w, http.StatusNotFound, "not_found", err.Error())
			return
		}
		writeJSON(w, http.StatusOK, st)
	})
	mux.HandleFunc("DELETE /v1/webhooks/{id}", func(w http.ResponseWriter, r *http.Request) {
		p := v.principal(w, r)
		if p == nil {
			return
		}
		if err := hooks.Delete(p, r.PathValue("id")); err != nil {
			if errors.Is(err, webhook.ErrNotFound) {
				httpauth.WriteError(w, http.StatusNotFound, "not_found", err.Error())
				return
			}
			fail(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}
