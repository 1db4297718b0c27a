package httpapi

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/httpauth"
	"github.com/ternmq/tern/internal/message"
)

// delivery is a message handed to an HTTP subscriber: its JSON event (frame, shared between
// subscribers and never modified) for the streaming formats, or the message itself (owned) for
// the handlers that need its fields.
type delivery struct {
	msg    *message.Message
	frame  []byte
	id     uint64
	pid    uint16
	retain bool
}

// sink is a broker.Sink feeding a bounded queue that one HTTP handler drains. When the queue is
// full a QoS 0 message is dropped (the core counts it); QoS 1 ones wait in the session.
//
// The queue is a slice that grows with a burst and is let go once drained, not a channel of the
// full bound: a channel allocates its whole buffer up front (128 deliveries, 6 KiB, by default),
// and an idle stream or WebSocket, which is most of them, would carry it for its whole life.
type sink struct {
	// frames: deliveries carry the encoded event, not a copy of the message.
	frames bool
	limit  int
	// ready has a token while the queue may hold something: Send leaves one after queueing,
	// the handler takes it and then everything with take.
	ready chan struct{}
	// writer, when set, replaces the token: Send starts it on a goroutine of its own when the
	// queue gets something and none runs (writing, under mu), and it drains the queue with
	// takeOrStop. A connection that nobody writes to then has no goroutine waiting to write.
	// Set with takeOver, under mu.
	writer  func()
	writing bool
	// onClose, when set, is called once when the core closes the sink (after closed is).
	onClose func()
	busy    atomic.Bool // Send answered Busy: the core waits for Client.Drained
	closed  chan struct{}
	once    sync.Once
	mu      sync.Mutex
	queue   []delivery // guarded by mu
	why     error      // guarded by mu
	ended   bool       // Close ran; guarded by mu
	// remote is the client's address, for the core's logs (RemoteAddr); set before Connect.
	remote string
}

// RemoteAddr names the client's end of the connection (broker.RemoteNamer).
func (k *sink) RemoteAddr() string { return k.remote }

// keptQueue is the capacity a drained queue keeps; a larger one is let go.
const keptQueue = 8

func newSink(n int) *sink {
	return &sink{limit: max(n, 1), ready: make(chan struct{}, 1), closed: make(chan struct{})}
}

func newFrameSink(n int) *sink {
	k := newSink(n)
	k.frames = true
	return k
}

func (k *sink) Send(d broker.Delivery) broker.SendResult {
	dv := delivery{id: d.Msg.ID, pid: d.PacketID, retain: d.Retain}
	if k.frames {
		dv.frame = jsonFrame(d)
	} else {
		dv.msg = d.Msg.Clone()
	}
	k.mu.Lock()
	if len(k.queue) >= k.limit {
		k.mu.Unlock()
		k.busy.Store(true)
		return broker.Busy
	}
	k.queue = append(k.queue, dv)
	writer := k.writer
	start := writer != nil && !k.writing
	k.writing = k.writing || start
	k.mu.Unlock()
	switch {
	case start:
		go writer()
	case writer == nil:
		k.signal()
	}
	return broker.Sent
}

// takeOrStop is take for the writer: when nothing is queued it ends the writer's run, in the
// same critical section as Send's check, so a delivery is never left with no writer coming.
func (k *sink) takeOrStop(buf []delivery, n int) []delivery {
	k.mu.Lock()
	if len(k.queue) == 0 {
		k.writing = false
		k.mu.Unlock()
		return buf
	}
	k.mu.Unlock()
	return k.take(buf, n)
}

// signal leaves the ready token if none is there.
func (k *sink) signal() {
	select {
	case k.ready <- struct{}{}:
	default:
	}
}

// take moves up to n queued deliveries, oldest first, onto buf and returns it. Deliveries left
// behind keep the ready token, so the handler comes back for them.
func (k *sink) take(buf []delivery, n int) []delivery {
	k.mu.Lock()
	defer k.mu.Unlock()
	m := min(n, len(k.queue))
	buf = append(buf, k.queue[:m]...)
	rest := copy(k.queue, k.queue[m:])
	clear(k.queue[rest:]) // the frames stay referenced only by buf
	k.queue = k.queue[:rest]
	switch {
	case rest > 0 && k.writer == nil:
		k.signal()
	case rest == 0 && cap(k.queue) > keptQueue:
		k.queue = nil
	}
	return buf
}

