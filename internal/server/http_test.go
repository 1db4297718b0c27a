package server_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/eclipse/paho.golang/paho"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/certs"
	"github.com/ternmq/tern/internal/config"
	"github.com/ternmq/tern/internal/mbus/mbustest"
)

// TestHTTPReadTimeouts: with short http.read_header_timeout and http.read_timeout, a client that
// trickles its headers is disconnected and one that trickles a body (HTTP/1.1 and HTTP/2) gets
// 408; meanwhile an SSE stream, an NDJSON stream over HTTP/2, a JSON WebSocket, MQTT over
// WebSocket and a request waiting for its reply, all opened before, outlive those timeouts.
func TestHTTPReadTimeouts(t *testing.T) {
	srv := startServer(t, func(c *config.Config) {
		c.HTTP.ReadHeaderTimeout = 200 * time.Millisecond
		c.HTTP.ReadTimeout = 300 * time.Millisecond
		c.HTTP.H2C = true
	})
	addr := srv.Addr("http")
	ctx, cancel := context.WithTimeout(context.Background(), 4*waitTimeout)
	defer cancel()
	h1 := &http.Client{Transport: &http.Transport{}}
	h2 := &http.Client{Transport: &http.Transport{Protocols: new(http.Protocols)}}
	h2.Transport.(*http.Transport).Protocols.SetUnencryptedHTTP2(true)
	defer h1.CloseIdleConnections()
	defer h2.CloseIdleConnections()
	get := func(hc *http.Client, path string) *bufio.Reader {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		t.Cleanup(func() { _ = resp.Body.Close() })
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s", path, resp.Status)
		}
		return bufio.NewReader(resp.Body)
	}

	// The long-lived ones first, so their read deadlines, if any applied, would pass first.
	sse := get(h1, "/v1/sub/live/%23?format=sse")
	if line, err := sse.ReadString('\n'); err != nil || line != ": subscribed\n" {
		t.Fatalf("SSE stream began with %q, %v", line, err)
	}
	nd := get(h2, "/v1/sub/live/%23?format=ndjson")
	ws := dialJSONWS(t, "ws://"+addr+"/v1/ws")
	ws.send(`{"op":"sub","filter":"live/#"}`)
	if m := ws.recv(); m["op"] != "suback" {
		t.Fatalf("WebSocket sub: %v", m)
	}
	mq := connectV3(t, "ws://"+addr+"/mqtt", uniqueID("ws-timeouts"))
	mq.sub("live/#", 0)
	responder := v5(t, srv, uniqueID("responder"))
	responder.sub("svc/slow", 1)
	replied := make(chan string, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/v1/req/svc/slow?timeout=15s", strings.NewReader("q"))
		resp, err := h1.Do(req)
		if err != nil {
			replied <- err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		replied <- resp.Status + " " + string(b)
	}()
	call := responder.next()
	eventually(t, waitTimeout, "the streams to open", func() bool { return srv.HTTP.Stats().Streams.Load() == 3 })

	// Headers trickled: the connection is closed without an answer.
	hc := dialTCP(t, addr)
	_ = hc.SetDeadline(time.Now().Add(waitTimeout))
	if _, err := io.WriteString(hc, "GET /healthz HTTP/1.1\r\nHost: tern\r\n"); err != nil {
		t.Fatal(err)
	}
	if n, err := hc.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("a request whose headers never end: read %d bytes, %v; want the connection closed", n, err)
	}

	// A body trickled over HTTP/1.1: 408 body_timeout, then the connection is closed.
	bc := dialTCP(t, addr)
	_ = bc.SetDeadline(time.Now().Add(waitTimeout))
	if _, err := io.WriteString(bc, "POST /v1/pub/live/x HTTP/1.1\r\nHost: tern\r\nContent-Length: 1000000\r\n\r\nab"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(bc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("a trickled body got no answer: %v", err)
	}
	expectBodyTimeout(t, resp)
	if n, err := br.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("after the 408: read %d bytes, %v; want the connection closed", n, err)
	}

	// A body trickled over HTTP/2: 408 too, and the connection serves on.
	pr, pw := io.Pipe()
	defer pw.Close()
	go func() { _, _ = pw.Write([]byte("ab")) }()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/v1/pub/live/y", pr)
	req.ContentLength = 1000000
	resp, err = h2.Do(req)
	if err != nil {
		t.Fatalf("HTTP/2 trickled body: %v", err)
	}
	if resp.ProtoMajor != 2 {
		t.Fatalf("HTTP/2 client got %s", resp.Proto)
	}
	expectBodyTimeout(t, resp)

	// Everything opened before is still served.
	responder.publish(&paho.Publish{Topic: call.Properties.ResponseTopic, QoS: 1, Payload: []byte("answer"),
		Properties: &paho.PublishProperties{CorrelationData: call.Properties.CorrelationData}})
	select {
	case got := <-replied:
		if got != "200 OK answer" {
			t.Fatalf("the waiting request got %q", got)
		}
	case <-ctx.Done():
		t.Fatal("no answer to the waiting request")
	}
	mq.pub("live/after", 0, false, "still")
	mq.expect("live/after", "still", 0)
	if m := ws.recv(); m["op"] != "msg" {
		t.Fatalf("WebSocket: %v", m)
	}
	for name, rd := range map[string]*bufio.Reader{"SSE": sse, "NDJSON over HTTP/2": nd} {
		for {
			line, err := rd.ReadString('\n')
			if err != nil {
				t.Fatalf("%s stream ended: %v", name, err)
			}
			if strings.Contains(line, `"topic":"live/after"`) {
				break
			}
		}
	}
}

