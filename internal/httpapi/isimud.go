package httpapi

// isimud's API, so its publishers and subscribers work against tern unchanged:
//
//	POST /pub  {"topic": T, "data": D} with Basic auth; the user name is the publisher
//	GET  /sub  WebSocket; the client sends {"publisher": P, "topic": T} and receives each D
//
// Publisher P's topic T is the tern topic isimud/{P}/{T}, each part escaped into one topic level
// (see IsimudTopic), so isimud publishes reach MQTT and HTTP subscribers and the other way round.
// Unlike isimud, delivery starts right after the first subscribe frame, each subscriber has its
// own bounded buffer, and who may publish or subscribe is tern's grants.

import (
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"time"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/httpauth"
	"github.com/ternmq/tern/internal/message"
	"github.com/ternmq/tern/internal/topic"
	"github.com/ternmq/tern/internal/wsconn"
)

// isimudMaxBody is axum's default body limit, which isimud kept.
const isimudMaxBody = 2 << 20

// isimudSendTimeout is how long one frame to a subscriber may take, as in isimud.
const isimudSendTimeout = 5 * time.Second

// isimudSubscribeWait is how long a /sub connection may take to send its subscribe frame.
const isimudSubscribeWait = 10 * time.Second

// IsimudTopic maps an isimud publisher and topic to a tern topic. '%', '/', '+', '#' and NUL are
// percent-encoded, so each part is exactly one topic level and no two pairs share a topic; an
// empty part becomes "%00" (a level cannot be empty in a way that round-trips otherwise).
func IsimudTopic(publisher, topicName string) string {
	return "isimud/" + topic.EscapeLevel(publisher) + "/" + topic.EscapeLevel(topicName)
}

// isimudError writes isimud's error body.
func isimudError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(`{"error":"` + msg + `"}`))
}

// isimudRefuse maps an authentication failure to isimud's answers.
func isimudRefuse(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, auth.ErrBadCredentials), errors.Is(err, auth.ErrBackoff):
		isimudError(w, http.StatusUnauthorized, "Wrong credentials")
	case errors.Is(err, auth.ErrNotAuthorized):
		isimudError(w, http.StatusBadRequest, "Missing credentials")
	default:
		isimudError(w, http.StatusInternalServerError, "Internal server error")
	}
}

// RegisterIsimud adds isimud's routes.
func (s *Server) RegisterIsimud(mux *http.ServeMux, identify httpauth.Identify) {
	v := *s
	v.identify = identify
	mux.HandleFunc("POST /pub", v.isimudPub)
	mux.HandleFunc("GET /sub", v.isimudSub)
}

// isimudPub checks the body first and the credentials second, in isimud's order: 415, 400 or
// 422 for the body; 400 "Missing credentials" without Basic; 401 for wrong ones; 200 empty.
func (s *Server) isimudPub(w http.ResponseWriter, r *http.Request) {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		isimudError(w, http.StatusUnsupportedMediaType, "Expected request with `Content-Type: application/json`")
		return
	}
	raw, err := readBody(w, r, isimudMaxBody)
	if err != nil {
		switch status, _ := bodyStatus(err); status {
		case http.StatusRequestEntityTooLarge:
			isimudError(w, status, "Payload too large")
		case http.StatusRequestTimeout:
			isimudError(w, status, "Request timeout")
		default:
			isimudError(w, status, "Failed to read the body")
		}
		return
	}
	var body struct {
		Topic *string `json:"topic"`
		Data  *string `json:"data"`
	}
	if err := json.Unmarshal(raw, &body); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			isimudError(w, http.StatusUnprocessableEntity, "Failed to deserialize the JSON body: "+err.Error())
		} else {
			isimudError(w, http.StatusBadRequest, "Failed to parse the request body as JSON: "+err.Error())
		}
		return
	}
	if body.Topic == nil || body.Data == nil {
		isimudError(w, http.StatusUnprocessableEntity, "Failed to deserialize the JSON body: missing field `topic` or `data`")
		return
	}
	user, _, ok := r.BasicAuth()
	if !ok {
		isimudError(w, http.StatusBadRequest, "Missing credentials")
		return
	}
	p, err := s.b.Authenticate(r.Context(), httpauth.Credentials(r, s.identify, "http"))
	if err != nil {
		isimudRefuse(w, err)
		return
	}
	m := &message.Message{Topic: IsimudTopic(user, *body.Topic), Payload: []byte(*body.Data)}
	m.Props.ContentType = "text/plain; charset=utf-8"
	if _, err := s.b.PublishAs(p, auth.Publish, m); err != nil {
		if errors.Is(err, broker.ErrNotAuthorized) {
			isimudError(w, http.StatusForbidden, "Forbidden")
			return
		}
		fail(w, err)
		return
	}
	s.stats.Published.Add(1)
	w.WriteHeader(http.StatusOK)
}

