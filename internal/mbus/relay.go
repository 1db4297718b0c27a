package mbus

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/message"
)

// relay turns the core's server events ($SYS/events/...), which cover every face, into mBus's
// org.mbus.server events, so an mBus client subscribed to org.mbus.server hears MQTT, WebSocket
// and mBus clients come and go, subscribe and register alike.
type relay struct {
	s      *Server
	ch     chan *message.Message
	client *broker.Client
	done   chan struct{}
}

func (s *Server) startRelay() {
	p, err := auth.NewPrincipal("", "$mbus-relay", []auth.Grant{{Action: auth.Subscribe, Filter: broker.EventsPrefix + "#"}})
	if err != nil {
		return
	}
	r := &relay{s: s, ch: make(chan *message.Message, 1024), done: make(chan struct{})}
	c, _, err := s.b.Connect(context.Background(), broker.ConnectRequest{ClientID: "$mbus-relay", Principal: p, CleanStart: true, Sink: (*relaySink)(r)})
	if err != nil {
		s.log.Warn("mbus: server events unavailable", "err", err)
		return
	}
	c.Subscribe([]broker.SubscribeRequest{{Filter: broker.EventsPrefix + "#"}})
	c.Start()
	r.client = c
	s.mu.Lock()
	s.relay = r
	s.mu.Unlock()
	go r.run()
}

func (r *relay) stop() {
	close(r.done)
	r.client.Disconnect(broker.DisconnectRequest{Graceful: true})
}

func (r *relay) run() {
	for {
		select {
		case m := <-r.ch:
			r.translate(m)
		case <-r.done:
			return
		}
	}
}

// translate republishes one core event as its mBus event.
func (r *relay) translate(m *message.Message) {
	var f map[string]string
	if json.Unmarshal(m.Payload, &f) != nil {
		return
	}
	id := f["client_id"]
	var name string
	var payload any
	switch strings.TrimPrefix(m.Topic, broker.EventsPrefix) {
	case "connected":
		host, port := splitHostPort(f["remote"])
		name, payload = EventConnected, map[string]any{"source": id, "address": host, "port": port}
	case "disconnected":
		name, payload = EventDisconnected, map[string]string{"source": id, "reason": f["reason"]}
	case "subscribed", "unsubscribed":
		filter := f["filter"]
		if strings.HasPrefix(filter, "mbus-all/") || strings.HasPrefix(filter, "mbus-to/") || strings.HasPrefix(filter, "$response/") {
			return // an mBus client's implicit subscriptions
		}
		source, event := filter, ""
		if src, ev, ok := eventOf(filter); ok && strings.HasPrefix(filter, "mbus/") {
			source, event = allValue(src, SourceAll), allValue(ev, EventAll)
		}
		name = EventSubscribed
		if strings.HasPrefix(m.Topic, broker.EventsPrefix+"un") {
			name = EventUnsubscribed
		}
		payload = map[string]string{"source": id, "destination": source, "identifier": event}
	case "registered", "unregistered":
		name = EventRegistered
		if strings.HasPrefix(m.Topic, broker.EventsPrefix+"un") {
			name = EventUnregistered
		}
		payload = map[string]string{"source": id, "identifier": unescapeLevel(f["procedure"])}
	default:
		return
	}
	r.s.serverEvent(name, payload)
}

// allValue maps the wildcard of an mBus subscription filter back to mBus's .all constant.
func allValue(v, all string) string {
	if v == "+" {
		return all
	}
	return v
}

func splitHostPort(a string) (string, int) {
	i := strings.LastIndexByte(a, ':')
	if i < 0 {
		return a, 0
	}
	return strings.Trim(a[:i], "[]"), atoi(a[i+1:])
}

// relaySink hands events to the relay's goroutine: a sink must not call back into the core.
type relaySink relay

func (k *relaySink) Send(d broker.Delivery) broker.SendResult {
	select {
	case k.ch <- d.Msg.Clone():
		return broker.Sent
	default:
		return broker.Busy
	}
}
func (k *relaySink) Release(uint16)           {}
func (k *relaySink) Close(error)              {}
func (k *relaySink) Drained() <-chan struct{} { return nil }