// jsonFrame is the delivery's JSON event, encoded once per message and retain flag when the
// message goes to several subscribers. (A single delivery's message may be borrowed from the
// publisher's buffer, so it is encoded without caching.)
func jsonFrame(d broker.Delivery) []byte {
	if !d.Many {
		return encodeEvent(d.Msg, d.Retain)
	}
	slot := message.SlotJSON
	if d.Retain {
		slot++
	}
	if f := d.Msg.Frames.Load(slot); f != nil {
		return f
	}
	return d.Msg.Frames.Store(slot, encodeEvent(d.Msg, d.Retain))
}

// drained tells the core there is room again if it was told there was none.
func (k *sink) drained(c *broker.Client) {
	if k.busy.Swap(false) {
		c.Drained()
	}
}

func (k *sink) Release(uint16) {}

func (k *sink) Close(reason error) {
	k.once.Do(func() {
		k.mu.Lock()
		k.why, k.ended = reason, true
		onClose := k.onClose
		k.mu.Unlock()
		close(k.closed)
		if onClose != nil {
			onClose()
		}
	})
}

// takeOver hands the sink to writer and onClose, before or after it is connected to the core
// (a stream is taken over from its handler with deliveries queued): a writer starts for what is
// queued, and onClose runs at once if the core has closed the sink already.
func (k *sink) takeOver(writer, onClose func()) {
	k.mu.Lock()
	k.writer, k.onClose = writer, onClose
	start := len(k.queue) > 0 && !k.writing
	k.writing = k.writing || start
	closed := k.ended
	k.mu.Unlock()
	if start {
		go writer()
	}
	if closed {
		onClose()
	}
}

// Drained is never asked for: Send does not answer Congested.
func (k *sink) Drained() <-chan struct{} { return nil }

func (k *sink) reason() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.why == nil {
		return broker.ErrServerShuttingDown
	}
	return k.why
}

// format is how a subscriber receives messages.
type format int

const (
	formatSSE format = iota
	formatNDJSON
	formatPoll
)

// chooseFormat reads ?format= (sse, ndjson, poll), ?poll=1, or the Accept header; SSE by default.
func chooseFormat(r *http.Request) (format, bool) {
	q := r.URL.Query()
	switch q.Get("format") {
	case "sse":
		return formatSSE, true
	case "ndjson":
		return formatNDJSON, true
	case "poll", "json":
		return formatPoll, true
	case "":
	default:
		return 0, false
	}
	if q.Get("poll") == "1" || q.Get("poll") == "true" {
		return formatPoll, true
	}
	accept := r.Header.Get("Accept")
	switch {
	case strings.Contains(accept, "application/x-ndjson"):
		return formatNDJSON, true
	case strings.Contains(accept, "text/event-stream"):
		return formatSSE, true
	}
	return formatSSE, true
}

