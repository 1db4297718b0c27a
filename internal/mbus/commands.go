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

// serverRequest is a command to the broker: its sequence, for the answer, and its payload's
// fields.
type serverRequest struct {
	seq *int
	req map[string]json.RawMessage
}

// str is a string field of the payload ("" when missing or not a string).
func (r serverRequest) str(k string) string {
	var v string
	_ = json.Unmarshal(r.req[k], &v)
	return v
}

// serverCommand answers a command addressed to the broker itself, as mBus's server does.
func (c *conn) serverCommand(m Message) {
	r := serverRequest{seq: m.Sequence}
	_ = json.Unmarshal(m.Payload, &r.req)
	if m.Identifier == "command.result" {
		c.resultFromCallee(m, r.req)
		return
	}
	answer, ok := c.serverAnswer(m, r)
	if !ok {
		c.result(r.seq, -1, struct{}{})
		return
	}
	c.result(r.seq, 0, answer)
	if m.Identifier == "command.close" {
		answer.(closeTarget).conn.close("close_command")
	}
}

// closeTarget is command.close's answer: empty, then the client is closed.
type closeTarget struct {
	conn *conn
}

// serverAnswer is the payload of a successful answer to a broker command; ok is false for a
// refusal (mBus status -1).
func (c *conn) serverAnswer(m Message, r serverRequest) (answer any, ok bool) {
	switch m.Identifier {
	case "command.subscribe", "command.unsubscribe":
		source, event := r.str("source"), r.str("event")
		if source == "" || event == "" {
			return nil, false
		}
		// The core announces a subscription; the relay makes it the mBus event.
		return struct{}{}, track(c, c.subs, [2]string{source, event}, subscriptionFilter(source, event),
			m.Identifier == "command.subscribe")
	case "command.register", "command.unregister":
		// "service" (tern's, ignored by mBus) opts in to sharing: the client serves the command
		// as one instance of that namespace, and each call to it goes to one instance.
		key := registration{service: r.str("service"), cmd: r.str("command")}
		if key.cmd == "" {
			return nil, false
		}
		f := procedureTopic(c.identifier(), key.cmd)
		if key.service != "" {
			f = sharedProcedureFilter(key.service, key.cmd)
		}
		// Unregistering what was not registered crashes mBus; tern answers -1.
		return struct{}{}, track(c, c.cmds, key, f, m.Identifier == "command.register")
	case "command.event":
		var ev struct {
			Destination string          `json:"org.mbus.method.tag.destination"`
			Identifier  string          `json:"org.mbus.method.tag.identifier"`
			Payload     json.RawMessage `json:"org.mbus.method.tag.payload"`
		}
		if json.Unmarshal(m.Payload, &ev) != nil || ev.Destination == "" || ev.Identifier == "" || ev.Payload == nil {
			return nil, false
		}
		c.event(ev.Destination, ev.Identifier, ev.Payload)
		return struct{}{}, true
	case "command.status":
		// On a cluster node, every node's clients, each with its "node" (cluster.go).
		var out []clientInfo
		local := map[string]bool{}
		for _, o := range c.srv.all() {
			ci := o.info()
			local[ci.Source] = true
			out = append(out, ci)
		}
		for id, ci := range c.srv.remoteClients() {
			if !local[id] {
				out = append(out, ci)
			}
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Source < out[j].Source })
		return orEmpty(out), true
	case "command.clients":
		var ids []string
		local := map[string]bool{}
		for _, o := range c.srv.all() {
			if oid := o.identifier(); oid != "" {
				local[oid] = true
				ids = append(ids, oid)
			}
		}
		for id := range c.srv.remoteClients() {
			if !local[id] {
				ids = append(ids, id)
			}
		}
		sort.Strings(ids)
		return orEmpty(ids), true
	case "command.client":
		if o := c.srv.byID(r.str("source")); o != nil {
			return o.info(), true
		}
		ci, ok := c.srv.remoteClients()[r.str("source")]
		return ci, ok
	case "command.close":
		// Closing others is administration: it needs the admin grant. Nobody stops the
		// broker this way.
		target := r.str("source")
		o := c.srv.byID(target)
		c.mu.Lock()
		p := c.principal
		c.mu.Unlock()
		if o == nil || target == ServerID || !p.Allow(auth.Admin, "mbus/clients") {
			return nil, false
		}
		return closeTarget{conn: o}, true
	default: // including a second command.create
		return nil, false
	}
}

// track subscribes the client to filter and records key in set (on), or undoes both (off); it
// reports false when the core refuses the subscription or key was not there to undo.
func track[K comparable](c *conn, set map[K]bool, key K, filter string, on bool) bool {
	c.mu.Lock()
	client := c.client
	c.mu.Unlock()
	if on {
		if res := client.Subscribe([]broker.SubscribeRequest{{Filter: filter}}); res[0].Err != nil {
			return false
		}
		c.mu.Lock()
		set[key] = true
		c.mu.Unlock()
		return true
	}
	c.mu.Lock()
	had := set[key]
	delete(set, key)
	c.mu.Unlock()
	if had {
		client.Unsubscribe([]string{filter})
	}
	return had
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
	// Node is the cluster node the client is connected to; left out on a single node.
	Node string `json:"node,omitempty"`
}

func (c *conn) info() clientInfo {
	host, port, _ := net.SplitHostPort(c.nc.RemoteAddr().String())
	c.mu.Lock()
	defer c.mu.Unlock()
	ci := clientInfo{Source: c.id, Address: host, Port: atoi(port), Subscriptions: []map[string]string{}, Commands: []map[string]string{},
		Node: c.srv.localNode()}
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
