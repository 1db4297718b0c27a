package httpapi

import (
	"encoding/base64"
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/ternmq/tern/internal/message"
)

// Event is a message as the HTTP face shows it (SSE data, an NDJSON line, a long-poll element).
// A payload that is valid UTF-8 is in Payload, any other in PayloadBase64.
type Event struct {
	ID              string         `json:"id"` // a string: JavaScript numbers lose 64-bit ids
	Topic           string         `json:"topic"`
	Payload         *string        `json:"payload,omitempty"`
	PayloadBase64   string         `json:"payload_base64,omitempty"`
	QoS             byte           `json:"qos"`
	Retain          bool           `json:"retain,omitempty"`
	Time            string         `json:"time"`
	Sender          string         `json:"sender,omitempty"`
	ContentType     string         `json:"content_type,omitempty"`
	ResponseTopic   string         `json:"response_topic,omitempty"`
	CorrelationData string         `json:"correlation_data,omitempty"` // base64
	UserProperties  []UserProperty `json:"user_properties,omitempty"`
	Expires         string         `json:"expires,omitempty"`
}

// UserProperty is one MQTT 5 user property; there may be several with one key.
type UserProperty struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

func eventOf(m *message.Message, retain bool) Event {
	e := Event{
		ID: strconv.FormatUint(m.ID, 10), Topic: m.Topic, QoS: m.QoS, Retain: retain,
		Time: time.Unix(0, m.Time).UTC().Format(time.RFC3339Nano), Sender: m.Sender,
		ContentType: m.Props.ContentType, ResponseTopic: m.Props.ResponseTopic,
	}
	if utf8.Valid(m.Payload) {
		s := string(m.Payload)
		e.Payload = &s
	} else {
		e.PayloadBase64 = base64.StdEncoding.EncodeToString(m.Payload)
	}
	if m.Props.CorrelationData != nil {
		e.CorrelationData = base64.StdEncoding.EncodeToString(m.Props.CorrelationData)
	}
	for _, u := range m.Props.User {
		e.UserProperties = append(e.UserProperties, UserProperty{u.Key, u.Value})
	}
	if m.Expires != 0 {
		e.Expires = time.Unix(0, m.Expires).UTC().Format(time.RFC3339Nano)
	}
	return e
}

func encodeEvent(m *message.Message, retain bool) []byte {
	b, _ := json.Marshal(eventOf(m, retain)) // plain strings and numbers: cannot fail
	return b
}
