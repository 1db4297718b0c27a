package httpapi

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/httpauth"
	"github.com/ternmq/tern/internal/message"
)

// PublishResult is the answer to a publish.
type PublishResult struct {
	ID      string `json:"id"`
	Topic   string `json:"topic"`
	Matched int    `json:"matched"`
}

// readMessage builds a message from the request: the body is the payload; qos, retain, expiry
// (seconds), content_type, response_topic, correlation_data and prop=key=value (repeatable) come
// from the query. The Content-Type header is the content type unless it is curl's form default.
func (s *Server) readMessage(w http.ResponseWriter, r *http.Request, topicName string) (*message.Message, bool) {
	body, err := readBody(w, r, s.cfg.MaxBody)
	if err != nil {
		bodyFailed(w, err, s.cfg.MaxBody)
		return nil, false
	}
	m := &message.Message{Topic: topicName, Payload: body}
	if r.URL.RawQuery == "" {
		// The common case: no parameters to parse.
		m.Props.ContentType = payloadContentType(r)
		return m, true
	}
	q := r.URL.Query()
	bad := func(msg string) (*message.Message, bool) {
		httpauth.WriteError(w, http.StatusBadRequest, "bad_parameter", msg)
		return nil, false
	}
	if v := q.Get("qos"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 2 {
			return bad("qos must be 0, 1 or 2")
		}
		m.QoS = byte(n)
	}
	if v := q.Get("retain"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return bad("retain must be true or false")
		}
		m.Retain = b
	}
	if v := q.Get("expiry"); v != "" {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || n == 0 {
			return bad("expiry must be a positive number of seconds")
		}
		m.ExpiryInterval = uint32(n)
	}
	m.Props.ContentType = q.Get("content_type")
	if m.Props.ContentType == "" {
		m.Props.ContentType = payloadContentType(r)
	}
	m.Props.ResponseTopic = q.Get("response_topic")
	if v := q.Get("correlation_data"); v != "" {
		m.Props.CorrelationData = []byte(v)
	}
	for _, kv := range q["prop"] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return bad("prop must be key=value")
		}
		m.Props.User = append(m.Props.User, message.UserProperty{Key: k, Value: v})
	}
	return m, true
}

// payloadContentType is the request's Content-Type, unless it is the form type curl -d sends by
// default, which says nothing about the payload.
func payloadContentType(r *http.Request) string {
	ct := r.Header.Get("Content-Type")
	if ct == "" || !strings.HasPrefix(strings.ToLower(ct), "application/x-www-form-urlencoded") {
		return ct // the common case, without parsing
	}
	if mt, _, _ := mime.ParseMediaType(ct); mt == "application/x-www-form-urlencoded" {
		return ""
	}
	return ct
}

// publish answers POST /v1/pub/{topic...}. A QoS 1 or 2 publish is answered once every durable
// copy is on disk.
func (s *Server) publish(w http.ResponseWriter, r *http.Request) {
	p := s.principal(w, r)
	if p == nil {
		return
	}
	m, ok := s.readMessage(w, r, r.PathValue("topic"))
	if !ok {
		return
	}
	res, err := s.b.PublishAs(p, auth.Publish, m)
	if err == nil && res.Durable != nil {
		err = res.Durable.Wait()
	}
	if err != nil {
		fail(w, err)
		return
	}
	s.stats.Published.Add(1)
	// Written by hand: this is the hot path of HTTP publishing, and the fields need no escaping
	// except the topic.
	b := make([]byte, 0, 64+len(m.Topic))
	b = append(b, `{"id":"`...)
	b = strconv.AppendUint(b, m.ID, 10)
	b = append(b, `","topic":`...)
	b = appendJSONString(b, m.Topic)
	b = append(b, `,"matched":`...)
	b = strconv.AppendInt(b, int64(res.Matched), 10)
	b = append(b, "}\n"...)
	h := w.Header()
	h["Content-Type"] = jsonContentType
	_, _ = w.Write(b)
}

var jsonContentType = []string{"application/json"}

