package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/eclipse/paho.golang/paho"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/config"
)

type wsJSON struct {
	t *testing.T
	c *websocket.Conn
}

func dialJSONWS(t *testing.T, url string) *wsJSON {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, url, nil)
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return &wsJSON{t: t, c: c}
}

func (w *wsJSON) send(v string) {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := w.c.Write(ctx, websocket.MessageText, []byte(v)); err != nil {
		w.t.Fatal(err)
	}
}

func (w *wsJSON) recv() map[string]any {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	_, data, err := w.c.Read(ctx)
	if err != nil {
		w.t.Fatalf("read: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		w.t.Fatalf("frame %s: %v", data, err)
	}
	return m
}

// TestWebSocketJSONAcrossFaces: a browser-style WebSocket client authenticates in its first
// frame, subscribes, gets an MQTT publish (QoS 1, acknowledged), publishes to an MQTT subscriber,
// and is refused outside its grants without losing the connection.
func TestWebSocketJSONAcrossFaces(t *testing.T) {
	srv := startServer(t)
	if err := srv.Auth.PutUser(auth.User{Name: "alice", Grants: grants(t, "publish:chat/#", "subscribe:chat/#")}, []byte("pw")); err != nil {
		t.Fatal(err)
	}
	url := "ws://" + srv.Addr("http") + "/v1/ws"
	bad := dialJSONWS(t, url)
	bad.send(`{"op":"sub","filter":"chat/#"}`)
	if m := bad.recv(); m["op"] != "error" || m["code"] != "unauthorized" {
		t.Fatalf("no auth frame: %v", m)
	}

	ws := dialJSONWS(t, url)
	ws.send(`{"op":"auth","username":"alice","password":"pw","id":1}`)
	if m := ws.recv(); m["op"] != "authed" {
		t.Fatalf("auth: %v", m)
	}
	ws.send(`{"op":"sub","filter":"chat/#","qos":1,"id":2}`)
	if m := ws.recv(); m["op"] != "suback" || m["qos"] != 1.0 || m["id"] != 2.0 {
		t.Fatalf("sub: %v", m)
	}
	ws.send(`{"op":"sub","filter":"secret/#","id":3}`)
	if m := ws.recv(); m["op"] != "error" || m["code"] != "not_authorized" || m["id"] != 3.0 {
		t.Fatalf("sub outside grants: %v", m)
	}

	mq := loginV5(t, srv, "mq", "alice", "pw")
	mq.sub("chat/#", 1)
	mq.pub("chat/room", 1, "hi from mqtt")
	m := ws.recv()
	msg, _ := m["message"].(map[string]any)
	if m["op"] != "msg" || msg["payload"] != "hi from mqtt" || m["ack"] == nil {
		t.Fatalf("delivery: %v", m)
	}
	ws.send(`{"op":"ack","ack":` + jsonNumber(m["ack"]) + `}`)
	mq.expect("chat/room", "hi from mqtt")

	ws.send(`{"op":"pub","topic":"chat/room","payload":"hi from ws","qos":1,"id":4}`)
	var puback, echo map[string]any
	for puback == nil || echo == nil { // the puback and our own message may come in either order
		switch m := ws.recv(); m["op"] {
		case "puback":
			puback = m
		case "msg":
			echo = m
		default:
			t.Fatalf("unexpected %v", m)
		}
	}
	if puback["id"] != 4.0 || puback["message_id"] == "" {
		t.Fatalf("puback %v", puback)
	}
	if got := mq.expect("chat/room", "hi from ws"); got.Properties.User.Get("tern-sender") != "alice" {
		t.Fatalf("sender %q", got.Properties.User.Get("tern-sender"))
	}
	ws.send(`{"op":"pub","topic":"other","payload":"x","id":5}`)
	if m := ws.recv(); m["op"] != "error" || m["code"] != "not_authorized" {
		t.Fatalf("publish outside grants: %v", m)
	}
}

func jsonNumber(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestWebSocketErrorCodes: the WebSocket API names refusals with the same codes as the HTTP
// routes (payload_too_large and rate_limited used to come back as a bare "error").
func TestWebSocketErrorCodes(t *testing.T) {
	srv := startServer(t, func(c *config.Config) {
		c.Limits.MaxPayload = 4
		c.Limits.PublishRate, c.Limits.PublishBurst, c.Limits.MaxThrottle = 1, 1, time.Millisecond
	})
	ws := dialJSONWS(t, "ws://"+srv.Addr("http")+"/v1/ws")
	ws.send(`{"op":"pub","topic":"t","payload":"too long","id":1}`)
	if m := ws.recv(); m["op"] != "error" || m["code"] != "payload_too_large" {
		t.Fatalf("an oversized payload: %v", m)
	}
	var got []any
	for i := 2; i < 6; i++ {
		ws.send(fmt.Sprintf(`{"op":"pub","topic":"t","payload":"x","qos":1,"id":%d}`, i))
		m := ws.recv()
		got = append(got, m["code"])
		if m["code"] == "rate_limited" {
			return
		}
	}
	t.Fatalf("publishing past the rate: codes %v, want rate_limited", got)
}

// TestWebSocketSubackBeforeRetained: the suback of a subscription comes before its retained
// messages (they used to come first).
func TestWebSocketSubackBeforeRetained(t *testing.T) {
	srv := startServer(t)
	pub := v5(t, srv, uniqueID("ret"))
	pub.publish(&paho.Publish{Topic: "wsret/a", QoS: 1, Retain: true, Payload: []byte("kept")})
	ws := dialJSONWS(t, "ws://"+srv.Addr("http")+"/v1/ws")
	ws.send(`{"op":"sub","filter":"wsret/#","id":1}`)
	if m := ws.recv(); m["op"] != "suback" {
		t.Fatalf("first frame %v, want the suback", m)
	}
	m := ws.recv()
	msg, _ := m["message"].(map[string]any)
	if m["op"] != "msg" || msg["payload"] != "kept" || msg["retain"] != true {
		t.Fatalf("second frame %v, want the retained message", m)
	}
}

// A /v1/ws connection whose session is taken over is closed as going away, with the core's
// reason; the one that took it receives from then on.
func TestWebSocketSessionTakenOver(t *testing.T) {
	srv := startServer(t)
	url := "ws://" + srv.Addr("http") + "/v1/ws?session=" + uniqueID("ws-take")
	first := dialJSONWS(t, url)
	first.send(`{"op":"sub","filter":"wstake/#","qos":1}`)
	if m := first.recv(); m["op"] != "suback" {
		t.Fatalf("first: %v, want the suback", m)
	}
	second := dialJSONWS(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	_, _, err := first.c.Read(ctx)
	if websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Fatalf("the first connection ended with %v, want a going-away close", err)
	}
	pub := v5(t, srv, uniqueID("take-pub"))
	pub.publish(&paho.Publish{Topic: "wstake/x", QoS: 1, Payload: []byte("after")})
	m := second.recv()
	msg, _ := m["message"].(map[string]any)
	if m["op"] != "msg" || msg["payload"] != "after" {
		t.Fatalf("second: %v, want the message published after the takeover", m)
	}
}