func expectBodyTimeout(t *testing.T, resp *http.Response) {
	t.Helper()
	defer resp.Body.Close()
	var body struct {
		Error struct{ Code string }
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusRequestTimeout ||
		body.Error.Code != "body_timeout" {
		t.Fatalf("a trickled body: %s %+v, %v; want 408 body_timeout", resp.Status, body, err)
	}
}

// TestWebSocketCrossOrigin: on every WebSocket endpoint, the credentials a browser attaches by
// itself (Basic, a client certificate) count only for the server's own origin, an origin in
// http.websocket_origins, or a request without an Origin (not a browser). A page from another
// origin may connect but must authenticate inside the connection, or with a token.
func TestWebSocketCrossOrigin(t *testing.T) {
	p := newPKI(t)
	srv := startServer(t, func(c *config.Config) {
		c.Listen.HTTPS = "127.0.0.1:0"
		c.TLS = config.TLS{CertFile: p.srvCert, KeyFile: p.srvKey, ClientCAFile: filepath.Join(p.ca, certs.CACertFile)}
		c.HTTP.WebSocketOrigins = []string{"app.example.com"}
	})
	if err := srv.Auth.PutUser(auth.User{Name: "alice", Grants: grants(t, "publish:#", "subscribe:#")}, []byte("pw")); err != nil {
		t.Fatal(err)
	}
	token, _, err := srv.Auth.CreateToken("alice", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	addr, tlsAddr := srv.Addr("http"), srv.Addr("https")
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:pw"))
	const evil = "https://evil.example"
	dial := func(url, origin, authz string, hc *http.Client, subprotocols ...string) (*websocket.Conn, int, error) {
		t.Helper()
		// A password check (argon2) before the upgrade is slow on a busy machine.
		ctx, cancel := context.WithTimeout(context.Background(), 3*waitTimeout)
		defer cancel()
		h := http.Header{}
		if origin != "" {
			h.Set("Origin", origin)
		}
		if authz != "" {
			h.Set("Authorization", authz)
		}
		ws, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: h, HTTPClient: hc, Subprotocols: subprotocols})
		status := 0
		if resp != nil {
			status = resp.StatusCode
			if resp.Body != nil {
				_ = resp.Body.Close()
			}
		}
		if err == nil {
			t.Cleanup(func() { ws.CloseNow() })
		}
		return ws, status, err
	}

	// /v1/ws: a suback for "#" means the connection has alice's identity.
	for _, c := range []struct {
		origin, authz string
		identity      bool
	}{
		{"", basic, true},
		{"http://" + addr, basic, true},
		{"https://app.example.com", basic, true},
		{"https://APP.example.com", basic, true},
		{evil, basic, false},
		{"null", basic, false},
		{"http://" + addr + ".evil.example", basic, false},
		{evil, "Bearer " + token, true},
	} {
		ws, _, err := dial("ws://"+addr+"/v1/ws", c.origin, c.authz, nil)
		if err != nil {
			t.Fatalf("/v1/ws from %q: %v", c.origin, err)
		}
		j := &wsJSON{t: t, c: ws}
		j.send(`{"op":"sub","filter":"#"}`)
		m := j.recv()
		if got := m["op"] == "suback"; got != c.identity {
			t.Errorf("/v1/ws from %q with %.6s: %v; want identity %v", c.origin, c.authz, m, c.identity)
		}
		if !c.identity && m["code"] != "unauthorized" {
			t.Errorf("/v1/ws from %q: %v, want unauthorized", c.origin, m)
		}
	}
	// Another origin authenticates in its first frame.
	ws, _, err := dial("ws://"+addr+"/v1/ws", evil, basic, nil)
	if err != nil {
		t.Fatal(err)
	}
	j := &wsJSON{t: t, c: ws}
	j.send(`{"op":"auth","username":"alice","password":"pw"}`)
	if m := j.recv(); m["op"] != "authed" {
		t.Fatalf("in-band auth from another origin: %v", m)
	}
	j.send(`{"op":"sub","filter":"#"}`)
	if m := j.recv(); m["op"] != "suback" {
		t.Fatalf("sub after in-band auth: %v", m)
	}

	// isimud's /sub authenticates on the upgrade request: refused from another origin with
	// Basic (400 missing credentials, as isimud says), served with a token or from its own.
	if _, status, err := dial("ws://"+addr+"/sub", evil, basic, nil); err == nil || status != http.StatusBadRequest {
		t.Errorf("/sub from another origin with Basic: %d %v; want 400", status, err)
	}
	for _, c := range [][2]string{{"http://" + addr, basic}, {"", basic}, {evil, "Bearer " + token}} {
		if _, _, err := dial("ws://"+addr+"/sub", c[0], c[1], nil); err != nil {
			t.Errorf("/sub from %q with %.6s: %v", c[0], c[1], err)
		}
	}

	// MQTT over secure WebSocket with alice's client certificate: it names the client only for
	// a trusted origin; another origin authenticates in CONNECT.
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: p.tlsConfig(p.client(t, "alice"))}}
	mqttConn := func(origin string, cp *paho.Connect) (*paho.Connack, error) {
		ws, _, err := dial("wss://"+tlsAddr+"/mqtt", origin, "", hc, "mqtt")
		if err != nil {
			t.Fatalf("/mqtt from %q: %v", origin, err)
		}
		ws.SetReadLimit(-1)
		return newV5(t, websocket.NetConn(context.Background(), ws, websocket.MessageBinary)).connect(cp)
	}
	if ack, _ := mqttConn(evil, &paho.Connect{ClientID: uniqueID("evil"), CleanStart: true}); ack == nil || ack.ReasonCode != 0x87 {
		t.Errorf("/mqtt from another origin with a certificate only: %+v; want 0x87", ack)
	}
	if _, err := mqttConn("https://"+tlsAddr, &paho.Connect{ClientID: uniqueID("own"), CleanStart: true}); err != nil {
		t.Errorf("/mqtt from the server's own origin with a certificate: %v", err)
	}
	if _, err := mqttConn(evil, &paho.Connect{ClientID: uniqueID("evil-pw"), CleanStart: true, Username: "alice",
		UsernameFlag: true, Password: []byte("pw"), PasswordFlag: true}); err != nil {
		t.Errorf("/mqtt from another origin with a password in CONNECT: %v", err)
	}

	// mBus over secure WebSocket: the same for a create without a password.
	mbusCreate := func(origin string) int {
		ws, _, err := dial("wss://"+tlsAddr+"/mbus", origin, "", hc, "mbus")
		if err != nil {
			t.Fatalf("/mbus from %q: %v", origin, err)
		}
		c := mbustest.New(t, websocket.NetConn(context.Background(), ws, websocket.MessageBinary))
		return *c.Create(map[string]any{"identifier": uniqueID("org.example.d")}).Status
	}
	if st := mbusCreate(evil); st != -1 {
		t.Errorf("/mbus from another origin with a certificate only: status %d; want -1", st)
	}
	if st := mbusCreate("https://" + tlsAddr); st != 0 {
		t.Errorf("/mbus from the server's own origin with a certificate: status %d", st)
	}
}
