package mbus

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/message"
	"github.com/ternmq/tern/internal/netio"
	"github.com/ternmq/tern/internal/topic"
)

// registration is a command a client serves: under its own identifier, or (service set) as one
// instance of a shared service.
type registration struct {
	service, cmd string
}

type callKey struct {
	caller string
	seq    int
	cmd    string
}

type callRoute struct {
	reply string
	corr  []byte
}

// conn is one mBus client.
type conn struct {
	srv      *Server
	nc       net.Conn
	tls      *tls.ConnectionState
	identify netio.Identify

	// out is the outgoing side and the end of the connection.
	out netio.Conn
	// batch collects the writes this client's messages cause for other clients (and its own
	// answers); the reader flushes it before it reads more.
	batch     broker.Batch
	done      chan struct{}
	closeOnce sync.Once

	mu        sync.Mutex
	id        string
	created   bool
	zlib      bool
	principal *auth.Principal
	client    *broker.Client
	eventSeq  int
	subs      map[[2]string]bool
	cmds      map[registration]bool
	calls     map[callKey]callRoute
	// why is mBus's reason for the end, announced in the disconnected event; the first one wins.
	why string

	// ping: the client's interval, timeout and threshold; lastPing and missed as mBus counts
	// them (but a good ping resets missed).
	pingInterval, pingTimeout time.Duration
	pingThreshold             int
	lastPing                  time.Time
	missed                    int
}

func newConn(s *Server, nc net.Conn, cs *tls.ConnectionState, identify netio.Identify) *conn {
	c := &conn{srv: s, nc: nc, tls: cs, identify: identify,
		done: make(chan struct{}), subs: map[[2]string]bool{}, cmds: map[registration]bool{}, calls: map[callKey]callRoute{}}
	c.out.Init(nc, &s.out, c)
	return c
}

func (c *conn) identifier() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.id
}

// serve reads frames until the connection ends.
// readBufSize is the size of a connection's read buffer.
const readBufSize = 4 << 10

func (c *conn) serve() {
	defer c.finish()
	// 4 KiB takes a burst of small frames in one read; a larger payload is read past the buffer,
	// straight into the frame (bufio reads directly into a destination larger than itself).
	// The buffer lives as long as the connection, idle or not, so it is kept small.
	rd := bufio.NewReaderSize(flushFirst{c.nc, &c.batch}, readBufSize)
	if c.out.ArmRead(time.Now().Add(c.srv.cfg.CreateTimeout)) != nil {
		return
	}
	for {
		// Each frame gets a buffer of its own: the request decoded from it may keep slices of
		// it (a payload on its way to subscribers).
		c.mu.Lock()
		z, limit := c.zlib, maxCreateFrame
		if c.created {
			limit = MaxFrame
		}
		c.mu.Unlock()
		b, err := readFrame(rd, z, nil, limit)
		if err != nil {
			if errors.Is(err, errFrame) {
				c.fail(err)
			}
			return
		}
		m, err := decodeRequest(b)
		if err != nil {
			c.fail(err)
			return
		}
		if !c.handle(m) {
			return
		}
	}
}

// fail closes a client that sent bad input, with mBus's reason.
func (c *conn) fail(err error) {
	c.srv.stats.BadInput.Add(1)
	c.srv.log.Debug("mbus client closed: bad input", "client", c.identifier(), "err", err)
	c.close("internal_error")
}

// close ends the connection at once for reason.
func (c *conn) close(reason string) {
	c.setWhy(reason)
	c.closeOnce.Do(func() { close(c.done) })
	c.out.CloseNow(errors.New(reason))
}

// setWhy records mBus's reason for the end, unless one was already given.
func (c *conn) setWhy(reason string) {
	c.mu.Lock()
	if c.why == "" {
		c.why = reason
	}
	c.mu.Unlock()
}

// flushFirst writes what the batch holds before each read that may wait for the client.
type flushFirst struct {
	r     io.Reader
	batch *broker.Batch
}

func (f flushFirst) Read(p []byte) (int, error) {
	f.batch.Flush()
	return f.r.Read(p)
}

// finish ends the connection once the reader stops: what is queued (a refusal) is written and
// the client's last bytes drained, then the client detaches from the core, which announces the
// disconnection (the relay turns that into org.mbus.server.event.disconnected with mBus's reason).
func (c *conn) finish() {
	c.batch.Flush()
	c.out.Finish()
	c.setWhy("connection_closed")
	c.closeOnce.Do(func() { close(c.done) })
	c.mu.Lock()
	client, why := c.client, c.why
	c.mu.Unlock()
	if client != nil {
		client.Disconnect(broker.DisconnectRequest{Graceful: true, Reason: why})
	}
}

func (c *conn) result(seq *int, status int, payload any) {
	p, _ := json.Marshal(payload)
	c.send(Message{Type: TypeResult, Sequence: seq, Status: &status, Payload: p}, &c.batch)
}

