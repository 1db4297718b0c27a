package httpapi

// mq-go's API, so its clients work against tern unchanged:
//
//	/connect     {"ClientURL": U, "Mode": "send"|"receive"}  -> {'id': N}   (single quotes, as mq-go)
//	/send        {"id": N, "body": B}                        -> {"status": "Message enqueued", "id": N}
//	/disconnect  {"id": N}                                   -> {"status":"Disconnected.", "id": N}
//
// with or without a trailing slash (no redirect), any method, always 200 as mq-go does. A
// receiver is a webhook on the topic mqgo/queue, so every receiver gets every message (mq-go's
// broadcast), by POST of the raw text, retried with backoff, without one slow receiver holding up
// the others. Messages sent while no receiver exists wait in a durable backlog and go out when
// the first receiver connects. Unlike mq-go, ids survive restarts, a failed delivery never stops
// the server, and trailing commas (as in mq-go's README examples) are accepted.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"

	"github.com/tailscale/hujson"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/httpauth"
	"github.com/ternmq/tern/internal/message"
	"github.com/ternmq/tern/internal/store"
	"github.com/ternmq/tern/internal/webhook"
)

// MQGoTopic is where mq-go's messages travel in tern.
const MQGoTopic = "mqgo/queue"

const (
	mqgoNS      = "mqgo"
	mqgoCounter = "next-id"
	// mqgoBacklog is the internal session holding messages sent while no receiver exists.
	mqgoBacklog = "$mqgo-backlog"
)

// mqgoClient is what /connect registered.
type mqgoClient struct {
	Mode    string `json:"mode"`
	URL     string `json:"url"`
	Webhook string `json:"webhook,omitempty"`
}

type mqgo struct {
	s     *Server
	hooks *webhook.Manager
	st    store.Records
	*mqgoState
}

// mqgoState is shared by the listeners.
type mqgoState struct {
	// mu serialises connect, send and disconnect: the id counter, and the switch between
	// receivers and the backlog, so no message is published to neither.
	mu sync.Mutex
	// held is set once the backlog is known to be subscribed (it may be after a restart too).
	held bool
}

// decodeLenient is Go's JSON decoding (field names case-insensitive, as mq-go) of a body that may
// be JWCC, JSON with comments and trailing commas as in mq-go's README examples: hujson turns it
// into standard JSON without touching string contents. The body is bounded by the HTTP API's
// max_body.
func decodeLenient(r *http.Request, v any, limit int64) error {
	raw, err := readGrowing(io.LimitReader(r.Body, limit), r.ContentLength, limit)
	if err != nil {
		return err
	}
	return decodeJWCC(raw, v)
}

func decodeJWCC(raw []byte, v any) error {
	std, err := hujson.Standardize(raw)
	if err != nil {
		return err
	}
	return json.Unmarshal(std, v)
}

// RegisterMQGo adds mq-go's routes.
func (s *Server) RegisterMQGo(mux *http.ServeMux, hooks *webhook.Manager, st store.Records, identify httpauth.Identify) {
	v := *s
	v.identify = identify
	q := &mqgo{s: &v, hooks: hooks, st: st, mqgoState: s.mqgo}
	for _, path := range []string{"/connect", "/connect/"} {
		mux.HandleFunc(path, q.connect)
	}
	for _, path := range []string{"/send", "/send/"} {
		mux.HandleFunc(path, q.send)
	}
	for _, path := range []string{"/disconnect", "/disconnect/"} {
		mux.HandleFunc(path, q.disconnect)
	}
}

func mqgoReply(w http.ResponseWriter, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, body)
}

