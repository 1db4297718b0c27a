package pubprops

import (
	"strings"
	"testing"

	"github.com/ternmq/tern/internal/message"
	"github.com/ternmq/tern/internal/mqtt/packet"
)

func TestPutWritesEveryPropertyAndTheSenderLast(t *testing.T) {
	m := &message.Message{Topic: "a/b", Sender: "alice"}
	m.Props.PayloadFormat = 1
	m.Props.ContentType = "text/plain"
	m.Props.ResponseTopic = "r/t"
	m.Props.CorrelationData = []byte{1, 2}
	m.Props.User = []message.UserProperty{{Key: "k", Value: "v"}, {Key: "tern-origin", Value: "forged"}}

	var pr packet.Properties
	Put(&pr, m, 30, nil)
	for _, id := range []packet.PropID{packet.PropPayloadFormat, packet.PropMessageExpiry, packet.PropContentType,
		packet.PropResponseTopic, packet.PropCorrelationData} {
		if !pr.Has(id) {
			t.Errorf("property %#x not set", id)
		}
	}
	if pr.MessageExpiry != 30 || string(pr.ContentType) != "text/plain" || string(pr.ResponseTopic) != "r/t" || string(pr.CorrelationData) != "\x01\x02" {
		t.Fatalf("values: %+v", pr)
	}
	if got := users(pr); got != "k=v,tern-origin=forged,tern-sender=alice" {
		t.Fatalf("user properties %s", got)
	}

	var kept packet.Properties
	Put(&kept, m, 0, func(k string) bool { return !strings.HasPrefix(k, "tern-") })
	if kept.Has(packet.PropMessageExpiry) {
		t.Fatal("expiry 0 must leave the property out")
	}
	if got := users(kept); got != "k=v,tern-sender=alice" {
		t.Fatalf("filtered user properties %s", got)
	}
}

func TestPutLeavesAbsentPropertiesOut(t *testing.T) {
	var pr packet.Properties
	Put(&pr, &message.Message{Topic: "a"}, 0, nil)
	for _, id := range []packet.PropID{packet.PropPayloadFormat, packet.PropMessageExpiry, packet.PropContentType,
		packet.PropResponseTopic, packet.PropCorrelationData} {
		if pr.Has(id) {
			t.Errorf("property %#x set for a message without it", id)
		}
	}
	if len(pr.User) != 0 {
		t.Fatalf("user properties %s", users(pr))
	}
}

func users(pr packet.Properties) string {
	var parts []string
	for _, u := range pr.User {
		parts = append(parts, string(u.Key)+"="+string(u.Value))
	}
	return strings.Join(parts, ",")
}
