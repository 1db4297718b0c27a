package server_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/coder/websocket"

	"github.com/ternmq/tern/internal/config"
	"github.com/ternmq/tern/internal/mqtt/packet"
)

// TestWebSocketFraming: MQTT over WebSocket is a byte stream: a packet split over several
// WebSocket messages, and several packets in one message, are both understood.
func TestWebSocketFraming(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	r := newRaw(t, dial(t, srv, wsTransport), packet.V5)
	conn := mustAppend(connectPacket(uniqueID("frames")))
	// CONNECT in three messages, the last one starting SUBSCRIBE and PUBLISH.
	sub, _ := (&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: []byte("wsf/t"), QoS: 1}}}).Append(nil, packet.V5)
	pub, _ := (&packet.Publish{Topic: []byte("wsf/t"), QoS: 1, PacketID: 2, Payload: []byte("framed")}).Append(nil, packet.V5)
	rest := append(append(append([]byte(nil), conn[4:]...), sub...), pub[:3]...)
	r.write(conn[:1])
	r.write(conn[1:4])
	r.write(rest)
	r.write(pub[3:])
	if ack := expectConnack(r); ack.Reason != packet.Success {
		t.Fatalf("CONNACK %v", ack.Reason)
	}
	expectPacket[*packet.Suback](r)
	// The PUBACK and the delivery may come in either order.
	var gotAck, gotMsg bool
	for !gotAck || !gotMsg {
		switch p := r.next().(type) {
		case *packet.Puback:
			gotAck = p.PacketID == 2
		case *packet.Publish:
			gotMsg = string(p.Payload) == "framed"
			r.send(&packet.Puback{PacketID: p.PacketID})
		default:
			t.Fatalf("unexpected %s", packet.TypeName(p.Type()))
		}
	}
}

// TestWebSocketTextFrameClosed: MQTT over WebSocket must use binary messages; a text message
// closes the connection.
func TestWebSocketTextFrameClosed(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws://"+srv.Addr("http")+"/mqtt", &websocket.DialOptions{Subprotocols: []string{"mqtt"}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	if err := ws.Write(ctx, websocket.MessageText, mustAppend(connectPacket(uniqueID("text")))); err != nil {
		t.Fatal(err)
	}
	typ, data, err := ws.Read(ctx)
	if err == nil {
		t.Fatalf("server answered a text message with a %v message % x", typ, data)
	}
	if ctx.Err() != nil {
		t.Fatal("connection not closed after a text message")
	}
	eventually(t, waitTimeout, "the connection to close", func() bool { return srv.MQTT.Stats().Open.Load() == 0 })
}

// TestWebSocketOrigins: with mqtt.websocket_origins set, a browser from another origin is refused
// and one from a listed origin is served.
func TestWebSocketOrigins(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *config.Config) { c.MQTT.WebSocketOrigins = []string{"app.example.com"} })
	try := func(origin string) error {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		ws, resp, err := websocket.Dial(ctx, "ws://"+srv.Addr("http")+"/mqtt", &websocket.DialOptions{
			Subprotocols: []string{"mqtt"},
			HTTPHeader:   http.Header{"Origin": []string{origin}},
		})
		if resp != nil && resp.Body != nil {
			_ = resp.Body.Close()
		}
		if err == nil {
			ws.CloseNow()
		}
		return err
	}
	if err := try("https://evil.example.net"); err == nil {
		t.Error("WebSocket from an unlisted origin accepted")
	}
	if err := try("https://app.example.com"); err != nil {
		t.Errorf("WebSocket from a listed origin refused: %v", err)
	}
	// Non-browser clients send no Origin and are served.
	c := connectV3(t, "ws://"+srv.Addr("http")+"/mqtt", uniqueID("noorigin"))
	c.sub("o/t", 0)
	c.pub("o/t", 0, false, "x")
	c.expect("o/t", "x", 0)
}