// handle runs one client message; false ends the connection.
func (c *conn) handle(m Message) bool {
	c.mu.Lock()
	created := c.created
	c.mu.Unlock()
	if !created {
		// Nothing is allowed before command.create, which must come first.
		if m.Type != TypeCommand || m.Destination != ServerID || m.Identifier != "command.create" {
			c.fail(errors.New("the first message must be command.create"))
			return false
		}
		return c.create(m)
	}
	switch {
	case m.Type == TypeCommand && m.Destination == ServerID:
		c.serverCommand(m)
	case m.Type == TypeCommand:
		c.call(m)
	case m.Type == TypeEvent:
		c.event(m.Destination, m.Identifier, m.Payload)
	}
	return true
}

// create identifies the client: its identifier (assigned when absent), its password checked by
// tern's auth, compression and ping. A failed create closes the connection.
func (c *conn) create(m Message) bool {
	var req struct {
		Identifier   string   `json:"identifier"`
		Password     string   `json:"password"`
		Compressions []string `json:"compressions"`
		Ping         struct {
			Interval  int `json:"interval"`
			Timeout   int `json:"timeout"`
			Threshold int `json:"threshold"`
		} `json:"ping"`
	}
	if err := json.Unmarshal(m.Payload, &req); err != nil {
		c.fail(err)
		return false
	}
	id := req.Identifier
	if id == "" {
		var r [4]byte
		_, _ = rand.Read(r[:])
		id = "org.mbus.client." + hex.EncodeToString(r[:])
	}
	if id == ServerID || strings.HasPrefix(id, "$") {
		c.result(m.Sequence, -1, map[string]string{"error": "identifier reserved"})
		c.closeAfter("internal_error")
		return false
	}
	creds := auth.Credentials{Face: "mbus", Username: id, Password: []byte(req.Password), ClientID: id,
		RemoteAddr: c.nc.RemoteAddr().String()}
	creds.CertIdentity = netio.CertIdentity(c.nc, c.tls, c.identify)
	if req.Password == "" {
		creds.Username = "" // no password: anonymous, or the certificate
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.srv.cfg.CreateTimeout)
	p, err := c.srv.b.Authenticate(ctx, creds)
	cancel()
	if err == nil {
		c.mu.Lock()
		c.id, c.principal = id, p
		c.mu.Unlock()
		err = c.attach(p, id)
	}
	if err != nil {
		c.result(m.Sequence, -1, map[string]string{"error": err.Error()})
		c.closeAfter("internal_error")
		return false
	}
	compression := "none"
	for _, o := range req.Compressions {
		if o == "zlib" {
			compression = "zlib"
		}
	}
	interval, timeout, threshold := req.Ping.Interval, min(req.Ping.Timeout, req.Ping.Interval), max(req.Ping.Threshold, 0)
	// The result goes uncompressed; everything after it in both directions is compressed.
	c.result(m.Sequence, 0, map[string]any{"identifier": id, "compression": compression,
		"ping": map[string]int{"interval": interval, "timeout": timeout, "threshold": threshold}})
	c.mu.Lock()
	c.created = true
	c.zlib = compression == "zlib"
	if interval > 0 {
		c.pingInterval, c.pingTimeout, c.pingThreshold = time.Duration(interval)*time.Millisecond, time.Duration(timeout)*time.Millisecond, threshold
		c.lastPing = time.Now()
	}
	c.mu.Unlock()
	if c.out.ArmRead(time.Time{}) != nil {
		return false
	}
	if interval > 0 {
		go c.watchPings()
	}
	return true
}

// attach connects the client's core session: its identifier is the client id (unique while
// connected), with the implicit subscriptions every mBus client has.
func (c *conn) attach(p *auth.Principal, id string) error {
	client, _, err := c.srv.b.Connect(context.Background(), broker.ConnectRequest{
		ClientID: id, Principal: p, CleanStart: true, Exclusive: true, Sink: (*sink)(c),
		Announce: true, Face: "mbus", RemoteAddr: c.nc.RemoteAddr().String(), Batch: &c.batch,
	})
	if errors.Is(err, broker.ErrClientIDInUse) {
		return errors.New("identifier already in use")
	}
	if err != nil {
		return err
	}
	client.Subscribe([]broker.SubscribeRequest{
		{Filter: "mbus-all/#", NoLocal: true},
		{Filter: "mbus-to/" + topic.EscapeLevel(id) + "/#"},
		{Filter: responseTopic(id)}, // QoS 0: mBus has no acknowledgements, and the sink never refuses
	})
	c.mu.Lock()
	c.client = client
	c.mu.Unlock()
	client.Start()
	return nil
}

func responseTopic(id string) string { return broker.ResponsePrefix(id) + "/mbus" }

