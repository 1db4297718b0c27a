package server_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/coder/websocket"

	"github.com/ternmq/tern/internal/config"
	"github.com/ternmq/tern/internal/mbus/mbustest"
)

// TestWebSocketsParkAndStayCounted: idle /v1/ws and /sub subscribers wait in the poller without
// a goroutine (tern_http_connections_parked) and are served from there: a publish reaches both,
// a /v1/ws operation is answered, and both park again. Every WebSocket endpoint counts its
// connection until it ends, not until its handler returns (which a parked connection's does
// at once): tern_websocket_clients stays at one per client, MQTT's and mBus's over WebSocket
// included (mBus's handler hands its connection to the face and returns), and falls to zero
// when the clients close.
func TestWebSocketsParkAndStayCounted(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	addr := srv.Addr("http")
	api := dialJSONWS(t, "ws://"+addr+"/v1/ws")
	api.send(`{"op":"sub","filter":"park/#"}`)
	if m := api.recv(); m["op"] != "suback" {
		t.Fatalf("sub: %v", m)
	}
	sub := dialIsimud(t, "ws://"+addr+"/sub", "")
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := sub.Write(ctx, websocket.MessageText, []byte(`{"publisher":"p","topic":"t"}`)); err != nil {
		t.Fatal(err)
	}
	mq := connectV3(t, "ws://"+addr+"/mqtt", uniqueID("wspark"))
	waitSubscriptions(t, srv, 2)
	// An mBus client over WebSocket: its handler hands the connection to the face and returns.
	mws, _, err := websocket.Dial(ctx, "ws://"+addr+"/mbus", &websocket.DialOptions{Subprotocols: []string{"mbus"}})
	if err != nil {
		t.Fatal(err)
	}
	mb := mbustest.New(t, websocket.NetConn(context.Background(), mws, websocket.MessageBinary))
	if m := mb.Create(map[string]any{"identifier": "org.example.parked"}); *m.Status != 0 {
		t.Fatalf("mBus create: %s", m.Payload)
	}
	// parked: the HTTP WebSockets parked; the MQTT one is parked when mqtt is 1.
	counted := func(api, isimud, mqtt, mbus, parked float64) func() bool {
		return func() bool {
			return metric(t, srv, `tern_websocket_clients{endpoint="api"}`) == api &&
				metric(t, srv, `tern_websocket_clients{endpoint="isimud"}`) == isimud &&
				metric(t, srv, `tern_websocket_clients{endpoint="mqtt"}`) == mqtt &&
				metric(t, srv, `tern_websocket_clients{endpoint="mbus"}`) == mbus &&
				metric(t, srv, "tern_mqtt_connections_parked") == mqtt &&
				metric(t, srv, "tern_http_connections_parked") == parked
		}
	}
	eventually(t, waitTimeout, "every WebSocket parked and counted", counted(1, 1, 1, 1, 2))

	for i := range 3 {
		if tok := mq.c.Publish("park/x", 0, false, fmt.Sprint("to api ", i)); tok.WaitTimeout(waitTimeout) && tok.Error() != nil {
			t.Fatal(tok.Error())
		}
		if m := api.recv(); m["op"] != "msg" || m["message"].(map[string]any)["payload"] != fmt.Sprint("to api ", i) {
			t.Fatalf("/v1/ws delivery %d: %v", i, m)
		}
		if tok := mq.c.Publish("isimud/p/t", 0, false, fmt.Sprint("to sub ", i)); tok.WaitTimeout(waitTimeout) && tok.Error() != nil {
			t.Fatal(tok.Error())
		}
		if _, data, err := sub.Read(ctx); err != nil || string(data) != fmt.Sprint("to sub ", i) {
			t.Fatalf("/sub delivery %d: %q %v", i, data, err)
		}
		// An operation wakes the parked reader; it answers and parks again.
		api.send(fmt.Sprintf(`{"op":"pub","id":%d,"topic":"elsewhere","payload":"x"}`, i))
		if m := api.recv(); m["op"] != "puback" || m["id"] != float64(i) {
			t.Fatalf("/v1/ws pub %d: %v", i, m)
		}
		eventually(t, waitTimeout, "both HTTP WebSockets parked again", func() bool {
			return metric(t, srv, "tern_http_connections_parked") == 2
		})
	}

	if err := api.c.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatalf("closing /v1/ws: %v", err)
	}
	if err := sub.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatalf("closing /sub: %v", err)
	}
	mq.c.Disconnect(100)
	_ = mb.NC.Close()
	eventually(t, waitTimeout, "no WebSocket counted or parked", counted(0, 0, 0, 0, 0))
	eventually(t, waitTimeout, "the sessions gone", func() bool { return srv.HTTP.Stats().Streams.Load() == 0 })
}

// TestJSONWebSocketParksOverTLS: over HTTPS (wss) the JSON WebSocket parks on the socket under
// crypto/tls and, woken, reads through it without waiting: messages spanning several TLS records
// arrive whole, answers and deliveries go out, and it parks again each time.
func TestJSONWebSocketParksOverTLS(t *testing.T) {
	t.Parallel()
	certFile, keyFile, pool := selfSignedCert(t, t.TempDir())
	srv := startServer(t, func(c *config.Config) {
		c.Listen.HTTPS = "127.0.0.1:0"
		c.TLS = config.TLS{CertFile: certFile, KeyFile: keyFile}
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsClientConfig(pool)}}
	c, _, err := websocket.Dial(ctx, "wss://"+srv.Addr("https")+"/v1/ws", &websocket.DialOptions{HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadLimit(1 << 20)
	t.Cleanup(func() { _ = c.CloseNow() })
	api := &wsJSON{t: t, c: c}
	api.send(`{"op":"sub","filter":"wss/#"}`)
	if m := api.recv(); m["op"] != "suback" {
		t.Fatalf("sub: %v", m)
	}
	parked := func() bool { return metric(t, srv, "tern_http_connections_parked") == 1 }
	eventually(t, waitTimeout, "the wss connection parked", parked)
	mq := v5(t, srv, uniqueID("wss-mq"))
	mq.sub("out/#", 0)
	big := strings.Repeat("b", 40000) // three TLS records
	for i := range 3 {
		mq.pub("wss/x", 0, fmt.Sprint("in ", i))
		if m := api.recv(); m["op"] != "msg" || m["message"].(map[string]any)["payload"] != fmt.Sprint("in ", i) {
			t.Fatalf("delivery %d: %v", i, m)
		}
		api.send(fmt.Sprintf(`{"op":"pub","id":%d,"topic":"out/%d","payload":%q}`, i, i, big))
		if m := api.recv(); m["op"] != "puback" || m["id"] != float64(i) {
			t.Fatalf("pub %d: %v", i, m)
		}
		mq.expect(fmt.Sprint("out/", i), big)
		eventually(t, waitTimeout, "the wss connection parked again", parked)
	}
}
