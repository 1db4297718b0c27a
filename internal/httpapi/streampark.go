package httpapi

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/netio"
)

// A stream over HTTP/1.x (SSE or NDJSON) leaves net/http once its header is out: the handler
// takes the connection over (Hijack) and returns, the connection parks in the netio poller
// while the subscriber is quiet, and deliveries and keep-alives are written by goroutines that
// run only while there is something to write. An idle stream then holds its session and a few
// words of state, not the handler's goroutine and net/http's buffers and request.
//
// The response goes without chunked encoding (Transfer-Encoding: identity, which net/http
// answers with "Connection: close"): the body is the connection's bytes until it closes, the
// framing the Server-Sent Events recommendation suggests, so the events are written as they are.
// An HTTP/2 stream cannot be taken over and keeps its goroutine (Server.stream).

// parkedStream is a stream served from the poller.
type parkedStream struct {
	nc       net.Conn        // the connection: the body's bytes go here
	rd       net.Conn        // what reads it: nc, or the ParkConn made for a TCP nc
	pc       *netio.ParkConn // the socket, when the stream can park
	watch    *netio.Watch    // nil: a goroutine waits on rd instead
	c        *broker.Client
	k        *sink
	f        format
	lastSeen uint64
	beat     time.Duration
	finish   func()        // hands the session back; runs once, when the stream has ended
	stop     func() bool   // forgets the server's shutdown
	release  func()        // lets go of the request's count (Keep)
	parked   *atomic.Int64 // the server's parked connections (netio.ParkCounter)

	wmu      sync.Mutex   // one writer at a time: deliveries and keep-alives
	nextBeat atomic.Int64 // Unix ns of the next keep-alive
	quitting atomic.Bool  // the core closed the session, the server shuts down, or a write failed
	ended    sync.Once
}

// ParkedCount implements netio.ParkCounter.
func (st *parkedStream) ParkedCount() *atomic.Int64 { return st.parked }

// takeOverStream hijacks the stream's connection after its header and first flush and serves it
// from then on, and reports whether it did (otherwise the caller goes on as before). finish runs
// once the stream has ended.
func (s *Server) takeOverStream(w http.ResponseWriter, r *http.Request, c *broker.Client, k *sink, f format,
	lastSeen uint64, finish func()) bool {
	nc, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return false
	}
	// What the client sent after its request (nothing, from a stream's client) is not read:
	// the stream only watches for the connection's end.
	st := &parkedStream{nc: nc, rd: nc, c: c, k: k, f: f, lastSeen: lastSeen, beat: s.cfg.Heartbeat,
		finish: finish, release: Keep(r), parked: &s.stats.Parked}
	if t, ok := nc.(*tls.Conn); ok {
		st.pc, _ = t.NetConn().(*netio.ParkConn)
	} else if pc, ok := netio.NewParkConn(nc).(*netio.ParkConn); ok {
		st.pc, st.rd = pc, pc
	}
	if st.pc != nil {
		if p, err := netio.DefaultPoller(); err == nil {
			if wt, err := p.Watch(st.pc.RawConn(), st); err == nil {
				st.watch = wt
				st.pc.SetNoWait(true)
			}
		}
	}
	st.nextBeat.Store(time.Now().Add(st.beat).UnixNano())
	st.stop = context.AfterFunc(s.base, st.quit)
	k.takeOver(st.write, st.quit)
	if st.watch == nil {
		go st.run()
		return true
	}
	st.run() // parks at once: the handler returns
	return true
}

// Ready is the poller's call: the client sent something or left, a keep-alive is due, or quit
// woke it.
func (st *parkedStream) Ready() { go st.run() }

// run watches the connection until the client leaves or the stream is told to quit, sending a
// keep-alive when one is due; with a poller it parks between wake-ups.
func (st *parkedStream) run() {
	var buf [512]byte
	for !st.quitting.Load() {
		if st.watch == nil {
			_ = st.rd.SetReadDeadline(time.Unix(0, st.nextBeat.Load()))
			if st.quitting.Load() {
				break // quit's deadline may just have been replaced
			}
		}
		_, err := st.rd.Read(buf[:])
		if err == nil {
			continue // discarded: nothing a stream's client sends means anything here
		}
		if !errors.Is(err, netio.ErrWouldBlock) && !errors.Is(err, os.ErrDeadlineExceeded) {
			break // the client left
		}
		if now := time.Now().UnixNano(); now >= st.nextBeat.Load() {
			st.nextBeat.Store(now + int64(st.beat))
			go st.keepAlive()
		}
		if st.watch == nil {
			continue
		}
		if st.watch.Arm(time.Unix(0, st.nextBeat.Load())) != nil {
			break
		}
		// A quit that came after the check above found the watch owned and did not wake it.
		if st.quitting.Load() {
			st.watch.Wake()
		}
		return
	}
	st.end()
}

// quit ends the stream from any goroutine (the core, the shutdown, a failed write).
func (st *parkedStream) quit() {
	st.quitting.Store(true)
	if st.watch != nil {
		st.watch.Wake()
		return
	}
	_ = st.rd.SetReadDeadline(time.Now())
}

// end closes the connection, which ends the body, and hands the session back; once.
func (st *parkedStream) end() {
	st.ended.Do(func() {
		if st.watch != nil {
			st.watch.Close()
		}
		// A write under way fails on the closed connection and stops its writer.
		_ = st.nc.Close()
		st.stop()
		st.finish()
		st.release()
	})
}

// keepAlive writes a comment (SSE) or an empty line (NDJSON), so proxies keep the stream.
func (st *parkedStream) keepAlive() {
	hb := "\n"
	if st.f == formatSSE {
		hb = ": keep-alive\n\n"
	}
	st.wmu.Lock()
	defer st.wmu.Unlock()
	_ = st.nc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
	if _, err := st.nc.Write([]byte(hb)); err != nil {
		st.quit()
	}
}

// write is the sink's writer: it runs while deliveries wait, writing each burst in one write,
// then acknowledges it (a session's QoS 1 deliveries count as delivered once written).
func (st *parkedStream) write() {
	var sent []delivery
	var out []byte
	for {
		sent = st.k.takeOrStop(sent[:0], 256)
		if len(sent) == 0 {
			return
		}
		out = out[:0]
		for _, d := range sent {
			if d.pid != 0 && d.id <= st.lastSeen {
				continue // acknowledged below, not written: the reconnected client has it
			}
			out = appendStreamFrame(out, d, st.f)
		}
		st.wmu.Lock()
		_ = st.nc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
		_, err := st.nc.Write(out)
		st.wmu.Unlock()
		if err != nil {
			// The client takes nothing (or is gone): end the stream. The sink stays marked as
			// writing, so no writer starts again on a dead connection.
			st.quit()
			return
		}
		ack(st.c, sent)
		clear(sent) // drop the frames' references until the next burst
		if cap(out) > 64<<10 {
			out = nil
		}
		st.k.drained(st.c)
	}
}
