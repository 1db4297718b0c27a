package httpapi

// Native mailbox routes, JSON in and out (uLightWMQ's own routes are in ulwmq.go):
//
//	POST   /v1/mbox/{dst}?reply=1                  push the body; -> {"id": "7"}
//	GET    /v1/mbox?wait=30s&remove=1             the caller's oldest message (404 when none)
//	GET    /v1/mbox/messages/{id}                  one message of the caller's mailbox
//	POST   /v1/mbox/messages/{id}/reply            answer it with the body
//	DELETE /v1/mbox/messages/{id}                  remove it
//	GET    /v1/mbox/{dst}/replies/{id}?wait=30s&remove=1   the reply to a message the caller pushed

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/httpauth"
	"github.com/ternmq/tern/internal/mailbox"
)

// MailboxMessage is a mailbox message as the native routes show it.
type MailboxMessage struct {
	ID         string    `json:"id"`
	From       string    `json:"from"`
	Body       []byte    `json:"body"` // base64 in JSON
	WantsReply bool      `json:"wants_reply"`
	Answered   bool      `json:"answered"`
	Created    time.Time `json:"created"`
	Expires    time.Time `json:"expires"`
	Removed    bool      `json:"removed,omitempty"`
}

func mailboxMessage(m mailbox.Message, removed bool) MailboxMessage {
	return MailboxMessage{ID: strconv.FormatUint(m.ID, 10), From: m.From, Body: m.Body, WantsReply: m.WantsReply,
		Answered: m.Answered, Created: m.Created, Expires: m.Expires, Removed: removed}
}

type mbox struct {
	s  *Server
	mb *mailbox.Service
}

// owner authenticates the caller and returns its mailbox name, or answers and returns "".
func (x *mbox) owner(w http.ResponseWriter, r *http.Request) (*auth.Principal, string) {
	p := x.s.principal(w, r)
	if p == nil {
		return nil, ""
	}
	name := mailboxName(r, p)
	if !mailbox.ValidName(name) {
		httpauth.WriteError(w, http.StatusNotAcceptable, "bad_identity", "a mailbox needs an identity of [a-z0-9]+, not "+strconv.Quote(name))
		return nil, ""
	}
	return p, name
}

// mailboxName is the mailbox a caller owns: its identity; in open mode, which checks nobody, the
// Basic user name given, as uLightWMQ's routes have always taken it (loopback only).
func mailboxName(r *http.Request, p *auth.Principal) string {
	if p.Identity == "" && p.Source == auth.SourceOpen {
		user, _, _ := r.BasicAuth()
		return strings.ToLower(user)
	}
	return p.Identity
}

func mboxFail(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, mailbox.ErrNoMailbox):
		httpauth.WriteError(w, http.StatusNotFound, "no_mailbox", err.Error())
	case errors.Is(err, mailbox.ErrEmpty), errors.Is(err, mailbox.ErrNotFound):
		httpauth.WriteError(w, http.StatusNotFound, "not_found", err.Error())
	case errors.Is(err, mailbox.ErrTimedOut):
		httpauth.WriteError(w, http.StatusNotFound, "timed_out", err.Error())
	case errors.Is(err, mailbox.ErrNotReplyable):
		httpauth.WriteError(w, http.StatusConflict, "not_replyable", err.Error())
	default:
		httpauth.WriteError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
	}
}

// waitParam reads ?wait= (a duration up to MailboxWait; default none).
func (x *mbox) waitParam(w http.ResponseWriter, r *http.Request) (time.Duration, bool) {
	v := r.URL.Query().Get("wait")
	if v == "" {
		return 0, true
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 || d > x.s.cfg.MailboxWait {
		httpauth.WriteError(w, http.StatusBadRequest, "bad_parameter", "wait must be a duration up to "+x.s.cfg.MailboxWait.String())
		return 0, false
	}
	return d, true
}

func pathID(r *http.Request) uint64 {
	n, _ := strconv.ParseUint(r.PathValue("id"), 10, 64)
	return n
}

func (s *Server) registerMbox(mux *http.ServeMux, mb *mailbox.Service) {
	x := &mbox{s: s, mb: mb}
	mux.HandleFunc("POST /v1/mbox/{dst}", func(w http.ResponseWriter, r *http.Request) {
		p, name := x.owner(w, r)
		if p == nil {
			return
		}
		dst := r.PathValue("dst")
		if !p.Allow(auth.Push, "mailbox/"+dst) {
			httpauth.WriteError(w, http.StatusForbidden, "not_authorized", "push to mailbox "+dst+" is not granted")
			return
		}
		body, err := readBody(w, r, s.cfg.MaxBody)
		if err != nil {
			bodyFailed(w, err, s.cfg.MaxBody)
			return
		}
		id, err := mb.Push(name, dst, body, r.URL.Query().Get("reply") == "1")
		if err != nil {
			mboxFail(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"id": strconv.FormatUint(id, 10)})
	})
	mux.HandleFunc("GET /v1/mbox", func(w http.ResponseWriter, r *http.Request) {
		_, name := x.owner(w, r)
		if name == "" {
			return
		}
		wait, ok := x.waitParam(w, r)
		if !ok {
			return
		}
		m, removed, err := mb.Front(r.Context(), name, wait, r.URL.Query().Get("remove") == "1")
		if err != nil {
			mboxFail(w, err)
			return
		}
		writeJSON(w, http.StatusOK, mailboxMessage(m, removed))
	})
	mux.HandleFunc("GET /v1/mbox/messages/{id}", func(w http.ResponseWriter, r *http.Request) {
		if _, name := x.owner(w, r); name != "" {
			m, err := mb.Get(name, pathID(r))
			if err != nil {
				mboxFail(w, err)
				return
			}
			writeJSON(w, http.StatusOK, mailboxMessage(m, false))
		}
	})
	mux.HandleFunc("POST /v1/mbox/messages/{id}/reply", func(w http.ResponseWriter, r *http.Request) {
		if _, name := x.owner(w, r); name != "" {
			body, err := readBody(w, r, s.cfg.MaxBody)
			if err != nil {
				bodyFailed(w, err, s.cfg.MaxBody)
				return
			}
			if err := mb.Reply(name, pathID(r), body); err != nil {
				mboxFail(w, err)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		}
	})
	mux.HandleFunc("DELETE /v1/mbox/messages/{id}", func(w http.ResponseWriter, r *http.Request) {
		if _, name := x.owner(w, r); name != "" {
			if err := mb.Remove(name, pathID(r)); err != nil {
				mboxFail(w, err)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		}
	})
	mux.HandleFunc("GET /v1/mbox/{dst}/replies/{id}", func(w http.ResponseWriter, r *http.Request) {
		_, name := x.owner(w, r)
		if name == "" {
			return
		}
		wait, ok := x.waitParam(w, r)
		if !ok {
			return
		}
		reply, removed, err := mb.WaitForReply(r.Context(), name, r.PathValue("dst"), pathID(r), max(wait, time.Millisecond), r.URL.Query().Get("remove") == "1")
		if err != nil {
			mboxFail(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"reply": reply, "removed": removed})
	})
}