// isimudSub authenticates before the upgrade (a Bearer token, checked by tern's auth: its tokens
// or the auth URL in bearer style), then waits for the subscribe frame and sends each message's
// data as a text frame. Any further frame from the client ends the connection, as in isimud.
// Basic credentials and a client certificate count only from a trusted origin (TrustedOrigin):
// a page from another one needs a token (or anonymous access).
func (s *Server) isimudSub(w http.ResponseWriter, r *http.Request) {
	p, err := s.b.Authenticate(r.Context(), s.wsCredentials(r))
	if err != nil {
		isimudRefuse(w, err)
		return
	}
	// Any origin may connect; what it may authenticate with was decided above.
	ws, err := wsconn.Upgrade(w, r, wsconn.Options{AnyOrigin: true})
	if err != nil {
		return
	}
	l := s.newWSLoop(ws, r, 64<<10)
	var sub struct {
		Publisher *string `json:"publisher"`
		Topic     *string `json:"topic"`
	}
	// isimud waits for the subscribe frame without a time limit; tern gives it
	// isimudSubscribeWait, so that a connection that never subscribes does not hold a goroutine.
	text, data, err := l.readOne(time.Now().Add(isimudSubscribeWait))
	if err != nil {
		l.refuse(wsconn.StatusPolicyViolation, "no subscribe frame in time")
		return
	}
	if !text || json.Unmarshal(data, &sub) != nil || sub.Publisher == nil || sub.Topic == nil {
		l.refuse(wsconn.StatusUnsupportedData, "expected {\"publisher\": ..., \"topic\": ...}")
		return
	}
	k := newSink(s.cfg.StreamBuffer)
	// Deliveries are written by a goroutine that runs only while some wait (wsWriter); the
	// client's end is read by one that runs only when it comes (wsLoop).
	wr := startWSWriter(s.base, l, k, isimudSendTimeout, func(b []byte, d delivery) []byte { return append(b, d.msg.Payload...) })
	c, _, err := s.b.Connect(r.Context(), broker.ConnectRequest{Principal: p, CleanStart: true, Sink: k, Face: "websocket"})
	if err != nil {
		wr.stop()
		l.refuse(wsconn.StatusTryAgainLater, err.Error())
		return
	}
	wr.connected(c)
	res := c.Subscribe([]broker.SubscribeRequest{{Filter: IsimudTopic(*sub.Publisher, *sub.Topic)}})
	if res[0].Err != nil {
		wr.stop()
		c.Disconnect(broker.DisconnectRequest{Graceful: true})
		l.refuse(wsconn.StatusPolicyViolation, res[0].Err.Error())
		return
	}
	s.stats.Streams.Add(1)
	c.Start()
	// After the subscribe frame the client has nothing more to say: whatever it sends ends it.
	l.start(func(bool, []byte) bool { l.close(wsconn.StatusNormal, ""); return false }, func() {
		wr.stop()
		c.Disconnect(broker.DisconnectRequest{Graceful: true})
		s.stats.Streams.Add(-1)
	})
}
