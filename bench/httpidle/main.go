// Command httpidle opens -n idle subscribers on tern's HTTP face and holds them, for
// bench/idle-memory.sh to read the broker's memory per connection: -mode ws is GET /v1/ws (a
// WebSocket of JSON frames, one {"op":"sub"} each), -mode sse is GET /v1/sub/... as Server-Sent
// Events. Each subscribes to a topic of its own. It prints "ready: ..." once every subscription
// is confirmed (the suback frame; the stream's ": subscribed" line), then holds them for -hold.
package main

import (
	"bufio"
	"context"
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
	mode := flag.String("mode", "ws", "ws (GET /v1/ws) or sse (GET /v1/sub/...)")
	n := flag.Int("n", 1000, "subscribers")
	hold := flag.Duration("hold", 20*time.Second, "how long to hold them once all are open")
	conc := flag.Int("concurrency", 32, "subscribers being opened at once")
	flag.Parse()
	if *mode != "ws" && *mode != "sse" {
		fmt.Fprintln(os.Stderr, "-mode is ws or sse")
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
			if *mode == "ws" {
				c, err = openWS(ctx, *base, i)
			} else {
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
