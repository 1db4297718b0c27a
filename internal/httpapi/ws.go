package httpapi

// GET /v1/ws: a WebSocket speaking JSON text frames, for browsers and scripts that want to
// publish and subscribe on one connection.
//
// Client to server, each with an optional "id" echoed in the answer:
//
//	{"op":"auth","username":"u","password":"p"} or {"op":"auth","token":"..."}   (the first frame,
//	                                              when the upgrade request carried no credentials
//	                                              and anonymous access is off; -> {"op":"authed"})
//
// Basic credentials and a client certificate on the upgrade request count only from the
// server's own origin, from one in http.websocket_origins, or without an Origin (not a browser):
// a page elsewhere must send the auth frame (see TrustedOrigin).
//	{"op":"sub","filter":"a/#","qos":1}          -> {"op":"suback","filter":"a/#","qos":1}
//	{"op":"unsub","filter":"a/#"}                -> {"op":"unsuback","filter":"a/#"}
//	{"op":"pub","topic":"a/b","payload":"text","qos":1,"retain":false}
//	                                             -> {"op":"puback","message_id":"..."} (with an id or qos > 0)
//	{"op":"ack","ack":7}                         acknowledges a QoS 1 delivery
//
// Server to client: {"op":"msg","ack":7,"message":{...Event}} ("ack" only for QoS 1), and
// {"op":"error","code":"...","message":"..."} for a refused operation (the connection stays).

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/httpauth"
	"github.com/ternmq/tern/internal/message"
	"github.com/ternmq/tern/internal/wsconn"
)

// wsRequest is a client frame.
type wsRequest struct {
	Op             string         `json:"op"`
	ID             any            `json:"id,omitempty"`
	Username       string         `json:"username,omitempty"`
	Password       string         `json:"password,omitempty"`
	Token          string         `json:"token,omitempty"`
	Filter         string         `json:"filter,omitempty"`
	Topic          string         `json:"topic,omitempty"`
	Payload        *string        `json:"payload,omitempty"`
	PayloadBase64  string         `json:"payload_base64,omitempty"`
	QoS            byte           `json:"qos,omitempty"`
	Retain         bool           `json:"retain,omitempty"`
	ContentType    string         `json:"content_type,omitempty"`
	Expiry         uint32         `json:"expiry,omitempty"`
	UserProperties []UserProperty `json:"user_properties,omitempty"`
	Ack            uint16         `json:"ack,omitempty"`
}

// wsReply is a server frame other than a message.
type wsReply struct {
	Op        string `json:"op"`
	ID        any    `json:"id,omitempty"`
	Filter    string `json:"filter,omitempty"`
	QoS       *byte  `json:"qos,omitempty"`
	MessageID string `json:"message_id,omitempty"`
	Code      string `json:"code,omitempty"`
	Message   string `json:"message,omitempty"`
	// after runs once the reply is written: a subscription's retained messages follow its suback.
	after func()
}

const wsWriteTimeout = 10 * time.Second

// websocketAPI serves GET /v1/ws.
func (s *Server) websocketAPI(w http.ResponseWriter, r *http.Request) {
	// A page from an untrusted origin gets no identity from the browser's own credentials: it
	// authenticates in its first frame (or is anonymous, where that is allowed).
	creds := s.wsCredentials(r)
	var p *auth.Principal
	if creds.Username != "" || creds.Token != "" || creds.CertIdentity != "" {
		// Credentials on the upgrade request are checked before it, so a refusal is a plain 401.
		var err error
		if p, err = s.b.Authenticate(r.Context(), creds); err != nil {
			httpauth.Refuse(w, err)
			return
		}
	}
	// Any origin may connect; what it may use to authenticate was decided above.
	ws, err := wsconn.Upgrade(w, r, wsconn.Options{AnyOrigin: true})
	if err != nil {
		return
	}
	l := s.newWSLoop(ws, r, int(s.cfg.MaxBody)+4096)
	send := func(v any) error {
		b, _ := json.Marshal(v)
		return ws.WriteMessage(true, b, wsWriteTimeout)
	}
	ctx := r.Context()
	if p == nil {
		if p = s.wsAuth(ctx, l, creds, send); p == nil {
			return
		}
	}
	k := newFrameSink(s.cfg.StreamBuffer)
	k.remote = r.RemoteAddr
	req := broker.ConnectRequest{Principal: p, CleanStart: true, Sink: k, ReceiveMax: uint16(min(s.cfg.StreamBuffer, 65535)),
		Announce: true, Face: "websocket", RemoteAddr: r.RemoteAddr}
	if id := r.URL.Query().Get("session"); id != "" {
		req.ClientID, req.CleanStart, req.Expiry = id, false, 300
	}
	// Deliveries are written by a goroutine that runs only while some wait (wsWriter), and the
	// client's frames are read by one that runs only while it sends (wsLoop).
	w2 := startWSWriter(s.base, l, k, wsWriteTimeout, appendWSMessage)
	c, _, err := s.b.Connect(ctx, req)
	if err != nil {
		w2.stop()
		l.refuse(wsconn.StatusPolicyViolation, err.Error())
		return
	}
	w2.connected(c)
	c.Start()
	s.stats.Streams.Add(1)
	l.start(func(text bool, data []byte) bool {
		var q wsRequest
		if !text || json.Unmarshal(data, &q) != nil {
			l.close(wsconn.StatusUnsupportedData, "frames are JSON text")
			return false
		}
		if reply := s.wsHandle(c, p, &q); reply != nil {
			if send(reply) != nil {
				l.kill()
				return false
			}
			if r, ok := reply.(wsReply); ok && r.after != nil {
				r.after()
			}
		}
		return true
	}, func() {
		w2.stop()
		c.Disconnect(broker.DisconnectRequest{Graceful: true})
		s.stats.Streams.Add(-1)
	})
}

