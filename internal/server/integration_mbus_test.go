package server_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/eclipse/paho.golang/paho"

	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/config"
	"github.com/ternmq/tern/internal/mbus"
	"github.com/ternmq/tern/internal/mbus/mbustest"
)

func mbusServer(t *testing.T) (srvAddr string, unixPath string, httpBase string, mq func(id string) *v5Client) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "mbus-server-uds:0") // mBus's "<path>:<port>" form, taken literally
	srv := startServer(t, func(c *config.Config) {
		c.Listen.MBus = "127.0.0.1:0"
		c.Listen.MBusUnix = sock
	})
	return srv.Addr("mbus"), sock, "http://" + srv.Addr("http"), func(id string) *v5Client { return v5(t, srv, id) }
}

// TestMBusEventsReachOtherFaces: an mBus event reaches an MQTT subscriber and an SSE subscriber
// on mbus/{source}/{event}, and an MQTT publish there reaches an mBus subscriber, over TCP and
// the Unix socket.
func TestMBusEventsReachOtherFaces(t *testing.T) {
	addr, sock, base, mq := mbusServer(t)
	pub := mbustest.Dial(t, "tcp", addr)
	pub.Create(map[string]any{"identifier": "org.example.sensor", "compressions": []string{"zlib"}})
	sub := mbustest.Dial(t, "unix", sock)
	sub.Create(map[string]any{"identifier": "org.example.display"})
	seq := sub.Command(mbus.ServerID, "command.subscribe", map[string]string{"source": mbus.SourceAll, "event": "temp"})
	if st, _ := sub.ResultOf(seq); st != 0 {
		t.Fatalf("subscribe: %d", st)
	}
	m := mq("mq")
	m.sub("mbus/+/temp", 0) // mbus/# would also carry org.mbus.server's events
	sse, _ := openStream(t, base+"/v1/sub/mbus/org.example.sensor/%2B", "text/event-stream")
	nextLine(t, sse, ": subscribed")

	seq = pub.NextSeq()
	pub.Write(mbus.Message{Type: mbus.TypeEvent, Destination: mbus.DestinationSubscribers, Identifier: "temp", Sequence: &seq, Payload: json.RawMessage(`{"c":21.5}`)})
	if got := m.expect("mbus/org.example.sensor/temp", `{"c":21.5}`); got.Properties.ContentType != "application/json" {
		t.Fatalf("content type %q", got.Properties.ContentType)
	}
	if data := nextLine(t, sse, "data: "); !strings.Contains(data, `"topic":"mbus/org.example.sensor/temp"`) {
		t.Fatalf("SSE %s", data)
	}
	ev := sub.Next(func(x mbus.Message) bool { return x.Type == mbus.TypeEvent && x.Identifier == "temp" })
	if ev.Source != "org.example.sensor" || string(ev.Payload) != `{"c":21.5}` {
		t.Fatalf("mBus subscriber got %+v", ev)
	}
	// The other way: MQTT publishes as source "org.example.mqtt".
	m.pub("mbus/org.example.mqtt/temp", 0, `{"c":3}`)
	ev = sub.Next(func(x mbus.Message) bool { return x.Type == mbus.TypeEvent && x.Source == "org.example.mqtt" })
	if string(ev.Payload) != `{"c":3}` {
		t.Fatalf("from MQTT: %s", ev.Payload)
	}
}

