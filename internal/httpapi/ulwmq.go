package httpapi

// uLightWMQ's API, so its curl scripts work against tern unchanged: /push, /front, /get, /reply,
// /waitForReply and /remove, any method, parameters in the query, the message or reply as the raw
// body, and its status codes, bodies ("0", "1", "-1", the id) and X-* headers. The caller is the
// client certificate's CN (lower-cased) on a TLS listener with a client CA, or Basic credentials;
// its name must be [a-z0-9]+ (406 otherwise). Unlike uLightWMQ, message ids are never reused and
// messages really expire (mailbox.Config.TTL). The native routes are under /v1/mbox.

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/httpauth"
	"github.com/ternmq/tern/internal/mailbox"
)

// RegisterMailboxes adds uLightWMQ's routes over the mailbox service.
func (s *Server) RegisterMailboxes(mux *http.ServeMux, mb *mailbox.Service, identify httpauth.Identify) {
	v := *s
	v.identify = identify
	u := &ulwmq{s: &v, mb: mb}
	mux.HandleFunc("/push", u.auth(u.push))
	mux.HandleFunc("/front", u.auth(u.front))
	mux.HandleFunc("/get", u.auth(u.get))
	mux.HandleFunc("/reply", u.auth(u.reply))
	mux.HandleFunc("/waitForReply", u.auth(u.waitForReply))
	mux.HandleFunc("/remove", u.auth(u.remove))
	v.registerMbox(mux, mb)
}

type ulwmq struct {
	s  *Server
	mb *mailbox.Service
}

