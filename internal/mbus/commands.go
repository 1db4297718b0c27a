package mbus

import (
	"encoding/json"
	"net"
	"sort"
	"strconv"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/message"
)

// serverEvent publishes an org.mbus.server event to its subscribers (any face may subscribe to
// mbus/org.mbus.server/#).
func (s *Server) serverEvent(name string, payload any) {
	b, _ := json.Marshal(payload)
	m := &message.Message{Topic: eventTopic(ServerID, name), Payload: b}
	m.Props.ContentType = "application/json"
	if _, err := s.b.PublishAs(auth.Unrestricted(""), auth.Publish, m); err != nil {
		s.log.Debug("mbus server event not published", "event", name, "err", err)
	}
}

// serverCommand answers a command to org.mbus.server.
func (c *conn) serverCommand(m Message) {
	c.mu.Lock()
	id, client, p := c.id, c.client, c.principal
	c.mu.Unlock()
	var req map[string]json.RawMessage
	_ = json.Unmarshal(m.Payload, &req)
	str := func(k string) string {
		var v string
		_ = json.Unmarshal(req[k], &v)
		return v
	}
	ok := func(payload any) { c.result(m.Sequence, 0, payload) }
	no := func() { c.result(m.Sequence, -1, struct{}{}) }
	switch m.Identifier {
	case "command.create":
		no() // twice
	case "command.subscribe", "command.unsubscribe":
		source, event := str("source"), str("event")
		if source == "" || event == "" {
			no()
			return
		}
		f := subscriptionFilter(source, event)
		key := [2]string{source, event}
		if m.Identifier == "command.subscribe" {
			if res := client.Subscribe([]broker.SubscribeRequest{{Filter: f}}); res[0].Err != nil {
				no()
				return
			}
			c.mu.Lock()
			c.subs[key] = true
			c.mu.Unlock()
			ok(struct{}{}) // the core announces it; the relay makes it the mBus event
			return
		}
		c.mu.Lock()
		had := c.subs[key]
		delete(c.subs, key)
		c.mu.Unlock()
		if !had {
			no()
			return
		}
		client.Unsubscribe([]string{f})
		ok(struct{}{})
	case "command.register", "command.unregister":
		// "service" (tern's, ignored by mBus) opts in to sharing: the client serves the command
		// as one instance of that namespace, and each call to it goes to one instance.
		key := registration{service: str("service"), cmd: str("command")}
		if key.cmd == "" {
			no()
			return
		}
		f := procedureTopic(id, key.cmd)
		if key.service != "" {
			f = sharedProcedureFilter(key.service, key.cmd)
		}
		if m.Identifier == "command.register" {
			if res := client.Subscribe([]broker.SubscribeRequest{{Filter: f}}); res[0].Err != nil {
				no()
				return
			}
			c.mu.Lock()
			c.cmds[key] = true
			c.mu.Unlock()
			ok(struct{}{})
			return
		}
		c.mu.Lock()
		had := c.cmds[key]
		delete(c.cmds, key)
		c.mu.Unlock()
		if !had {
			no() // mBus crashes here; tern answers -1
			return
		}
		client.Unsubscribe([]string{f})
		ok(struct{}{})
	case "command.event":
		var ev struct {
			Destination string          `json:"org.mbus.method.tag.destination"`
			Identifier  string          `json:"org.mbus.method.tag.identifier"`
			Payload     json.RawMessage `json:"org.mbus.method.tag.payload"`
		}
		if json.Unmarshal(m.Payload, &ev) != nil || ev.Destination == "" || ev.Identifier == "" || ev.Payload == nil {
			no()
			return
		}
		c.event(ev.Destination, ev.Identifier, ev.Payload)
		ok(struct{}{})
	case "command.result":
		c.resultFromCallee(m, req)
	case "command.status":
		var out []clientInfo
		for _, o := range c.srv.all() {
			out = append(out, o.info())
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Source < out[j].Source })
		ok(orEmpty(out))
	case "command.clients":
		var ids []string
		for _, o := range c.srv.all() {
			if oid := o.identifier(); oid != "" {
				ids = append(ids, oid)
			}
		}
		sort.Strings(ids)
		ok(orEmpty(ids))
	case "command.client":
		o := c.srv.byID(str("source"))
		if o == nil {
			no()
			return
		}
		ok(o.info())
	case "command.close":
		// Closing others is administration: it needs the admin grant. Nobody stops the
		// broker this way.
		target := str("source")
		o := c.srv.byID(target)
		if o == nil || target == ServerID || !p.Allow(auth.Admin, "mbus/clients") {
			no()
			return
		}
		ok(struct{}{})
		o.close("close_command")
	default:
		no()
	}
}

// resultFromCallee completes a call this client received: {destination: caller, identifier:
// command, sequence: the caller's, status, payload}.
func (c *conn) resultFromCallee(m Message, req map[string]json.RawMessage) {
	var key callKey
	var status = -1
	_ = json.Unmarshal(req[keyDestination], &key.caller)
	_ = json.Unmarshal(req[keyIdentifier], &key.cmd)
	_ = json.Unmarshal(req[keySequence], &key.seq)
	if v, ok := req[keyStatus]; ok {
		_ = json.Unmarshal(v, &status)
	}
	c.mu.Lock()
	route, ok := c.calls[key]
	delete(c.calls, key)
	client := c.client
	c.mu.Unlock()
	if ok {
		reply := &message.Message{Topic: route.reply, Payload: req[keyPayload], QoS: 1}
		reply.Props.CorrelationData = route.corr
		reply.Props.ContentType = "application/json"
		reply.Props.User = []message.UserProperty{{Key: broker.StatusProperty, Value: strconv.Itoa(status)}}
		if _, err := client.Publish(reply); err != nil {
			c.srv.log.Debug("mbus result not delivered", "err", err)
		}
	}
	c.result(m.Sequence, 0, struct{}{}) // mBus answers the callee 0 even without a match
}

// clientInfo is a client as command.status and command.client describe it.
type clientInfo struct {
	Source        string              `json:"source"`
	Address       string              `json:"address"`
	Port          int                 `json:"port"`
	Subscriptions []map[string]string `json:"subscriptions"`
	Commands      []map[string]string `json:"commands"`
}

func (c *conn) info() clientInfo {
	host, port, _ := net.SplitHostPort(c.nc.RemoteAddr().String())
	c.mu.Lock()
	defer c.mu.Unlock()
	ci := clientInfo{Source: c.id, Address: host, Port: atoi(port), Subscriptions: []map[string]string{}, Commands: []map[string]string{}}
	for k := range c.subs {
		ci.Subscriptions = append(ci.Subscriptions, map[string]string{"source": k[0], "identifier": k[1]})
	}
	for r := range c.cmds {
		cmd := map[string]string{"identifier": r.cmd}
		if r.service != "" {
			cmd["service"] = r.service
		}
		ci.Commands = append(ci.Commands, cmd)
	}
	return ci
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