// watchPings closes a client that misses more than threshold pings in a row.
func (c *conn) watchPings() {
	c.mu.Lock()
	every := c.pingInterval
	c.mu.Unlock()
	t := time.NewTicker(min(every, time.Second))
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case now := <-t.C:
			c.mu.Lock()
			if now.After(c.lastPing.Add(c.pingInterval + c.pingTimeout)) {
				c.missed++
				c.lastPing = c.lastPing.Add(c.pingInterval)
			}
			over := c.missed > c.pingThreshold
			c.mu.Unlock()
			if over {
				c.close("ping_threshold")
				return
			}
		}
	}
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// event publishes an event of this client to its destination.
func (c *conn) event(dest, name string, payload json.RawMessage) {
	c.mu.Lock()
	id, client := c.id, c.client
	c.mu.Unlock()
	if dest == ServerID {
		if name == EventPing {
			c.mu.Lock()
			c.lastPing, c.missed = time.Now(), 0
			c.mu.Unlock()
			seq := c.nextSeq()
			c.send(Message{Type: TypeEvent, Source: ServerID, Identifier: EventPong, Sequence: &seq, Payload: json.RawMessage("{}")}, &c.batch)
		}
		return
	}
	var t string
	switch dest {
	case DestinationSubscribers:
		t = eventTopic(id, name)
	case DestinationAll:
		t = allTopic(id, name)
	default:
		t = directTopic(dest, id, name)
	}
	msg := &message.Message{Topic: t, Payload: payload}
	msg.Props.ContentType = "application/json"
	if _, err := client.Publish(msg); err != nil && !errors.Is(err, broker.ErrNoResponders) {
		c.srv.log.Debug("mbus event not published", "client", id, "event", name, "err", err)
	}
}

func (c *conn) nextSeq() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.eventSeq++
	if c.eventSeq >= 9999 {
		c.eventSeq = 1
	}
	return c.eventSeq
}

// call forwards a command to the procedure $rpc/{destination}/{command}; the result comes back
// on the client's response topic, correlated by its sequence.
func (c *conn) call(m Message) {
	c.mu.Lock()
	id, client := c.id, c.client
	c.mu.Unlock()
	msg := &message.Message{Topic: procedureTopic(m.Destination, m.Identifier), Payload: m.Payload, QoS: 1}
	msg.Props.ContentType = "application/json"
	msg.Props.ResponseTopic = responseTopic(id)
	msg.Props.CorrelationData = []byte(strconv.Itoa(*m.Sequence))
	msg.Props.User = []message.UserProperty{{Key: "mbus-source", Value: id}}
	if _, err := client.Publish(msg); err != nil {
		// Nobody serves it (the core also sends the failure reply, which finds no call left),
		// or it is not granted: the caller hears at once.
		c.result(m.Sequence, -1, struct{}{})
	}
}

// sink is the conn as the core's broker.Sink.
type sink conn

// RemoteAddr names the client's end of the connection for the core's logs (broker.RemoteNamer).
func (k *sink) RemoteAddr() string { return (*conn)(k).nc.RemoteAddr().String() }

func (k *sink) Send(d broker.Delivery) broker.SendResult {
	c := (*conn)(k)
	m := d.Msg
	c.mu.Lock()
	id := c.id
	c.mu.Unlock()
	switch {
	case m.Topic == responseTopic(id):
		seq, err := strconv.Atoi(string(m.Props.CorrelationData))
		if err != nil {
			return broker.Sent
		}
		status := 0
		if v := m.Props.UserValue(broker.StatusProperty); v != "" {
			status = atoi(v)
		}
		payload := jsonPayload(m.Payload)
		if m.Props.UserValue(broker.ErrorProperty) != "" {
			status, payload = -1, json.RawMessage("{}")
		}
		c.send(Message{Type: TypeResult, Sequence: &seq, Status: &status, Payload: payload}, d.Batch)
	case strings.HasPrefix(m.Topic, broker.RPCPrefix):
		cmd := unescapeLevel(m.Topic[strings.LastIndexByte(m.Topic, '/')+1:])
		caller := m.Props.UserValue("mbus-source")
		if caller == "" {
			caller = m.Sender // a call from another face
		}
		seq, err := strconv.Atoi(string(m.Props.CorrelationData))
		if err != nil || m.Props.UserValue("mbus-source") == "" {
			seq = c.nextSeq()
		}
		c.mu.Lock()
		c.calls[callKey{caller, seq, cmd}] = callRoute{reply: m.Props.ResponseTopic, corr: append([]byte(nil), m.Props.CorrelationData...)}
		c.mu.Unlock()
		c.send(Message{Type: TypeCommand, Source: caller, Identifier: cmd, Sequence: &seq, Payload: jsonPayload(m.Payload)}, d.Batch)
	default:
		source, event, ok := eventOf(m.Topic)
		if !ok {
			// Another face published below a topic an mBus client subscribed to with MQTT
			// wildcards? mBus subscriptions only take mbus/ topics; anything else is not ours.
			return broker.Sent
		}
		seq := c.nextSeq()
		c.send(Message{Type: TypeEvent, Source: source, Identifier: event, Sequence: &seq, Payload: jsonPayload(m.Payload)}, d.Batch)
	}
	return broker.Sent
}

func (k *sink) Release(uint16)           {}
func (k *sink) Close(reason error)       { (*conn)(k).close(closeReason(reason)) }
func (k *sink) Drained() <-chan struct{} { return nil }

func closeReason(err error) string {
	if errors.Is(err, broker.ErrServerShuttingDown) {
		return "connection_closed"
	}
	return "unknown"
}
