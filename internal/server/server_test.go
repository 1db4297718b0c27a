package server_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/eclipse/paho.golang/paho"

	"github.com/ternmq/tern/internal/config"
	"github.com/ternmq/tern/internal/server"
)

// TestFailedStartKeepsOthersSocket: a second tern configured with the same Unix socket path that
// fails to start (here its MQTT port is taken) leaves the running tern's socket file in place,
// and the running tern still accepts connections on it.
func TestFailedStartKeepsOthersSocket(t *testing.T) {
	a := startServer(t)
	path := a.Addr("unix")
	for _, conflict := range []struct {
		name string
		mod  func(*config.Listen)
	}{
		// Fails before reaching the Unix listener.
		{"mqtt port taken", func(l *config.Listen) { l.MQTT = a.Addr("mqtt") }},
		// Fails at the Unix listener itself: the socket is in use.
		{"socket in use", func(l *config.Listen) { l.MQTT = "127.0.0.1:0" }},
	} {
		t.Run(conflict.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.DataDir = ""
			cfg.Listen = config.Listen{Unix: path}
			conflict.mod(&cfg.Listen)
			b, err := server.Start(cfg, nil)
			if err == nil {
				_ = b.Close()
				t.Fatal("a second tern started on a taken port and socket")
			}
			t.Logf("the second tern failed to start, as it should: %v", err)
			fi, err := os.Lstat(path)
			if err != nil || fi.Mode()&os.ModeSocket == 0 {
				t.Fatalf("the running tern's socket %s is gone after another failed to start: %v", path, err)
			}
			conn, err := net.DialTimeout("unix", path, waitTimeout)
			if err != nil {
				t.Fatalf("dial the running tern's socket: %v", err)
			}
			t.Cleanup(func() { _ = conn.Close() })
			c := connectV5(t, conn, &paho.Connect{ClientID: uniqueID("unix-after"), CleanStart: true})
			c.sub("keep/t", 0)
			c.pub("keep/t", 0, "still here")
			c.expect("keep/t", "still here")
		})
	}
	// The tern that bound the socket removes it when it stops.
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket %s left behind by the tern that bound it: %v", path, err)
	}
}

// syncBuffer collects log output written from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestCloseEndsStreamsFirst: Close with an SSE stream, an NDJSON stream, a long-poll and a
// WebSocket open (each in a persistent session, on a durable store) ends them before it waits
// for anything, and the sessions are saved before the store closes: no "store closed" error.
func TestCloseEndsStreamsFirst(t *testing.T) {
	logs := &syncBuffer{}
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Listen = config.Listen{HTTP: "127.0.0.1:0"}
	srv, err := server.Start(cfg, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 4*waitTimeout)
	defer cancel()
	hc := &http.Client{Transport: &http.Transport{}}
	defer hc.CloseIdleConnections()
	base := "http://" + srv.Addr("http") + "/v1/sub/"
	get := func(path string) (*http.Response, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
		return hc.Do(req)
	}
	// Each stream reports how it ended.
	ended := make(chan string, 4)
	drain := func(name string, resp *http.Response) {
		_, err := io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		ended <- fmt.Sprintf("%s: %d, body ended with %v", name, resp.StatusCode, err)
	}
	sse, err := get("sse/%23?format=sse&session=close-sse")
	if err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(sse.Body).ReadString('\n'); err != nil || line != ": subscribed\n" {
		t.Fatalf("SSE stream began with %q, %v", line, err)
	}
	nd, err := get("nd/%23?format=ndjson&session=close-nd")
	if err != nil {
		t.Fatal(err)
	}
	go drain("SSE", sse)
	go drain("NDJSON", nd)
	go func() {
		// The long-poll answers only when it ends, so its request runs in the background.
		resp, err := get("poll/%23?format=poll&session=close-poll")
		if err != nil {
			ended <- "long-poll failed: " + err.Error()
			return
		}
		drain("long-poll", resp)
	}()
	ws := dialJSONWS(t, "ws://"+srv.Addr("http")+"/v1/ws?session=close-ws")
	ws.send(`{"op":"sub","filter":"ws/#","qos":1}`)
	if m := ws.recv(); m["op"] != "suback" {
		t.Fatalf("WebSocket sub: %v", m)
	}
	go func() {
		_, _, err := ws.c.Read(ctx)
		ended <- fmt.Sprintf("WebSocket: read ended with %v (close status %d)", err, websocket.CloseStatus(err))
	}()
	eventually(t, waitTimeout, "four open streams", func() bool { return srv.HTTP.Stats().Streams.Load() == 4 })

	closed := make(chan struct{})
	go func() {
		_ = srv.Close()
		close(closed)
	}()
	// The streams end because Close tells them to, not because a shutdown deadline passed: the
	// old Close waited 3 s for them before it closed anything.
	deadline := time.NewTimer(2 * time.Second)
	defer deadline.Stop()
	var how []string
	for range 4 {
		select {
		case e := <-ended:
			how = append(how, e)
		case <-deadline.C:
			t.Fatalf("a stream was still open 2 s after Close began; ended: %q", how)
		}
	}
	t.Logf("%q", how)
	for _, e := range how {
		if strings.HasPrefix(e, "long-poll") && !strings.HasPrefix(e, "long-poll: 503") {
			t.Errorf("the long-poll was not told the server is shutting down: %s", e)
		}
		if strings.HasPrefix(e, "WebSocket") && !strings.Contains(e, fmt.Sprintf("status %d)", websocket.StatusGoingAway)) {
			t.Errorf("the WebSocket was not closed as going away: %s", e)
		}
	}
	select {
	case <-closed:
	case <-deadline.C:
		t.Fatal("Close still running 2 s after it began, with every stream ended")
	}
	if out := logs.String(); strings.Contains(out, "store closed") || strings.Contains(out, "level=ERROR") {
		t.Fatalf("errors logged while closing:\n%s", out)
	}
}
