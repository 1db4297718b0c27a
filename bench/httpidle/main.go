// Command httpidle opens -n idle subscribers on tern's HTTP face and holds them, for
// bench/idle-memory.sh to read the broker's memory per connection: -mode ws is GET /v1/ws (a
// WebSocket of JSON frames, one {"op":"sub"} each), -mode sse is GET /v1/sub/... as Server-Sent
// Events, -mode mbus is an mBus client over WebSocket (GET /mbus, subprotocol "mbus") that has
// created its session (command.create). Each subscribes to a topic of its own (or has an
// identifier of its own). It prints "ready: ..." once every one is confirmed (the suback frame;
// the stream's ": subscribed" line; the result of command.create), then holds them for -hold.
package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
)

func main() {
	base := flag.String("url", "http://127.0.0.1:8080", "tern's HTTP listener")
	mode := flag.String("mode", "ws", "ws (GET /v1/ws), sse (GET /v1/sub/...) or mbus (GET /mbus)")
	n := flag.Int("n", 1000, "subscribers")
	hold := flag.Duration("hold", 20*time.Second, "how long to hold them once all are open")
	conc := flag.Int("concurrency", 32, "subscribers being opened at once")
	flag.Parse()
	if *mode != "ws" && *mode != "sse" && *mode != "mbus" {
		fmt.Fprintln(os.Stderr, "-mode is ws, sse or mbus")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	hc := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 0, DisableKeepAlives: false}}
	var (
		mu     sync.Mutex
		closer []func()
		failed error
		wg     sync.WaitGroup
	)
	start := time.Now()
	slots := make(chan struct{}, *conc)
	for i := range *n {
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			var c func()
			var err error
			switch *mode {
			case "ws":
				c, err = openWS(ctx, *base, i)
			case "mbus":
				c, err = openMBus(ctx, *base, i)
			default:
				c, err = openSSE(ctx, hc, *base, i)
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil && failed == nil {
				failed = err
			}
			if c != nil {
				closer = append(closer, c)
			}
		}()
	}
	wg.Wait()
	if failed != nil {
		fmt.Fprintln(os.Stderr, "subscriber:", failed)
		os.Exit(1)
	}
	fmt.Printf("ready: %d %s subscribers open in %.2f s\n", len(closer), *mode, time.Since(start).Seconds())
	time.Sleep(*hold)
	for _, c := range closer {
		c()
	}
	fmt.Printf("idle: %d subscribers held for %s\n", len(closer), *hold)
}

func openWS(ctx context.Context, base string, i int) (func(), error) {
	url := "ws" + strings.TrimPrefix(base, "http") + "/v1/ws"
	ws, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		return nil, err
	}
	sub := fmt.Sprintf(`{"op":"sub","filter":"idle/%d","qos":0}`, i)
	if err := ws.Write(ctx, websocket.MessageText, []byte(sub)); err != nil {
		return nil, err
	}
	_, ack, err := ws.Read(ctx)
	if err != nil || !strings.Contains(string(ack), `"suback"`) {
		return nil, fmt.Errorf("subscribe %d: %q %v", i, ack, err)
	}
	return func() { _ = ws.CloseNow() }, nil
}

// openMBus connects as an mBus client over WebSocket and creates its session: a 4-byte
// big-endian length and the JSON of command.create in a binary message, then the result frame.
func openMBus(ctx context.Context, base string, i int) (func(), error) {
	url := "ws" + strings.TrimPrefix(base, "http") + "/mbus"
	ws, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{"mbus"}})
	if err != nil {
		return nil, err
	}
	body, _ := json.Marshal(map[string]any{
		"org.mbus.method.tag.type":        "org.mbus.method.type.command",
		"org.mbus.method.tag.destination": "org.mbus.server",
		"org.mbus.method.tag.identifier":  "command.create",
		"org.mbus.method.tag.sequence":    1,
		"org.mbus.method.tag.payload":     map[string]any{"identifier": fmt.Sprintf("org.example.idle%d", i)},
	})
	frame := append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
	if err := ws.Write(ctx, websocket.MessageBinary, frame); err != nil {
		return nil, err
	}
	_, res, err := ws.Read(ctx)
	if err != nil || !strings.Contains(string(res), `"org.mbus.method.tag.status":0`) {
		return nil, fmt.Errorf("create %d: %q %v", i, res, err)
	}
	return func() { _ = ws.CloseNow() }, nil
}

func openSSE(ctx context.Context, hc *http.Client, base string, i int) (func(), error) {
	req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/v1/sub/idle/%d", base, i), nil)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, ": subscribed") {
		resp.Body.Close()
		return nil, fmt.Errorf("subscribe %d: %s %q %v", i, resp.Status, line, err)
	}
	return func() { resp.Body.Close() }, nil
}