// TestCallsAcrossFaces: an HTTP call and an MQTT 5 request reach an mBus-registered command and
// get its result; unserved calls fail at once from every face; a callee that dies fails its
// pending calls at once.
func TestCallsAcrossFaces(t *testing.T) {
	addr, _, base, mq := mbusServer(t)
	callee := mbustest.Dial(t, "tcp", addr)
	callee.Create(map[string]any{"identifier": "calc"})
	seq := callee.Command(mbus.ServerID, "command.register", map[string]string{"command": "add"})
	if st, _ := callee.ResultOf(seq); st != 0 {
		t.Fatalf("register: %d", st)
	}
	serve := func(hang bool) {
		go func() {
			for c := range callee.In {
				if c.Type != mbus.TypeCommand {
					continue
				}
				if hang {
					return
				}
				callee.Command(mbus.ServerID, "command.result", map[string]any{
					"org.mbus.method.tag.destination": c.Source, "org.mbus.method.tag.identifier": c.Identifier,
					"org.mbus.method.tag.sequence": *c.Sequence, "org.mbus.method.tag.status": 7,
					"org.mbus.method.tag.payload": map[string]string{"echo": string(c.Payload)}})
			}
		}()
	}
	serve(false)

	resp, body := httpDo(t, "POST", base+"/v1/call/calc/add?timeout=5s", `{"a":1}`)
	if resp.StatusCode != 200 || resp.Header.Get("X-Tern-Status") != "7" || !strings.Contains(body, `"echo"`) {
		t.Fatalf("HTTP call: %d %s status %q", resp.StatusCode, body, resp.Header.Get("X-Tern-Status"))
	}

	caller := mq("mq-caller")
	caller.sub(broker.ResponsePrefix("mq-caller")+"/#", 1)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, err := caller.c.Publish(ctx, &paho.Publish{Topic: "$rpc/calc/add", QoS: 1, Payload: []byte(`{"b":2}`),
		Properties: &paho.PublishProperties{ResponseTopic: broker.ResponsePrefix("mq-caller") + "/r", CorrelationData: []byte("k1")}}); err != nil {
		t.Fatal(err)
	}
	if r := caller.next(); string(r.Properties.CorrelationData) != "k1" || r.Properties.User.Get(broker.StatusProperty) != "7" {
		t.Fatalf("MQTT 5 request: %+v", r.Properties)
	}

	// Unserved: at once from HTTP and mBus.
	start := time.Now()
	if resp, _ := httpDo(t, "POST", base+"/v1/call/calc/mul?timeout=30s", "{}"); resp.StatusCode != http.StatusServiceUnavailable || time.Since(start) > 5*time.Second {
		t.Fatalf("HTTP unserved: %d", resp.StatusCode)
	}
	other := mbustest.Dial(t, "tcp", addr)
	other.Create(map[string]any{"identifier": "other"})
	seq = other.Command("calc", "mul", map[string]any{})
	if st, _ := other.ResultOf(seq); st != -1 {
		t.Fatalf("mBus unserved: %d", st)
	}
}

