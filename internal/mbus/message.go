package mbus

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/topic"
)

// The protocol's long names.
const (
	TypeCommand = "org.mbus.method.type.command"
	TypeEvent   = "org.mbus.method.type.event"
	TypeResult  = "org.mbus.method.type.result"

	ServerID = "org.mbus.server"

	SourceAll              = "org.mbus.method.event.source.all"
	EventAll               = "org.mbus.method.event.identifier.all"
	DestinationAll         = "org.mbus.method.event.destination.all"
	DestinationSubscribers = "org.mbus.method.event.destination.subscribers"

	EventPing         = "org.mbus.server.event.ping"
	EventPong         = "org.mbus.server.event.pong"
	EventConnected    = "org.mbus.server.event.connected"
	EventDisconnected = "org.mbus.server.event.disconnected"
	EventSubscribed   = "org.mbus.server.event.subscribed"
	EventUnsubscribed = "org.mbus.server.event.unsubscribed"
	EventRegistered   = "org.mbus.server.event.registered"
	EventUnregistered = "org.mbus.server.event.unregistered"

	keyDestination = "org.mbus.method.tag.destination"
	keyIdentifier  = "org.mbus.method.tag.identifier"
	keySequence    = "org.mbus.method.tag.sequence"
	keyStatus      = "org.mbus.method.tag.status"
	keyPayload     = "org.mbus.method.tag.payload"
)

// Message is one mBus message, both ways.
type Message struct {
	Type        string          `json:"org.mbus.method.tag.type"`
	Source      string          `json:"org.mbus.method.tag.source,omitempty"`
	Destination string          `json:"org.mbus.method.tag.destination,omitempty"`
	Identifier  string          `json:"org.mbus.method.tag.identifier,omitempty"`
	Sequence    *int            `json:"org.mbus.method.tag.sequence,omitempty"`
	Timeout     *int            `json:"org.mbus.method.tag.timeout,omitempty"`
	Payload     json.RawMessage `json:"org.mbus.method.tag.payload,omitempty"`
	Status      *int            `json:"org.mbus.method.tag.status,omitempty"`
}

var errMessage = errors.New("mbus: bad message")

// decodeRequest parses a client's message and checks what mBus requires of it: a type, a
// destination, an identifier, a sequence other than -1, and a payload key.
//
// Keys are matched exactly, as mBus does; encoding/json would also take "ORG.MBUS.…" for a
// struct field, so the object is read as a map first.
func decodeRequest(b []byte) (Message, error) {
	var m Message
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return m, errors.Join(errMessage, err)
	}
	for _, f := range []struct {
		key string
		dst any
	}{
		{"org.mbus.method.tag.type", &m.Type},
		{"org.mbus.method.tag.source", &m.Source},
		{keyDestination, &m.Destination},
		{keyIdentifier, &m.Identifier},
		{keySequence, &m.Sequence},
		{"org.mbus.method.tag.timeout", &m.Timeout},
		{keyStatus, &m.Status},
	} {
		if v, ok := fields[f.key]; ok {
			if err := json.Unmarshal(v, f.dst); err != nil {
				return m, errors.Join(errMessage, fmt.Errorf("%s: %w", f.key, err))
			}
		}
	}
	// Any value counts, null too: mBus only checks that the key is there.
	m.Payload = fields[keyPayload]
	switch {
	case m.Type != TypeCommand && m.Type != TypeEvent && m.Type != TypeResult:
		return m, errors.Join(errMessage, errors.New("unknown type "+m.Type))
	case m.Destination == "" || m.Identifier == "":
		return m, errors.Join(errMessage, errors.New("destination and identifier are required"))
	case m.Sequence == nil || *m.Sequence == -1:
		return m, errors.Join(errMessage, errors.New("sequence is required"))
	case m.Payload == nil:
		return m, errors.Join(errMessage, errors.New("payload is required"))
	}
	return m, nil
}

// The topic scheme: how mBus events travel as core messages.
//
//	mbus/{source}/{event}          an event to its subscribers; any face may publish or subscribe
//	mbus-all/{source}/{event}      an event to every mBus client but its publisher
//	mbus-to/{client}/{source}/{event}   an event to one mBus client
//
// with each name one topic level (topic.EscapeLevel). Commands are procedures:
// $rpc/{identifier}/{command}.

func eventTopic(source, event string) string {
	return "mbus/" + topic.EscapeLevel(source) + "/" + topic.EscapeLevel(event)
}

func allTopic(source, event string) string {
	return "mbus-all/" + topic.EscapeLevel(source) + "/" + topic.EscapeLevel(event)
}

func directTopic(to, source, event string) string {
	return "mbus-to/" + topic.EscapeLevel(to) + "/" + topic.EscapeLevel(source) + "/" + topic.EscapeLevel(event)
}

// procedureTopic is the topic of command cmd of client id: $rpc/{id}/{cmd}.
func procedureTopic(id, cmd string) string {
	return broker.ProcedureTopic(topic.EscapeLevel(id), topic.EscapeLevel(cmd))
}

// sharedProcedureFilter serves command cmd of service as one of its instances:
// $share/{service}/$rpc/{service}/{cmd}.
func sharedProcedureFilter(service, cmd string) string {
	return "$share/" + topic.EscapeLevel(service) + "/" + procedureTopic(service, cmd)
}

// subscriptionFilter is the filter of an mBus subscription (source, event), with the .all
// values as wildcards.
func subscriptionFilter(source, event string) string {
	s, e := "+", "+"
	if source != SourceAll {
		s = topic.EscapeLevel(source)
	}
	if event != EventAll {
		e = topic.EscapeLevel(event)
	}
	return "mbus/" + s + "/" + e
}

// unescapeLevel undoes topic.EscapeLevel.
func unescapeLevel(s string) string {
	if s == "%00" {
		return ""
	}
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			if v, ok := unhex(s[i+1], s[i+2]); ok {
				b.WriteByte(v)
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func unhex(a, b byte) (byte, bool) {
	h := func(c byte) (byte, bool) {
		switch {
		case c >= '0' && c <= '9':
			return c - '0', true
		case c >= 'A' && c <= 'F':
			return c - 'A' + 10, true
		}
		return 0, false
	}
	x, ok1 := h(a)
	y, ok2 := h(b)
	return x<<4 | y, ok1 && ok2
}

// eventOf reads the source and event of a message on one of the event topics.
func eventOf(t string) (source, event string, ok bool) {
	parts := strings.Split(t, "/")
	switch {
	case len(parts) == 3 && (parts[0] == "mbus" || parts[0] == "mbus-all"):
		return unescapeLevel(parts[1]), unescapeLevel(parts[2]), true
	case len(parts) == 4 && parts[0] == "mbus-to":
		return unescapeLevel(parts[2]), unescapeLevel(parts[3]), true
	}
	return "", "", false
}

// jsonPayload is a core payload as an mBus payload: JSON as it is, anything else as a string.
func jsonPayload(b []byte) json.RawMessage {
	if json.Valid(b) {
		return b
	}
	s, _ := json.Marshal(string(b))
	return s
}