// subscribe answers GET /v1/sub/{filter...}. With ?session=ID the subscription lives in a
// persistent session of that id (?session_expiry= seconds, default 300), so messages queue
// between long-polls or while a stream reconnects; without, it ends with the request. In a
// session, delivery is at least once: a message is acknowledged to the core only after it was
// written to the client, and what was not is delivered again on the next request.
func (s *Server) subscribe(w http.ResponseWriter, r *http.Request) {
	p := s.principal(w, r)
	if p == nil {
		return
	}
	f, ok := chooseFormat(r)
	if !ok {
		httpauth.WriteError(w, http.StatusBadRequest, "bad_parameter", "format must be sse, ndjson or poll")
		return
	}
	q := r.URL.Query()
	// The in-flight window fits the buffer, so acknowledged deliveries are never refused by it.
	req := broker.ConnectRequest{Principal: p, CleanStart: true, ReceiveMax: uint16(min(s.cfg.StreamBuffer, 65535)),
		Face: "http", RemoteAddr: r.RemoteAddr}
	if id := q.Get("session"); id != "" {
		req.ClientID, req.CleanStart, req.Expiry = id, false, 300
		if v := q.Get("session_expiry"); v != "" {
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil || n == 0 {
				httpauth.WriteError(w, http.StatusBadRequest, "bad_parameter", "session_expiry must be a positive number of seconds")
				return
			}
			req.Expiry = uint32(n)
		}
	}
	wait := s.cfg.PollWait
	if v := q.Get("wait"); v != "" && f == formatPoll {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d > s.cfg.PollWait {
			httpauth.WriteError(w, http.StatusBadRequest, "bad_parameter", fmt.Sprintf("wait must be a duration up to %s", s.cfg.PollWait))
			return
		}
		wait = d
	}
	k := newFrameSink(s.cfg.StreamBuffer)
	req.Sink = k
	c, _, err := s.b.Connect(r.Context(), req)
	if err != nil {
		if errors.Is(err, broker.ErrClientIDInUse) || errors.Is(err, broker.ErrClientIDReserved) {
			httpauth.WriteError(w, http.StatusConflict, "session_in_use", err.Error())
			return
		}
		fail(w, err)
		return
	}
	// The session is handed back when the request ends, or when a stream taken over from
	// net/http ends (takeOverStream).
	handedOff := false
	defer func() {
		if !handedOff {
			c.Disconnect(broker.DisconnectRequest{Graceful: true})
		}
	}()
	qos := byte(0)
	if !req.CleanStart {
		qos = 1
	}
	res := c.Subscribe([]broker.SubscribeRequest{{Filter: r.PathValue("filter"), QoS: qos}})
	if res[0].Err != nil {
		fail(w, res[0].Err)
		return
	}
	s.stats.Streams.Add(1)
	c.Start()
	c.SendRetained(res)
	if f == formatPoll {
		s.poll(w, r, c, k, wait)
		s.stats.Streams.Add(-1)
		return
	}
	handedOff = s.stream(w, r, c, k, f, func() {
		c.Disconnect(broker.DisconnectRequest{Graceful: true})
		s.stats.Streams.Add(-1)
	})
	if !handedOff {
		s.stats.Streams.Add(-1)
	}
}

// ack tells the core the deliveries written to the client arrived (QoS 1 ones, in a session).
func ack(c *broker.Client, ds []delivery) {
	for _, d := range ds {
		if d.pid != 0 {
			c.Acked(d.pid)
		}
	}
}

// stream writes deliveries as they come, flushing after each burst, with heartbeats when idle.
// Over HTTP/1.x it hands the connection over to a parkedStream once the header is out and
// reports true: finish then runs when that stream ends.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, c *broker.Client, k *sink, f format, finish func()) bool {
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx would otherwise buffer the stream
	if f == formatSSE {
		h.Set("Content-Type", "text/event-stream")
	} else {
		h.Set("Content-Type", "application/x-ndjson")
	}
	// An event of an HTTP/1.x stream's own is its bytes up to the connection's end, not chunks
	// (see parkedStream).
	http1 := r.ProtoMajor == 1
	if http1 {
		h.Set("Transfer-Encoding", "identity")
	}
	w.WriteHeader(http.StatusOK)
	if f == formatSSE {
		_, _ = w.Write([]byte(": subscribed\n\n"))
	}
	if rc.Flush() != nil {
		return false
	}
	// An EventSource that reconnects says what it saw last: in a session, deliveries up to it
	// (redelivered because their acknowledgement was lost with the connection) are skipped.
	lastSeen, _ := strconv.ParseUint(r.Header.Get("Last-Event-ID"), 10, 64)
	if http1 && s.takeOverStream(w, r, c, k, f, lastSeen, finish) {
		return true
	}
	beat := time.NewTicker(s.cfg.Heartbeat)
	defer beat.Stop()
	// Frames go straight into the response's own buffer (4 KiB, written out when full); one
	// flush ends a burst. The stream keeps no buffer of its own between bursts: with thousands
	// of idle streams that matters more than the copy.
	var head [48]byte
	var sent []delivery
	for {
		select {
		case <-k.ready:
			// One flush carries a burst of up to 256.
			sent = k.take(sent[:0], 256)
			// A client that takes nothing for this long is cut off rather than holding the
			// handler forever.
			_ = rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
			var err error
			for _, d := range sent {
				if d.pid != 0 && d.id <= lastSeen {
					continue // acknowledged below, not written
				}
				if err = writeFrame(w, head[:0], d, f); err != nil {
					break
				}
			}
			if err != nil || rc.Flush() != nil {
				return false
			}
			ack(c, sent)
			clear(sent) // drop the frames' references until the next burst
			k.drained(c)
		case <-beat.C:
			_ = rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
			hb := []byte("\n")
			if f == formatSSE {
				hb = []byte(": keep-alive\n\n")
			}
			if _, err := w.Write(hb); err != nil || rc.Flush() != nil {
				return false
			}
		case <-k.closed:
			return false
		case <-r.Context().Done():
			return false
		}
	}
}

