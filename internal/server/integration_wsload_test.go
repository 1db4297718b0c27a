package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// TestJSONWebSocketUnderLoad: /v1/ws clients in persistent sessions publish QoS 1 bursts to
// themselves with random pauses between them (so their connections park and wake over and
// over), while 16 KiB messages fan out to all of them, and now and then open a second connection
// on their session before leaving the first (a takeover of a connection in whatever state):
// every burst is acknowledged and comes back, and when all have left no stream, WebSocket or
// parked connection is counted. Under -race it is the check that the loops' reads, closes,
// kills and wake-ups stay out of each other's way.
func TestJSONWebSocketUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for several seconds")
	}
	t.Parallel()
	srv := startServer(t)
	url := "ws://" + srv.Addr("http") + "/v1/ws"
	stop := time.Now().Add(3 * time.Second)

	fan := v5(t, srv, uniqueID("wsload-fan"))
	fanCtx, fanStop := context.WithCancel(context.Background())
	fanDone := make(chan struct{})
	go func() {
		defer close(fanDone)
		big := strings.Repeat("f", 16<<10)
		for fanCtx.Err() == nil {
			fan.pub("wsload/all", 0, big)
			select {
			case <-fanCtx.Done():
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()

	const clients = 8
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := wsLoadClient(url, i, stop); err != nil {
				errs <- fmt.Errorf("client %d: %w", i, err)
			}
		}()
	}
	wg.Wait()
	fanStop()
	<-fanDone
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	eventually(t, waitTimeout, "no stream, WebSocket or parked connection left", func() bool {
		return srv.HTTP.Stats().Streams.Load() == 0 && metric(t, srv, "tern_http_connections_parked") == 0 &&
			metric(t, srv, `tern_websocket_clients{endpoint="api"}`) == 0
	})
}

// wsLoadConn is one /v1/ws connection of a load client.
type wsLoadConn struct {
	c    *websocket.Conn
	seen map[string]bool // own payloads received
	acks map[float64]bool
}

func dialLoad(url string, i int) (*wsLoadConn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, fmt.Sprintf("%s?session=wsload-%d", url, i), nil)
	if err != nil {
		return nil, err
	}
	c.SetReadLimit(1 << 20)
	w := &wsLoadConn{c: c, seen: map[string]bool{}, acks: map[float64]bool{}}
	for _, sub := range []string{fmt.Sprintf(`{"op":"sub","filter":"wsload/%d/#","qos":1}`, i), `{"op":"sub","filter":"wsload/all"}`} {
		if err := w.write(sub); err != nil {
			return nil, err
		}
	}
	return w, nil
}

func (w *wsLoadConn) write(s string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return w.c.Write(ctx, websocket.MessageText, []byte(s))
}

// until reads, acknowledging QoS 1 deliveries, until done says it has what it waits for.
func (w *wsLoadConn) until(done func() bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for !done() {
		_, b, err := w.c.Read(ctx)
		if err != nil {
			return err
		}
		var m struct {
			Op      string  `json:"op"`
			ID      float64 `json:"id"`
			Ack     int     `json:"ack"`
			Code    string  `json:"code"`
			Message struct {
				Topic   string `json:"topic"`
				Payload string `json:"payload"`
			} `json:"message"`
		}
		if err := json.Unmarshal(b, &m); err != nil {
			return err
		}
		switch m.Op {
		case "error":
			return errors.New(m.Code)
		case "puback":
			w.acks[m.ID] = true
		case "msg":
			if m.Ack != 0 {
				if err := w.write(fmt.Sprintf(`{"op":"ack","ack":%d}`, m.Ack)); err != nil {
					return err
				}
			}
			if m.Message.Topic != "wsload/all" {
				w.seen[m.Message.Payload] = true
			}
		}
	}
	return nil
}

func wsLoadClient(url string, i int, stop time.Time) error {
	w, err := dialLoad(url, i)
	if err != nil {
		return err
	}
	id := 0
	for time.Now().Before(stop) {
		for range 1 + rand.IntN(4) {
			burst := 1 + rand.IntN(4)
			var want []string
			first := id
			for range burst {
				id++
				p := fmt.Sprintf("c%d-m%d", i, id)
				want = append(want, p)
				if err := w.write(fmt.Sprintf(`{"op":"pub","id":%d,"topic":"wsload/%d/x","payload":%q,"qos":1}`, id, i, p)); err != nil {
					return err
				}
			}
			err := w.until(func() bool {
				for n := first + 1; n <= id; n++ {
					if !w.acks[float64(n)] {
						return false
					}
				}
				for _, p := range want {
					if !w.seen[p] {
						return false
					}
				}
				return true
			})
			if err != nil {
				return fmt.Errorf("burst up to %d: %w", id, err)
			}
			time.Sleep(time.Duration(rand.IntN(30)) * time.Millisecond) // quiet: the connection parks
		}
		if rand.IntN(3) == 0 {
			// A second connection on the session takes it over; the first is closed as going
			// away, in whatever state it was.
			next, err := dialLoad(url, i)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			for {
				if _, _, err = w.c.Read(ctx); err != nil {
					break
				}
			}
			cancel()
			if websocket.CloseStatus(err) != websocket.StatusGoingAway {
				return fmt.Errorf("the connection taken over ended with %v, want going away", err)
			}
			_ = w.c.CloseNow()
			w = next
			continue
		}
		_ = w.c.Close(websocket.StatusNormalClosure, "")
		if w, err = dialLoad(url, i); err != nil {
			return err
		}
	}
	return w.c.Close(websocket.StatusNormalClosure, "")
}
