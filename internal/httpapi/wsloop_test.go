package httpapi

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/ternmq/tern/internal/wsconn"
)

// loopServer serves one WebSocket per request with a wsLoop whose handler passes each message
// on, and reports the loop and when it finished.
type loopServer struct {
	s        *Server
	loops    chan *wsLoop
	msgs     chan string
	finished chan struct{}
	url      string
}

func newLoopServer(t *testing.T, closeWait time.Duration) *loopServer {
	t.Helper()
	ls := &loopServer{s: &Server{stats: &Stats{}}, loops: make(chan *wsLoop, 1), msgs: make(chan string, 16),
		finished: make(chan struct{})}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := wsconn.Upgrade(w, r, wsconn.Options{AnyOrigin: true})
		if err != nil {
			return
		}
		l := ls.s.newWSLoop(ws, r, 1024)
		if l.watch == nil {
			t.Error("a TCP WebSocket cannot park")
		}
		l.closeWait = closeWait
		ls.loops <- l
		l.start(func(text bool, msg []byte) bool {
			ls.msgs <- fmt.Sprintf("%v %s", text, msg)
			return true
		}, func() { close(ls.finished) })
	}))
	t.Cleanup(srv.Close)
	ls.url = "ws" + strings.TrimPrefix(srv.URL, "http")
	return ls
}

func (ls *loopServer) waitParked(t *testing.T, n int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for ls.s.stats.Parked.Load() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d parked, want %d", ls.s.stats.Parked.Load(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func (ls *loopServer) waitFinished(t *testing.T, within time.Duration) {
	t.Helper()
	select {
	case <-ls.finished:
	case <-time.After(within):
		t.Fatalf("the connection did not end within %v", within)
	}
}

func dialLoop(t *testing.T, url string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.CloseNow() })
	return c
}

// A parked loop is woken by each message, hands it over whole and parks again; the client's
// close ends it.
func TestWSLoopServesFromThePoller(t *testing.T) {
	ls := newLoopServer(t, 5*time.Second)
	c := dialLoop(t, ls.url)
	ls.waitParked(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := range 3 {
		want := fmt.Sprintf("message %d %s", i, strings.Repeat("x", 500))
		if err := c.Write(ctx, websocket.MessageText, []byte(want)); err != nil {
			t.Fatal(err)
		}
		if got := <-ls.msgs; got != "true "+want {
			t.Fatalf("handled %.40q, want %.40q", got, want)
		}
		ls.waitParked(t, 1)
	}
	if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatalf("close: %v", err)
	}
	ls.waitFinished(t, 5*time.Second)
	ls.waitParked(t, 0)
}

// close on a parked loop sends the close frame; the third-party client answers it, which ends
// the loop at once.
func TestWSLoopCloseWhileParked(t *testing.T) {
	ls := newLoopServer(t, 5*time.Second)
	c := dialLoop(t, ls.url)
	l := <-ls.loops
	ls.waitParked(t, 1)
	l.close(wsconn.StatusGoingAway, "bye")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _, err := c.Read(ctx)
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.StatusGoingAway || ce.Reason != "bye" {
		t.Fatalf("client read %v, want close 1001 bye", err)
	}
	ls.waitFinished(t, 2*time.Second)
}

// A client that never answers the close frame is let go after closeWait; kill ends a parked
// loop at once.
func TestWSLoopCloseWaitAndKill(t *testing.T) {
	for _, kill := range []bool{false, true} {
		ls := newLoopServer(t, 200*time.Millisecond)
		nc := rawWSClient(t, ls.url)
		l := <-ls.loops
		ls.waitParked(t, 1)
		start := time.Now()
		if kill {
			l.kill()
		} else {
			l.close(wsconn.StatusGoingAway, "bye")
		}
		ls.waitFinished(t, 5*time.Second)
		if took := time.Since(start); !kill && took < 200*time.Millisecond {
			t.Fatalf("closed after %v, before its wait for the client's close frame", took)
		}
		ls.waitParked(t, 0)
		// The server's side is closed: the client reads to the end.
		_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 256)
		var err error
		for err == nil {
			_, err = nc.Read(buf)
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("kill %v: the connection is still open", kill)
		}
	}
}

// rawWSClient opens a WebSocket by hand and never reads or answers anything.
func rawWSClient(t *testing.T, url string) net.Conn {
	t.Helper()
	host := strings.TrimPrefix(url, "ws://")
	nc, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	key := make([]byte, 16)
	_, _ = rand.Read(key)
	fmt.Fprintf(nc, "GET / HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
		host, base64.StdEncoding.EncodeToString(key))
	resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	return nc
}
