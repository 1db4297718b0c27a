package httpapi

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/ternmq/tern/internal/broker"
)

// wsWriter writes a WebSocket subscriber's deliveries on a goroutine its sink starts when the
// first of a burst arrives and which ends when the queue is empty, so an idle subscriber holds
// only its reading goroutine. Ending the connection from elsewhere (the core closing the sink,
// the server shutting down) sends a close frame (going away), which ends that read.
type wsWriter struct {
	ws      *websocket.Conn
	k       *sink
	timeout time.Duration
	encode  func(frame []byte, d delivery) []byte
	c       atomic.Pointer[broker.Client] // set once connected; the sink may start run before
	ctx     context.Context
	cancel  context.CancelFunc
}

// startWSWriter sets k up to write through ws and returns the context the connection's reads
// and writes use: the request's context ends when the server shuts down, this one does not, so
// the client gets a close frame rather than a cut connection. The caller defers cancel.
func startWSWriter(req context.Context, ws *websocket.Conn, k *sink, timeout time.Duration,
	encode func([]byte, delivery) []byte) (context.Context, *wsWriter) {
	w := &wsWriter{ws: ws, k: k, timeout: timeout, encode: encode}
	w.ctx, w.cancel = context.WithCancel(context.WithoutCancel(req))
	goingAway := func(reason string) {
		// Close waits for the client's close frame; never on the goroutine that asked.
		go func() { _ = ws.Close(websocket.StatusGoingAway, reason) }()
	}
	k.writer = w.run
	k.onClose = func() { goingAway(k.reason().Error()) }
	stop := context.AfterFunc(req, func() { goingAway(broker.ErrServerShuttingDown.Error()) })
	cancel := w.cancel
	w.cancel = func() { stop(); cancel() }
	return w.ctx, w
}

// connected gives the writer the session's client, to tell it when there is room again.
func (w *wsWriter) connected(c *broker.Client) { w.c.Store(c) }

func (w *wsWriter) run() {
	var frame []byte
	var batch []delivery
	for {
		batch = w.k.takeOrStop(batch[:0], 64)
		if len(batch) == 0 {
			return
		}
		for _, d := range batch {
			frame = w.encode(frame[:0], d)
			wctx, wcancel := context.WithTimeout(w.ctx, w.timeout)
			err := w.ws.Write(wctx, websocket.MessageText, frame)
			wcancel()
			if err != nil {
				// The client takes nothing (or is gone): end the connection, which ends the
				// reader. The sink stays marked as writing, so no writer starts again on a
				// dead connection; what queues meanwhile goes with the session.
				w.cancel()
				_ = w.ws.CloseNow()
				return
			}
		}
		clear(batch) // drop the frames' references until the next burst
		if c := w.c.Load(); c != nil {
			w.k.drained(c)
		}
	}
}