// TestMBusCalleeDeathFailsCalls: a pending HTTP call fails at once when the mBus callee goes away.
func TestMBusCalleeDeathFailsCalls(t *testing.T) {
	addr, _, base, _ := mbusServer(t)
	callee := mbustest.Dial(t, "tcp", addr)
	callee.Create(map[string]any{"identifier": "slow"})
	seq := callee.Command(mbus.ServerID, "command.register", map[string]string{"command": "wait"})
	callee.ResultOf(seq)
	done := make(chan int, 1)
	go func() {
		r, _ := httpDo(t, "POST", base+"/v1/call/slow/wait?timeout=30s", "{}")
		done <- r.StatusCode
	}()
	callee.Next(func(m mbus.Message) bool { return m.Type == mbus.TypeCommand })
	start := time.Now()
	callee.NC.Close()
	select {
	case st := <-done:
		if st != http.StatusBadGateway || time.Since(start) > 5*time.Second {
			t.Fatalf("pending call after the callee died: %d after %v", st, time.Since(start))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the pending call did not fail")
	}
}

// TestMBusOverWebSocketAndTLS: mBus over WebSocket (subprotocol mbus) with frames split across
// messages and several frames in one message, and mBus over TLS.
func TestMBusOverWebSocketAndTLS(t *testing.T) {
	p := newPKI(t)
	udss := filepath.Join(t.TempDir(), "mbus-server-udss:0")
	srv := startServer(t, func(c *config.Config) {
		c.Listen.MBusTLS = "127.0.0.1:0"
		c.Listen.MBusUnixTLS = udss
		c.TLS = config.TLS{CertFile: p.srvCert, KeyFile: p.srvKey}
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, "ws://"+srv.Addr("http")+"/mbus", &websocket.DialOptions{Subprotocols: []string{"mbus"}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Body != nil {
		resp.Body.Close()
	}
	if ws.Subprotocol() != "mbus" {
		t.Fatalf("subprotocol %q", ws.Subprotocol())
	}
	defer ws.CloseNow()
	frame := func(m mbus.Message) []byte {
		b, _ := json.Marshal(m)
		return mbustest.AppendFrame(nil, b, false)
	}
	seq1, seq2, seq3 := 1, 2, 3
	create := frame(mbus.Message{Type: mbus.TypeCommand, Destination: mbus.ServerID, Identifier: "command.create", Sequence: &seq1,
		Payload: json.RawMessage(`{"identifier":"ws-client"}`)})
	// One frame across two messages.
	ws.Write(ctx, websocket.MessageBinary, create[:7])
	ws.Write(ctx, websocket.MessageBinary, create[7:])
	// Two frames in one message.
	two := append(frame(mbus.Message{Type: mbus.TypeCommand, Destination: mbus.ServerID, Identifier: "command.clients", Sequence: &seq2, Payload: json.RawMessage(`{}`)}),
		frame(mbus.Message{Type: mbus.TypeCommand, Destination: mbus.ServerID, Identifier: "command.status", Sequence: &seq3, Payload: json.RawMessage(`{}`)})...)
	ws.Write(ctx, websocket.MessageBinary, two)
	c := mbustest.New(t, websocket.NetConn(ctx, ws, websocket.MessageBinary))
	c.StartReader()
	for _, seq := range []int{1, 2, 3} {
		if st, body := c.ResultOf(seq); st != 0 {
			t.Fatalf("result %d: %d %s", seq, st, body)
		}
	}

	conn, err := tls.Dial("tcp", srv.Addr("mbus_tls"), p.tlsConfig())
	if err != nil {
		t.Fatal(err)
	}
	tc := mbustest.New(t, conn)
	if r := tc.Create(map[string]any{"identifier": "tls-client", "compressions": []string{"zlib"}}); *r.Status != 0 {
		t.Fatalf("create over TLS: %s", r.Payload)
	}
	seq := tc.Command(mbus.ServerID, "command.clients", map[string]any{})
	if st, body := tc.ResultOf(seq); st != 0 || !strings.Contains(string(body), "ws-client") || !strings.Contains(string(body), "tls-client") {
		t.Fatalf("clients over TLS: %d %s", st, body)
	}

	// TLS over the Unix socket (mBus's udss), at the "<path>:<port>" path taken literally.
	cfg := p.tlsConfig()
	cfg.ServerName = "127.0.0.1" // the name the test certificate carries; a Unix socket has none
	uc, err := net.Dial("unix", udss)
	if err != nil {
		t.Fatal(err)
	}
	sc := tls.Client(uc, cfg)
	if err := sc.HandshakeContext(ctx); err != nil {
		t.Fatalf("TLS handshake on the Unix socket: %v", err)
	}
	plainOnTLS, err := net.Dial("unix", udss)
	if err != nil {
		t.Fatal(err)
	}
	uds := mbustest.New(t, sc)
	if r := uds.Create(map[string]any{"identifier": "udss-client"}); *r.Status != 0 {
		t.Fatalf("create over TLS on the Unix socket: %s", r.Payload)
	}
	seq = uds.Command("tls-client", "missing", map[string]any{})
	if st, _ := uds.ResultOf(seq); st != -1 {
		t.Fatalf("a call to an unserved command over udss: status %d, want -1", st)
	}
	// The listener speaks only TLS: a plain mBus client gets no answer, only a closed connection.
	plain := mbustest.New(t, plainOnTLS)
	plain.StartReader()
	plain.Command(mbus.ServerID, "command.create", map[string]any{"identifier": "plain"})
	if !plain.Closed() {
		t.Fatal("a plain client on the TLS Unix socket was not closed")
	}
}

// TestServerEventsAcrossFaces: an MQTT client connecting, subscribing and serving a procedure is
// announced on $SYS/events and, to an mBus client subscribed to org.mbus.server, as mBus's
// server events; the broker's own tern/services procedure lists the services from any face.
func TestServerEventsAcrossFaces(t *testing.T) {
	addr, _, base, mq := mbusServer(t)
	watcher := mbustest.Dial(t, "tcp", addr)
	watcher.Create(map[string]any{"identifier": "watcher"})
	seq := watcher.Command(mbus.ServerID, "command.subscribe", map[string]string{"source": mbus.ServerID, "event": mbus.EventAll})
	if st, _ := watcher.ResultOf(seq); st != 0 {
		t.Fatalf("subscribe: %d", st)
	}
	sys := mq("sys-watcher")
	sys.sub("$SYS/events/#", 0)

	svc := mq("svc-1")
	for { // the watcher's own subscription is announced first
		m := sys.next()
		if m.Topic == "$SYS/events/connected" {
			if !strings.Contains(string(m.Payload), `"client_id":"svc-1"`) || !strings.Contains(string(m.Payload), `"face":"mqtt"`) {
				t.Fatalf("$SYS event %s", m.Payload)
			}
			break
		}
	}
	ev := watcher.Next(func(m mbus.Message) bool {
		return m.Identifier == mbus.EventConnected && strings.Contains(string(m.Payload), "svc-1")
	})
	if ev.Source != mbus.ServerID {
		t.Fatalf("connected event from %q", ev.Source)
	}
	svc.sub("$rpc/svc/hello", 1)
	ev = watcher.Next(func(m mbus.Message) bool { return m.Identifier == mbus.EventRegistered })
	var reg map[string]string
	if json.Unmarshal(ev.Payload, &reg) != nil || reg["source"] != "svc-1" || reg["identifier"] != "hello" {
		t.Fatalf("registered %s", ev.Payload)
	}
	resp, body := httpDo(t, "POST", base+"/v1/call/tern/services", "")
	if resp.StatusCode != 200 || !strings.Contains(body, `"namespace":"svc"`) || !strings.Contains(body, `"procedure":"hello"`) {
		t.Fatalf("tern/services: %d %s", resp.StatusCode, body)
	}
	svc.drop()
	ev = watcher.Next(func(m mbus.Message) bool { return m.Identifier == mbus.EventDisconnected })
	if !strings.Contains(string(ev.Payload), `"source":"svc-1"`) || !strings.Contains(string(ev.Payload), `"reason":"connection_closed"`) {
		t.Fatalf("disconnected %s", ev.Payload)
	}

	// A takeover ends the first connection: it is announced as disconnected, then the new one
	// as connected.
	mq("twice")
	mq("twice")
	var kinds []string
	for len(kinds) < 3 {
		m := sys.next()
		if strings.Contains(string(m.Payload), `"client_id":"twice"`) {
			kinds = append(kinds, strings.TrimPrefix(m.Topic, "$SYS/events/"))
			if m.Topic == "$SYS/events/disconnected" && !strings.Contains(string(m.Payload), `"reason":"session_taken_over"`) {
				t.Fatalf("takeover announced as %s", m.Payload)
			}
		}
	}
	if strings.Join(kinds, ",") != "connected,disconnected,connected" {
		t.Fatalf("events for a takeover: %v", kinds)
	}
	ev = watcher.Next(func(m mbus.Message) bool {
		return m.Identifier == mbus.EventDisconnected && strings.Contains(string(m.Payload), `"source":"twice"`)
	})
	if !strings.Contains(string(ev.Payload), `"reason":"session_taken_over"`) {
		t.Fatalf("mBus disconnected event for a takeover: %s", ev.Payload)
	}
}

// TestMBusWebSocketListener: listen.mbus_ws serves mBus over WebSocket at any path, as
// mbus-broker's listener does; mBus's own browser client connects with no path at all.
func TestMBusWebSocketListener(t *testing.T) {
	srv := startServer(t, func(c *config.Config) { c.Listen.MBusWS = "127.0.0.1:0" })
	for i, path := range []string{"", "/", "/any/path"} {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		ws, _, err := websocket.Dial(ctx, "ws://"+srv.Addr("mbus_ws")+path, &websocket.DialOptions{Subprotocols: []string{"mbus"}})
		if err != nil {
			cancel()
			t.Fatalf("path %q: %v", path, err)
		}
		c := mbustest.New(t, websocket.NetConn(context.Background(), ws, websocket.MessageBinary))
		if r := c.Create(map[string]any{"identifier": fmt.Sprintf("org.example.ws%d", i)}); r.Status == nil || *r.Status != 0 {
			t.Fatalf("path %q: create %s", path, r.Payload)
		}
		cancel()
	}
}