// streamWriteTimeout bounds one burst written to a streaming subscriber.
const streamWriteTimeout = 30 * time.Second

// writeFrame writes one event: SSE's id, event and data lines, or an NDJSON line. head is scratch
// for the SSE prefix; the frame itself goes straight into w's buffer.
func writeFrame(w http.ResponseWriter, head []byte, d delivery, f format) error {
	if head = appendFrameHead(head, d, f); len(head) > 0 {
		if _, err := w.Write(head); err != nil {
			return err
		}
	}
	if _, err := w.Write(d.frame); err != nil {
		return err
	}
	_, err := io.WriteString(w, frameEnd(f))
	return err
}

// appendStreamFrame appends one event as writeFrame writes it.
func appendStreamFrame(b []byte, d delivery, f format) []byte {
	b = appendFrameHead(b, d, f)
	b = append(b, d.frame...)
	return append(b, frameEnd(f)...)
}

// appendFrameHead appends what precedes an event's JSON: SSE's id and event lines and the data
// field's name; nothing for NDJSON.
func appendFrameHead(b []byte, d delivery, f format) []byte {
	if f != formatSSE {
		return b
	}
	b = append(b, "id: "...)
	b = strconv.AppendUint(b, d.id, 10)
	return append(b, "\nevent: message\ndata: "...)
}

// frameEnd is what follows an event's JSON.
func frameEnd(f format) string {
	if f == formatSSE {
		return "\n\n"
	}
	return "\n"
}

// poll waits up to wait for a first message and answers a JSON array of what has arrived (at most
// 1,000), [] when nothing did.
func (s *Server) poll(w http.ResponseWriter, r *http.Request, c *broker.Client, k *sink, wait time.Duration) {
	var got []delivery
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-k.ready:
		got = k.take(got, 1000)
	case <-timer.C:
	case <-k.closed:
		fail(w, k.reason())
		return
	case <-r.Context().Done():
		ended(w, r)
		return
	}
	b := []byte{'['}
	for i, d := range got {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, d.frame...)
	}
	b = append(b, "]\n"...)
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Type", "application/json")
	_, _ = w.Write(b)
	if rc := http.NewResponseController(w); rc.Flush() == nil {
		ack(c, got)
	}
}

// retained answers GET /v1/retained/{filter...}: the retained messages the filter matches.
func (s *Server) retained(w http.ResponseWriter, r *http.Request) {
	p := s.principal(w, r)
	if p == nil {
		return
	}
	ans, err := s.b.Query(r.Context(), p, r.PathValue("filter"))
	if err != nil {
		fail(w, err)
		return
	}
	events := make([]Event, 0, len(ans.Messages))
	for _, m := range ans.Messages {
		events = append(events, eventOf(m, true))
	}
	if ans.Stale {
		// The namespace's designated router could not be asked: these are this router's copies.
		w.Header().Set("X-Tern-Stale", "true")
	}
	writeJSON(w, http.StatusOK, events)
}