func (q *mqgo) connect(w http.ResponseWriter, r *http.Request) {
	p := q.s.principal(w, r)
	if p == nil {
		return
	}
	var b struct {
		ClientURL string
		Mode      string
	}
	if err := decodeLenient(r, &b, q.s.cfg.MaxBody); err != nil || (b.Mode != "send" && b.Mode != "receive") {
		q.s.log.Info("mq-go connect refused: mode must be send or receive", "err", err, "mode", b.Mode)
		mqgoReply(w, "") // mq-go answers 200 with nothing
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	id, err := q.nextID()
	if err != nil {
		q.s.log.Warn("mq-go connect failed", "err", err)
		mqgoReply(w, "")
		return
	}
	c := mqgoClient{Mode: b.Mode, URL: b.ClientURL}
	if b.Mode == "receive" {
		h, err := q.hooks.Create(p, webhook.Hook{Filter: MQGoTopic, URL: b.ClientURL})
		if err != nil {
			q.s.log.Info("mq-go receiver refused", "url", b.ClientURL, "err", err)
			mqgoReply(w, "")
			return
		}
		c.Webhook = h.ID
	}
	raw, _ := json.Marshal(c)
	if err := q.st.Put(mqgoNS, strconv.FormatUint(id, 10), raw); err != nil {
		q.s.log.Warn("mq-go connect failed", "err", err)
		mqgoReply(w, "")
		return
	}
	if b.Mode == "receive" {
		q.releaseBacklog()
	}
	mqgoReply(w, fmt.Sprintf("{'id': %d}\n", id))
}

// nextID takes the next id of the shared counter (never reused). The caller holds q.mu.
func (q *mqgo) nextID() (uint64, error) {
	var n uint64 = 1
	if v, ok, err := q.st.Get(mqgoNS, mqgoCounter); err != nil {
		return 0, err
	} else if ok {
		n, _ = strconv.ParseUint(string(v), 10, 64)
	}
	return n, q.st.Put(mqgoNS, mqgoCounter, []byte(strconv.FormatUint(n+1, 10)))
}

// receivers counts the registered receivers.
func (q *mqgo) receivers() int {
	n := 0
	_ = q.st.Scan(mqgoNS, func(k string, v []byte) error {
		var c mqgoClient
		if k != mqgoCounter && json.Unmarshal(v, &c) == nil && c.Mode == "receive" {
			n++
		}
		return nil
	})
	return n
}

func (q *mqgo) send(w http.ResponseWriter, r *http.Request) {
	p := q.s.principal(w, r)
	if p == nil {
		return
	}
	var b struct {
		ID   uint64
		Body string
	}
	if err := decodeLenient(r, &b, q.s.cfg.MaxBody); err != nil {
		mqgoReply(w, fmt.Sprintf("{\"status\": %s, \"id\": %d}\n", appendJSONString(nil, "Error: "+err.Error()), b.ID))
		return
	}
	m := &message.Message{Topic: MQGoTopic, Payload: []byte(b.Body), QoS: 1}
	m.Props.ContentType = "text/plain"
	q.mu.Lock()
	if !q.held && q.receivers() == 0 {
		// Nobody would get it: it waits in the backlog until the first receiver connects.
		q.holdBacklog()
	}
	res, err := q.s.b.PublishAs(p, auth.Publish, m)
	q.mu.Unlock()
	if err == nil && res.Durable != nil {
		err = res.Durable.Wait()
	}
	if err != nil {
		mqgoReply(w, fmt.Sprintf("{\"status\": %s, \"id\": %d}\n", appendJSONString(nil, "Error: "+err.Error()), b.ID))
		return
	}
	mqgoReply(w, fmt.Sprintf("{\"status\": \"Message enqueued\", \"id\": %d}\n", b.ID))
}

func (q *mqgo) disconnect(w http.ResponseWriter, r *http.Request) {
	p := q.s.principal(w, r)
	if p == nil {
		return
	}
	var b struct{ ID uint64 }
	_ = decodeLenient(r, &b, q.s.cfg.MaxBody)
	q.mu.Lock()
	defer q.mu.Unlock()
	key := strconv.FormatUint(b.ID, 10)
	v, ok, err := q.st.Get(mqgoNS, key)
	var c mqgoClient
	if err != nil || !ok || b.ID == 0 || json.Unmarshal(v, &c) != nil {
		mqgoReply(w, fmt.Sprintf("{\"status\":\"Error: no such connection.\", \"id\": %d}\n", b.ID))
		return
	}
	if c.Webhook != "" {
		if err := q.hooks.Delete(p, c.Webhook); err != nil {
			q.s.log.Info("mq-go disconnect: webhook", "err", err)
		}
	}
	_ = q.st.Delete(mqgoNS, key)
	mqgoReply(w, fmt.Sprintf("{\"status\":\"Disconnected.\", \"id\": %d}\n", b.ID))
}

// holdBacklog makes sure the backlog session is subscribed, so messages sent now are kept. It is
// a persistent session without a connection: the core queues for it on disk.
func (q *mqgo) holdBacklog() {
	p, _ := auth.NewPrincipal("", mqgoBacklog, []auth.Grant{{Action: auth.Subscribe, Filter: MQGoTopic}})
	k := &dropSink{}
	c, _, err := q.s.b.Connect(context.Background(), broker.ConnectRequest{ClientID: mqgoBacklog, Principal: p, Expiry: broker.NeverExpire, Sink: k})
	if err != nil {
		q.s.log.Warn("mq-go backlog unavailable", "err", err)
		return
	}
	if res := c.Subscribe([]broker.SubscribeRequest{{Filter: MQGoTopic, QoS: 1}}); res[0].Err == nil {
		q.held = true
	}
	// Not started: nothing is delivered while it is attached, and detaching keeps the queue.
	c.Disconnect(broker.DisconnectRequest{Graceful: true})
}

// releaseBacklog sends what waited in the backlog to the receivers (there is one now) and
// drops the backlog's subscription. The caller holds q.mu.
func (q *mqgo) releaseBacklog() {
	q.held = false
	p, _ := auth.NewPrincipal("", mqgoBacklog, []auth.Grant{{Action: auth.Subscribe, Filter: MQGoTopic}})
	k := newSink(1 << 10)
	c, res, err := q.s.b.Connect(context.Background(), broker.ConnectRequest{ClientID: mqgoBacklog, Principal: p, Expiry: 0, Sink: k, ReceiveMax: 1 << 10})
	if err != nil || !res.SessionPresent {
		if c != nil {
			c.Disconnect(broker.DisconnectRequest{Graceful: true})
		}
		return
	}
	// Unsubscribe first so nothing new lands here; then forward what is queued.
	c.Unsubscribe([]string{MQGoTopic})
	c.Start()
	for {
		batch := k.take(nil, 1<<10)
		if len(batch) == 0 {
			break
		}
		for _, d := range batch {
			m := d.msg
			// Published again under the original sender's name, now that receivers exist.
			if _, err := q.s.b.PublishAs(auth.Unrestricted(m.Sender), auth.Publish, m); err != nil {
				q.s.log.Warn("mq-go backlog message lost", "err", err)
			}
			c.Acked(d.pid)
		}
		k.drained(c)
	}
	c.Disconnect(broker.DisconnectRequest{Graceful: true, SetExpiry: true, Expiry: 0})
}

// dropSink is the sink of a session attached only to change its subscriptions.
type dropSink struct{}

func (dropSink) Send(broker.Delivery) broker.SendResult { return broker.Busy }
func (dropSink) Release(uint16)                         {}
func (dropSink) Close(error)                            {}
func (dropSink) Drained() <-chan struct{}               { return nil }
