// Package message defines the one message type every part of tern shares: faces build it from
// their wire format, the core routes it, the store keeps it.
package message

import (
	"sync/atomic"
	"time"
	"unsafe"
)

// UserProperty is an MQTT 5 user property; other faces map their headers onto it.
type UserProperty struct {
	Key, Value string
}

// Properties are the optional attributes a message carries end to end.
type Properties struct {
	// PayloadFormat is 1 when the publisher declared the payload UTF-8 text, 0 otherwise.
	PayloadFormat   byte
	ContentType     string
	ResponseTopic   string
	CorrelationData []byte
	User            []UserProperty
}

// SenderProperty is the user property under which faces show receivers the sender's
// authenticated identity (MQTT 5 user property, HTTP header). The core removes it from what a
// client publishes, so a client cannot claim to be somebody else.
const SenderProperty = "tern-sender"

// Message is a published message. The core stamps ID, Time and Sender; a face never sets them from
// client input, so a receiver can trust them.
//
// A Message handed to the core's Publish is borrowed for the duration of the call: its strings and
// slices may alias a connection's read buffer. Whatever the core keeps beyond the call (retained
// messages, queued and in-flight deliveries) it keeps through Clone.
type Message struct {
	ID      uint64
	Topic   string
	Payload []byte
	QoS     byte
	Retain  bool
	// Time is when the core accepted the message, in Unix nanoseconds.
	Time int64
	// Expires is the Unix-nanosecond instant after which the message is no longer delivered; 0 never.
	// The core sets it from ExpiryInterval.
	Expires int64
	// ExpiryInterval is how long the message may live, in seconds, from when the core accepts it
	// (a will: from its CONNECT); 0 forever. A face sets it from the client's request, and the core
	// turns it into Expires on its own clock, so expiry is computed in one place.
	ExpiryInterval uint32
	// Sender is the authenticated identity of the publisher ("" for anonymous clients).
	Sender string
	Props  Properties
	// Frames caches a face's wire encodings of this message so that a fan-out to many receivers
	// encodes each distinct frame once. The core never reads it and Clone does not copy it.
	Frames FrameCache
}

// FrameCache holds up to FrameSlots encodings of one message; what each slot means is up to the
// face that fills it. Safe for concurrent use: a message in flight to many sessions may be
// encoded from several goroutines, and the first stored encoding wins.
type FrameCache struct {
	slots [FrameSlots]atomic.Pointer[[]byte]
}

// FrameSlots is the number of encodings a FrameCache holds: 0-7 are MQTT's PUBLISH variants,
// SlotJSON and SlotJSON+1 the HTTP face's JSON event without and with the retain flag.
const FrameSlots = 10

// SlotJSON is the first of the HTTP face's two slots.
const SlotJSON = 8

// Load returns the encoding in slot i, or nil.
func (c *FrameCache) Load(i int) []byte {
	if p := c.slots[i].Load(); p != nil {
		return *p
	}
	return nil
}

// Store keeps b in slot i unless another encoding got there first; it returns the one kept.
func (c *FrameCache) Store(i int, b []byte) []byte {
	if c.slots[i].CompareAndSwap(nil, &b) {
		return b
	}
	return *c.slots[i].Load()
}

// Reset empties the cache, for a Message struct that is reused for the next publish.
func (c *FrameCache) Reset() {
	for i := range c.slots {
		c.slots[i].Store(nil)
	}
}

// Expired reports whether the message's lifetime has passed at now (Unix nanoseconds).
func (m *Message) Expired(now int64) bool {
	return m.Expires != 0 && now >= m.Expires
}

// RemainingExpiry is the lifetime left at now, rounded up to whole seconds as MQTT expresses it,
// and whether the message has an expiry at all.
func (m *Message) RemainingExpiry(now int64) (seconds uint32, ok bool) {
	if m.Expires == 0 {
		return 0, false
	}
	left := m.Expires - now
	if left <= 0 {
		return 0, true
	}
	return uint32((left + int64(time.Second) - 1) / int64(time.Second)), true
}

// Size is the message's approximate memory and storage footprint, used for byte limits on queues.
func (m *Message) Size() int { return m.dataLen() + 64 }

// dataLen is the number of bytes in the message's strings and byte slices.
func (m *Message) dataLen() int {
	n := len(m.Topic) + len(m.Payload) + len(m.Sender) + len(m.Props.ContentType) +
		len(m.Props.ResponseTopic) + len(m.Props.CorrelationData)
	for _, u := range m.Props.User {
		n += len(u.Key) + len(u.Value)
	}
	return n
}

// Clone returns a deep copy that owns all its memory, so it stays valid after the original's
// buffers are reused. Topic, payload and properties share one allocation.
func (m *Message) Clone() *Message {
	c := &Message{
		ID: m.ID, QoS: m.QoS, Retain: m.Retain, Time: m.Time, Expires: m.Expires, ExpiryInterval: m.ExpiryInterval,
		Props: Properties{PayloadFormat: m.Props.PayloadFormat},
	}
	a := arena(make([]byte, 0, m.dataLen()))
	c.Topic = a.str(m.Topic)
	c.Payload = a.bytes(m.Payload)
	c.Sender = a.str(m.Sender)
	c.Props.ContentType = a.str(m.Props.ContentType)
	c.Props.ResponseTopic = a.str(m.Props.ResponseTopic)
	if m.Props.CorrelationData != nil {
		c.Props.CorrelationData = a.bytes(m.Props.CorrelationData)
	}
	if len(m.Props.User) > 0 {
		c.Props.User = make([]UserProperty, len(m.Props.User))
		for i, u := range m.Props.User {
			c.Props.User[i] = UserProperty{Key: a.str(u.Key), Value: a.str(u.Value)}
		}
	}
	return c
}

// arena hands out pieces of one buffer whose capacity was sized up front, so appends never move it.
type arena []byte

func (a *arena) bytes(b []byte) []byte {
	start := len(*a)
	*a = append(*a, b...)
	return (*a)[start:len(*a):len(*a)]
}

func (a *arena) str(s string) string {
	if s == "" {
		return ""
	}
	start := len(*a)
	*a = append(*a, s...)
	b := (*a)[start:]
	return unsafe.String(&b[0], len(s))
}

// UserValue returns the value of the first user property named key, "" if there is none.
func (p *Properties) UserValue(key string) string {
	for _, u := range p.User {
		if u.Key == key {
			return u.Value
		}
	}
	return ""
}