// body writes uLightWMQ's plain answers: a status, an X-ErrorMsg if any, and a short body.
func ulBody(w http.ResponseWriter, status int, errMsg, body string) {
	if errMsg != "" {
		w.Header().Set("X-ErrorMsg", errMsg)
	}
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

// auth identifies the caller as uLightWMQ did: 401 "0" when the credentials fail (no
// WWW-Authenticate), 406 "0" when the name is not [a-z0-9]+.
func (u *ulwmq) auth(h func(w http.ResponseWriter, r *http.Request, p *auth.Principal, name string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, err := u.s.b.Authenticate(r.Context(), httpauth.Credentials(r, u.s.identify, "http"))
		if err != nil {
			if errors.Is(err, auth.ErrUnavailable) {
				ulBody(w, http.StatusServiceUnavailable, "Authentication unavailable", "0")
				return
			}
			ulBody(w, http.StatusUnauthorized, "", "0")
			return
		}
		name := mailboxName(r, p)
		if !mailbox.ValidName(name) {
			ulBody(w, http.StatusNotAcceptable, "", "0")
			return
		}
		h(w, r, p, name)
	}
}

func msgHeaders(w http.ResponseWriter, m mailbox.Message) {
	h := w.Header()
	h.Set("X-From", m.From)
	h.Set("X-MsgId", strconv.FormatUint(m.ID, 10))
	h.Set("X-RequireReply", boolDigit(m.WantsReply))
	h.Set("X-Last-Modified", m.Created.UTC().Format("Mon, 02 Jan 2006 15:04:05 GMT"))
	h.Set("Content-Type", "application/octet-stream")
}

func boolDigit(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

func queryID(r *http.Request) uint64 {
	n, _ := strconv.ParseUint(r.URL.Query().Get("msgId"), 10, 64)
	return n
}

func (u *ulwmq) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	b, err := readBody(w, r, u.s.cfg.MaxBody)
	if err != nil {
		switch status, _ := bodyStatus(err); status {
		case http.StatusRequestEntityTooLarge:
			ulBody(w, status, "Message too large", "0")
		case http.StatusRequestTimeout:
			ulBody(w, status, "Request timeout", "0")
		default:
			ulBody(w, status, "Bad request", "0")
		}
		return nil, false
	}
	return b, true
}

func (u *ulwmq) push(w http.ResponseWriter, r *http.Request, p *auth.Principal, name string) {
	q := r.URL.Query()
	dst := q.Get("dst") // not lower-cased, as in uLightWMQ
	body, ok := u.readBody(w, r)
	if !ok {
		return
	}
	if !p.Allow(auth.Push, "mailbox/"+dst) {
		ulBody(w, http.StatusForbidden, "Not Authorized", "0")
		return
	}
	id, err := u.mb.Push(name, dst, body, q.Get("reqReply") == "1")
	switch {
	case errors.Is(err, mailbox.ErrNoMailbox):
		ulBody(w, http.StatusNotFound, "Destination Queue Not Found", "0")
	case err != nil:
		u.s.log.Warn("mailbox push failed", "dst", dst, "err", err)
		ulBody(w, http.StatusServiceUnavailable, "", "-1")
	default:
		ulBody(w, http.StatusOK, "", strconv.FormatUint(id, 10))
	}
}

func (u *ulwmq) front(w http.ResponseWriter, r *http.Request, _ *auth.Principal, name string) {
	q := r.URL.Query()
	var wait time.Duration
	if q.Get("wait") == "1" {
		wait = u.s.cfg.MailboxWait
	}
	m, removed, err := u.mb.Front(r.Context(), name, wait, q.Get("removeAfterRead") == "1")
	switch {
	case errors.Is(err, mailbox.ErrEmpty):
		ulBody(w, http.StatusNotFound, "Empty Queue", "")
	case errors.Is(err, mailbox.ErrTimedOut):
		ulBody(w, http.StatusNotFound, "Timed out", "")
	case errors.Is(err, context.Canceled):
	case err != nil:
		ulBody(w, http.StatusServiceUnavailable, "Queue not found and/or can't be created", "0")
	default:
		msgHeaders(w, m)
		w.Header().Set("X-Removed", boolDigit(removed))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(m.Body)
	}
}

func (u *ulwmq) get(w http.ResponseWriter, r *http.Request, _ *auth.Principal, name string) {
	m, err := u.mb.Get(name, queryID(r))
	switch {
	case errors.Is(err, mailbox.ErrNotFound):
		ulBody(w, http.StatusNotFound, "Not Found", "")
	case err != nil:
		ulBody(w, http.StatusServiceUnavailable, "Queue not found and/or can't be created", "0")
	default:
		msgHeaders(w, m)
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(m.Body)
	}
}

func (u *ulwmq) reply(w http.ResponseWriter, r *http.Request, _ *auth.Principal, name string) {
	body, ok := u.readBody(w, r)
	if !ok {
		return
	}
	switch err := u.mb.Reply(name, queryID(r), body); {
	case errors.Is(err, mailbox.ErrNoMailbox):
		ulBody(w, http.StatusNotFound, "Destination Queue Not Found", "0")
	case err != nil:
		ulBody(w, http.StatusServiceUnavailable, "Unable to reply the message", "0")
	default:
		ulBody(w, http.StatusOK, "", "1")
	}
}

func (u *ulwmq) waitForReply(w http.ResponseWriter, r *http.Request, _ *auth.Principal, name string) {
	q := r.URL.Query()
	// removeAfterRead defaults to true here: only "0" keeps the message.
	reply, removed, err := u.mb.WaitForReply(r.Context(), name, q.Get("dst"), queryID(r), u.s.cfg.MailboxWait, q.Get("removeAfterRead") != "0")
	h := w.Header()
	switch {
	case errors.Is(err, mailbox.ErrNoMailbox):
		ulBody(w, http.StatusNotFound, "Destination Queue Not Found", "0")
	case errors.Is(err, mailbox.ErrTimedOut):
		h.Set("X-Answered", "0")
		h.Set("X-TimedOut", "1")
		h.Set("X-Removed", "0")
		ulBody(w, http.StatusNotFound, "", "")
	case errors.Is(err, context.Canceled):
	case err != nil:
		h.Set("X-Answered", "0")
		h.Set("X-TimedOut", "0")
		h.Set("X-Removed", "0")
		ulBody(w, http.StatusNotFound, "", "")
	default:
		h.Set("X-Answered", "1")
		h.Set("X-TimedOut", "0")
		h.Set("X-Removed", boolDigit(removed))
		h.Set("Content-Type", "application/octet-stream")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(reply)
	}
}

func (u *ulwmq) remove(w http.ResponseWriter, r *http.Request, _ *auth.Principal, name string) {
	if err := u.mb.Open(name); err != nil {
		ulBody(w, http.StatusServiceUnavailable, "Queue not found and/or can't be created", "0")
		return
	}
	if err := u.mb.Remove(name, queryID(r)); err != nil {
		ulBody(w, http.StatusNotFound, "Message Remove Failed", "0")
		return
	}
	ulBody(w, http.StatusOK, "", "1")
}