// appendJSONString appends s as a JSON string; plain ASCII is copied as is.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// request answers POST /v1/req/{topic...}: it publishes the body with a response topic and waits
// for the first reply (timeout=10s, at most MaxRequestTimeout). Nobody subscribed: 503 at once.
// The reply's payload is the answer's body, its content type the Content-Type.
func (s *Server) request(w http.ResponseWriter, r *http.Request) {
	s.roundTrip(w, r, r.PathValue("topic"))
}

// call answers POST /v1/call/{namespace}/{procedure}: a request to a procedure served by any
// face. The reply's status (tern-status) comes back as X-Tern-Status; a call the broker failed
// (the service went away) is 502 "call_failed"; nobody serving it, 503 "no_responders" at once.
func (s *Server) call(w http.ResponseWriter, r *http.Request) {
	s.roundTrip(w, r, broker.ProcedureTopic(r.PathValue("ns"), r.PathValue("proc")))
}

// roundTrip publishes the request body to topicName with a response topic and waits for the
// reply (see request and call).
func (s *Server) roundTrip(w http.ResponseWriter, r *http.Request, topicName string) {
	p := s.principal(w, r)
	if p == nil {
		return
	}
	timeout := s.cfg.RequestTimeout
	if v := r.URL.Query().Get("timeout"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 || d > s.cfg.MaxRequestTimeout {
			httpauth.WriteError(w, http.StatusBadRequest, "bad_parameter", fmt.Sprintf("timeout must be a duration up to %s", s.cfg.MaxRequestTimeout))
			return
		}
		timeout = d
	}
	m, ok := s.readMessage(w, r, topicName)
	if !ok {
		return
	}
	s.stats.Requests.Add(1)
	// An ephemeral session receives the reply below its own response prefix.
	var corr [12]byte
	_, _ = rand.Read(corr[:])
	k := newSink(4)
	c, res, err := s.b.Connect(r.Context(), broker.ConnectRequest{Principal: p, CleanStart: true, Sink: k, Face: "http"})
	if err != nil {
		fail(w, err)
		return
	}
	defer c.Disconnect(broker.DisconnectRequest{Graceful: true})
	replyTopic := broker.ResponsePrefix(res.ClientID) + "/reply"
	if sr := c.Subscribe([]broker.SubscribeRequest{{Filter: replyTopic, QoS: 1}}); sr[0].Err != nil {
		fail(w, sr[0].Err)
		return
	}
	c.Start()
	m.Props.ResponseTopic = replyTopic
	m.Props.CorrelationData = []byte(hex.EncodeToString(corr[:]))
	pr, err := c.Request(m)
	if errors.Is(err, broker.ErrNoResponders) {
		pr.Matched, err = 0, nil
	}
	if err != nil {
		fail(w, err)
		return
	}
	if pr.Matched == 0 {
		httpauth.WriteError(w, http.StatusServiceUnavailable, "no_responders", "nobody is subscribed to "+m.Topic)
		return
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case <-k.ready:
			for _, d := range k.take(nil, 4) {
				c.Acked(d.pid)
				if string(d.msg.Props.CorrelationData) != string(m.Props.CorrelationData) {
					continue // a stray reply to this prefix
				}
				if why := d.msg.Props.UserValue(broker.ErrorProperty); why != "" {
					httpauth.WriteError(w, http.StatusBadGateway, "call_failed", why)
					return
				}
				writeReply(w, d.msg)
				return
			}
			k.drained(c)
		case <-timer.C:
			httpauth.WriteError(w, http.StatusGatewayTimeout, "timeout", "no reply within "+timeout.String())
			return
		case <-k.closed:
			fail(w, k.reason())
			return
		case <-r.Context().Done():
			ended(w, r)
			return
		}
	}
}

func writeReply(w http.ResponseWriter, m *message.Message) {
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	if m.Props.ContentType != "" {
		h.Set("Content-Type", m.Props.ContentType)
	}
	h.Set("X-Tern-Message-Id", strconv.FormatUint(m.ID, 10))
	h.Set("X-Tern-Topic", m.Topic)
	if st := m.Props.UserValue(broker.StatusProperty); st != "" {
		h.Set("X-Tern-Status", st)
	}
	if m.Sender != "" {
		h.Set("X-Tern-Sender", m.Sender)
	}
	for _, u := range m.Props.User {
		h.Add("X-Tern-Property", u.Key+"="+u.Value)
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(m.Payload)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
