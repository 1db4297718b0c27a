package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/ternmq/tern/internal/config"
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