// appendWSMessage is a delivery as /v1/ws sends it.
func appendWSMessage(frame []byte, d delivery) []byte {
	frame = append(frame, `{"op":"msg"`...)
	if d.pid != 0 {
		frame = append(frame, `,"ack":`...)
		frame = strconv.AppendUint(frame, uint64(d.pid), 10)
	}
	frame = append(frame, `,"message":`...)
	frame = append(frame, d.frame...)
	return append(frame, '}')
}

// wsAuth authenticates a connection whose upgrade request carried no credentials: anonymously
// if that is allowed, or else by a first frame {"op":"auth", ...} within 10 s. It returns nil
// when refused, with the connection refused (the client was told why).
func (s *Server) wsAuth(ctx context.Context, l *wsLoop, creds auth.Credentials, send func(any) error) *auth.Principal {
	if p, err := s.b.Authenticate(ctx, creds); err == nil {
		return p
	}
	_, data, err := l.readOne(time.Now().Add(10 * time.Second))
	if err != nil {
		l.refuse(wsconn.StatusPolicyViolation, "no auth frame within 10 s")
		return nil
	}
	var q wsRequest
	if json.Unmarshal(data, &q) != nil || q.Op != "auth" {
		_ = send(wsReply{Op: "error", Code: "unauthorized", Message: `send {"op":"auth", ...} first`})
		l.refuse(wsconn.StatusPolicyViolation, "unauthorized")
		return nil
	}
	creds.Username, creds.Password, creds.Token = q.Username, []byte(q.Password), q.Token
	p, err := s.b.Authenticate(ctx, creds)
	if err != nil {
		_, code := httpauth.Status(err)
		_ = send(wsReply{Op: "error", ID: q.ID, Code: code, Message: err.Error()})
		l.refuse(wsconn.StatusPolicyViolation, code)
		return nil
	}
	_ = send(wsReply{Op: "authed", ID: q.ID})
	return p
}

// wsHandle runs one client operation and returns the answer to send, if any.
func (s *Server) wsHandle(c *broker.Client, p *auth.Principal, q *wsRequest) any {
	fail := func(err error) any {
		_, code := errorCode(err)
		return wsReply{Op: "error", ID: q.ID, Code: code, Message: err.Error()}
	}
	switch q.Op {
	case "sub":
		res := c.Subscribe([]broker.SubscribeRequest{{Filter: q.Filter, QoS: min(q.QoS, 1)}})
		if res[0].Err != nil {
			return fail(res[0].Err)
		}
		qos := res[0].QoS
		return wsReply{Op: "suback", ID: q.ID, Filter: q.Filter, QoS: &qos, after: func() { c.SendRetained(res) }}
	case "unsub":
		c.Unsubscribe([]string{q.Filter})
		return wsReply{Op: "unsuback", ID: q.ID, Filter: q.Filter}
	case "ack":
		c.Acked(q.Ack)
		return nil
	case "auth":
		return wsReply{Op: "error", ID: q.ID, Code: "bad_op", Message: "already authenticated: auth goes on the upgrade request or in the first frame"}
	case "pub":
		m := &message.Message{Topic: q.Topic, QoS: min(q.QoS, 1), Retain: q.Retain}
		switch {
		case q.Payload != nil:
			m.Payload = []byte(*q.Payload)
		case q.PayloadBase64 != "":
			b, err := base64.StdEncoding.DecodeString(q.PayloadBase64)
			if err != nil {
				return wsReply{Op: "error", ID: q.ID, Code: "bad_payload", Message: "payload_base64: " + err.Error()}
			}
			m.Payload = b
		}
		m.Props.ContentType = q.ContentType
		if q.Expiry > 0 {
			m.ExpiryInterval = q.Expiry
		}
		for _, u := range q.UserProperties {
			m.Props.User = append(m.Props.User, message.UserProperty{Key: u.Key, Value: u.Value})
		}
		res, err := c.Publish(m)
		if err == nil && res.Durable != nil {
			err = res.Durable.Wait()
		}
		if err != nil {
			return fail(err)
		}
		if q.ID == nil && m.QoS == 0 {
			return nil
		}
		return wsReply{Op: "puback", ID: q.ID, MessageID: strconv.FormatUint(m.ID, 10)}
	default:
		return wsReply{Op: "error", ID: q.ID, Code: "bad_op", Message: "unknown op " + strconv.Quote(q.Op)}
	}
}
