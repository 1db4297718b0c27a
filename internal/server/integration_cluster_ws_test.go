package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/ternmq/tern/internal/httpapi"
)

// keepDoing calls do every 50 ms until the test ends: what a subscriber on another node waits
// for crosses once that node's interest has reached this one, in its own time. do runs on its
// own goroutine, so it reports nothing to t; the cleanup waits for it to stop.
func keepDoing(t *testing.T, do func(ctx context.Context)) {
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	t.Cleanup(func() {
		cancel()
		<-stopped
	})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				do(ctx)
			}
		}
	}()
}

// keepPosting POSTs body to url until the test ends (with hdr as httpDo takes it).
func keepPosting(t *testing.T, url, body string, hdr ...string) {
	keepDoing(t, func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, waitTimeout)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "POST", url, strings.NewReader(body))
		for i := 0; i+1 < len(hdr); i += 2 {
			if hdr[i] == "basic" {
				u, p, _ := strings.Cut(hdr[i+1], ":")
				req.SetBasicAuth(u, p)
				continue
			}
			req.Header.Set(hdr[i], hdr[i+1])
		}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	})
}

// A WebSocket (/v1/ws) subscriber on one node receives what is published on the other, by HTTP
// POST and by MQTT.
func TestClusterWebSocketReceivesPublishFromOtherNode(t *testing.T) {
	a, b := twoNodes(t)
	ws := dialJSONWS(t, "ws://"+b.Addr("http")+"/v1/ws")
	ws.send(`{"op":"sub","filter":"crossws/#","id":1}`)
	if m := ws.recv(); m["op"] != "suback" {
		t.Fatalf("sub: %v", m)
	}
	keepPosting(t, "http://"+a.Addr("http")+"/v1/pub/crossws/http", "from-http")
	keepPublishing(t, v5(t, a, uniqueID("pub")), "crossws/mqtt", "from-mqtt")
	seen := map[string]bool{}
	for !seen["from-http"] || !seen["from-mqtt"] {
		m := ws.recv()
		msg, _ := m["message"].(map[string]any)
		if m["op"] != "msg" || msg == nil {
			t.Fatalf("frame %v", m)
		}
		p, _ := msg["payload"].(string)
		seen[p] = true
	}
}

// A long poll on one node is woken by a publish on the other: without a session (the poll's
// own subscription) and in a persistent session (its queue is replicated).
func TestClusterLongPollWokenFromOtherNode(t *testing.T) {
	a, b := twoNodes(t)
	keepPublishing(t, v5(t, a, uniqueID("pub")), "crosspoll/x", "from-a")
	for _, query := range []string{"poll=1&wait=2s", "poll=1&wait=2s&session=" + uniqueID("poller")} {
		deadline := time.Now().Add(4 * waitTimeout)
		for {
			resp, body := httpDo(t, "GET", "http://"+b.Addr("http")+"/v1/sub/crosspoll/%23?"+query, "")
			var evs []httpapi.Event
			if err := json.Unmarshal([]byte(body), &evs); err != nil || resp.StatusCode != 200 {
				t.Fatalf("%s: %d %s", query, resp.StatusCode, body)
			}
			if len(evs) > 0 {
				if evs[0].Topic != "crosspoll/x" || evs[0].Payload == nil || *evs[0].Payload != "from-a" {
					t.Fatalf("%s: %s", query, body)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: no poll was woken", query)
			}
		}
	}
}

// isimud: a WebSocket /sub on one node receives a POST /pub (Basic auth) made on the other.
func TestClusterIsimudAcrossNodes(t *testing.T) {
	a, b := twoNodes(t)
	ws := dialIsimud(t, "ws://"+b.Addr("http")+"/sub", "")
	ctx, cancel := context.WithTimeout(context.Background(), 4*waitTimeout)
	defer cancel()
	if err := ws.Write(ctx, websocket.MessageText, []byte(`{"publisher":"alice","topic":"news"}`)); err != nil {
		t.Fatal(err)
	}
	keepPosting(t, "http://"+a.Addr("http")+"/pub", `{"topic":"news","data":"hello"}`,
		"Content-Type", "application/json", "basic", "alice:any")
	typ, data, err := ws.Read(ctx)
	if err != nil || typ != websocket.MessageText || string(data) != "hello" {
		t.Fatalf("frame %v %q %v, want text hello", typ, data, err)
	}
}
