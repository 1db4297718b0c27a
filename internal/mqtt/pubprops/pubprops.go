// Package pubprops writes a message's properties into an outgoing MQTT 5 PUBLISH. The MQTT face
// (to clients and to peer routers) and the uplink (to a designated router) encode messages the
// same way; this is that one way.
package pubprops

import (
	"unsafe"

	"github.com/ternmq/tern/internal/message"
	"github.com/ternmq/tern/internal/mqtt/packet"
)

// Put writes m's properties into pr, which the caller has reset: payload format, expiry (the
// remaining interval the core computed, broker.Delivery.Expiry; 0 for none), content type,
// response topic, correlation data, the user properties keep accepts (every one when keep is
// nil), and last the sender as tern-sender. The core removed any tern-sender the publisher sent,
// so the one written here can be trusted. Values are borrowed from m, not copied.
func Put(pr *packet.Properties, m *message.Message, expiry uint32, keep func(key string) bool) {
	if m.Props.PayloadFormat != 0 {
		pr.PayloadFormat = m.Props.PayloadFormat
		pr.Set(packet.PropPayloadFormat)
	}
	if expiry > 0 {
		pr.MessageExpiry = expiry
		pr.Set(packet.PropMessageExpiry)
	}
	if m.Props.ContentType != "" {
		pr.ContentType = stringBytes(m.Props.ContentType)
		pr.Set(packet.PropContentType)
	}
	if m.Props.ResponseTopic != "" {
		pr.ResponseTopic = stringBytes(m.Props.ResponseTopic)
		pr.Set(packet.PropResponseTopic)
	}
	if m.Props.CorrelationData != nil {
		pr.CorrelationData = m.Props.CorrelationData
		pr.Set(packet.PropCorrelationData)
	}
	for _, u := range m.Props.User {
		if keep == nil || keep(u.Key) {
			pr.User = append(pr.User, packet.UserProperty{Key: stringBytes(u.Key), Value: stringBytes(u.Value)})
		}
	}
	if m.Sender != "" {
		pr.User = append(pr.User, packet.UserProperty{Key: senderKey, Value: stringBytes(m.Sender)})
	}
}

var senderKey = []byte(message.SenderProperty)

// stringBytes views a string as bytes without copying; the encoder only reads it.
func stringBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }
