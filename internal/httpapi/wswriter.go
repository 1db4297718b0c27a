package httpapi

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/wsconn"
)

// wsWriter writes a WebSocket subscriber's deliveries on a goroutine its sink starts when the
// first of a burst arrives and which ends when the queue is empty, so an idle subscriber holds
// no goroutine for its deliveries (nor, parked, for its reads: wsLoop). Ending the connection
// from elsewhere (the core closing the sink, the server shutting down) sends a close frame
// (going away) through the loop.
type wsWriter struct {
	loop    *wsLoop
	k       *sink
	timeout time.Duration
	encode  func(frame []byte, d delivery) []byte
	c       atomic.Pointer[broker.Client] // set once connected; the sink may start run before
	stop    func() bool                   // forgets the server's shutdown
}

// startWSWriter sets k up to write through l's connection until base (the server's life) ends.
// The caller calls stop when the connection is over.
func startWSWriter(base context.Context, l *wsLoop, k *sink, timeout time.Duration,
	encode func([]byte, delivery) []byte) *wsWriter {
	w := &wsWriter{loop: l, k: k, timeout: timeout, encode: encode}
	k.takeOver(w.run, func() { l.close(wsconn.StatusGoingAway, k.reason().Error()) })
	w.stop = context.AfterFunc(base, func() {
		l.closeWithin(wsconn.StatusGoingAway, broker.ErrServerShuttingDown.Error(), wsShutdownCloseWait)
	})
	return w
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
			if err := w.loop.ws.WriteMessage(true, frame, w.timeout); err != nil {
				// The client takes nothing (or is gone): end the connection. The sink stays
				// marked as writing, so no writer starts again on a dead connection; what
				// queues meanwhile goes with the session.
				w.loop.kill()
				return
			}
		}
		clear(batch) // drop the frames' references until the next burst
		if c := w.c.Load(); c != nil {
			w.k.drained(c)
		}
	}
}
