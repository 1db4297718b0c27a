package httpapi

import (
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ternmq/tern/internal/netio"
	"github.com/ternmq/tern/internal/wsconn"
)

// wsLoop reads a WebSocket's messages. While the client is quiet no goroutine waits for it: the
// socket parks in the netio poller, and a message (or the client's end) wakes a goroutine that
// reads until the socket is drained and parks it again. An idle subscriber then holds its
// session and framing state, not a goroutine and the HTTP server's buffers. A transport that
// cannot park (TLS whose listener put no netio.ParkConn under it) is read by a goroutine that
// waits, as before.
//
// The connection ends on the reader's goroutine (finish runs there, once): when the client
// closes or goes away, when handle says so, when close's wait for the client's close frame runs
// out, or at once after kill.
type wsLoop struct {
	ws      *wsconn.Conn
	watch   *netio.Watch // nil: reads wait
	limit   int
	handle  func(text bool, msg []byte) bool // false: it closed the connection (see close)
	finish  func()
	release func() // lets go of the request's count (Keep)
	// parked counts the server's parked connections (netio.ParkCounter).
	parked *atomic.Int64

	closeWait time.Duration // wsCloseWait
	closing   atomic.Bool
	closeBy   atomic.Int64 // Unix ns: the close frame was sent; the client's is awaited until then
	killed    atomic.Bool
	ended     sync.Once
}

// wsCloseWait is how long a closed connection waits for the client's close frame, and
// wsShutdownCloseWait how long when the server shuts down: the shutdown waits for the
// connections to hand their sessions back, which they do when they end.
const (
	wsCloseWait         = 5 * time.Second
	wsShutdownCloseWait = time.Second
)

// newWSLoop prepares ws, upgraded from r, for parking where its transport allows; the caller
// may still read it with waiting reads (an authentication frame, under a deadline) before
// start. The connection keeps r counted (Keep) until it ends.
func (s *Server) newWSLoop(ws *wsconn.Conn, r *http.Request, limit int) *wsLoop {
	l := &wsLoop{ws: ws, limit: limit, release: Keep(r), closeWait: wsCloseWait, parked: &s.stats.Parked}
	if pc := ws.ParkConn(); pc != nil {
		if p, err := netio.DefaultPoller(); err == nil {
			if w, err := p.Watch(pc.RawConn(), l); err == nil {
				l.watch = w
			}
		}
	}
	return l
}

// readOne reads one message, waiting until deadline (for what comes before run).
func (l *wsLoop) readOne(deadline time.Time) (bool, []byte, error) {
	_ = l.ws.SetReadDeadline(deadline)
	text, msg, err := l.ws.ReadMessage(l.limit)
	_ = l.ws.SetReadDeadline(time.Time{})
	return text, msg, err
}

// start serves the connection from now on; with a poller it returns once the client is quiet.
func (l *wsLoop) start(handle func(text bool, msg []byte) bool, finish func()) {
	l.handle, l.finish = handle, finish
	if l.watch != nil {
		l.ws.ParkConn().SetNoWait(true)
	}
	l.run()
}

// ParkedCount implements netio.ParkCounter.
func (l *wsLoop) ParkedCount() *atomic.Int64 { return l.parked }

// Ready is the poller's call: the socket has something, or a wait ran out, or close or kill
// woke it.
func (l *wsLoop) Ready() { go l.run() }

func (l *wsLoop) run() {
	for !l.killed.Load() {
		if l.watch == nil {
			if by := l.closeBy.Load(); by != 0 {
				// Waiting reads: close's wait applies even if a read before run lifted it.
				_ = l.ws.SetReadDeadline(time.Unix(0, by))
			}
		}
		text, msg, err := l.ws.ReadMessage(l.limit)
		if err == nil {
			// After our close frame the client's last messages are read and dropped.
			if !l.closing.Load() && !l.handle(text, msg) && !l.closing.Load() {
				break
			}
			continue
		}
		if l.watch == nil || !errors.Is(err, netio.ErrWouldBlock) {
			break
		}
		var due time.Time
		if by := l.closeBy.Load(); by != 0 {
			if time.Now().UnixNano() >= by {
				break
			}
			due = time.Unix(0, by)
		}
		if l.watch.Arm(due) != nil {
			break
		}
		// A close or kill that came after the checks above found the watch owned, and so
		// did not wake it: wake it now, to wait with close's deadline or to end.
		if l.killed.Load() || due.IsZero() && l.closeBy.Load() != 0 {
			l.watch.Wake()
		}
		return
	}
	l.end()
}

// end closes the transport and runs finish, then release, once.
func (l *wsLoop) end() {
	l.ended.Do(func() {
		if l.watch != nil {
			l.watch.Close()
		}
		_ = l.ws.Close()
		if l.finish != nil {
			l.finish()
		}
		l.release()
	})
}

// close sends a close frame with code and reason, then the connection waits closeWait for
// the client's; any goroutine may call it (the core, from under its locks), and only the first
// call counts. The frame goes from a goroutine of its own, since a write under way holds the
// connection's writer until it ends.
func (l *wsLoop) close(code uint16, reason string) { l.closeWithin(code, reason, l.closeWait) }

// closeWithin is close waiting at most wait for the client's close frame.
func (l *wsLoop) closeWithin(code uint16, reason string, wait time.Duration) {
	if !l.closing.CompareAndSwap(false, true) {
		return
	}
	by := time.Now().Add(wait)
	l.closeBy.Store(by.UnixNano())
	if l.watch == nil {
		_ = l.ws.SetReadDeadline(by)
	}
	go func() {
		_ = l.ws.CloseWith(code, reason)
		if l.watch != nil {
			// The reader may be parked without a deadline: it waits with close's from now.
			l.watch.Wake()
		}
	}()
}

// refuse closes the connection with code and reason, before or instead of start: the loop
// then only reads the client's last frames, dropping them, until its close frame or close's
// wait ends the connection.
func (l *wsLoop) refuse(code uint16, reason string) {
	l.close(code, reason)
	l.start(ignoreWS, nil)
}

// ignoreWS drops what a closing connection still receives.
func ignoreWS(bool, []byte) bool { return true }

// kill ends the connection without a close frame (the client takes nothing, or is gone).
func (l *wsLoop) kill() {
	l.killed.Store(true)
	if l.watch == nil {
		_ = l.ws.NetConn().Close()
		return
	}
	l.watch.Wake()
}
