package packet

import (
	"bytes"
	"fmt"
	"testing"

	p3 "github.com/eclipse/paho.mqtt.golang/packets"
)

// Cross-checks against paho.mqtt.golang's 3.1.1 codec (it also speaks 3.1
// CONNECT), in both directions, for every packet type v3 has.

func toPaho3(p Packet) p3.ControlPacket {
	switch p := p.(type) {
	case *Connect:
		c := p3.NewControlPacket(p3.Connect).(*p3.ConnectPacket)
		c.ProtocolName = string(protocolName(p.Version))
		c.ProtocolVersion = byte(p.Version)
		c.CleanSession, c.Keepalive, c.ClientIdentifier = p.CleanStart, p.KeepAlive, string(p.ClientID)
		c.WillFlag, c.WillQos, c.WillRetain = p.Will, p.WillQoS, p.WillRetain
		c.WillTopic, c.WillMessage = string(p.WillTopic), p.WillPayload
		c.UsernameFlag, c.Username = p.HasUsername, string(p.Username)
		c.PasswordFlag, c.Password = p.HasPassword, p.Password
		return c
	case *Connack:
		c := p3.NewControlPacket(p3.Connack).(*p3.ConnackPacket)
		c.SessionPresent, c.ReturnCode = p.SessionPresent, byte(p.Reason)
		return c
	case *Publish:
		c := p3.NewControlPacket(p3.Publish).(*p3.PublishPacket)
		c.Dup, c.Qos, c.Retain = p.Dup, p.QoS, p.Retain
		c.TopicName, c.MessageID, c.Payload = string(p.Topic), p.PacketID, p.Payload
		return c
	case *Puback:
		c := p3.NewControlPacket(p3.Puback).(*p3.PubackPacket)
		c.MessageID = p.PacketID
		return c
	case *Pubrec:
		c := p3.NewControlPacket(p3.Pubrec).(*p3.PubrecPacket)
		c.MessageID = p.PacketID
		return c
	case *Pubrel:
		c := p3.NewControlPacket(p3.Pubrel).(*p3.PubrelPacket)
		c.MessageID = p.PacketID
		return c
	case *Pubcomp:
		c := p3.NewControlPacket(p3.Pubcomp).(*p3.PubcompPacket)
		c.MessageID = p.PacketID
		return c
	case *Subscribe:
		c := p3.NewControlPacket(p3.Subscribe).(*p3.SubscribePacket)
		c.MessageID = p.PacketID
		for _, s := range p.Subscriptions {
			c.Topics = append(c.Topics, string(s.Filter))
			c.Qoss = append(c.Qoss, s.QoS)
		}
		return c
	case *Suback:
		c := p3.NewControlPacket(p3.Suback).(*p3.SubackPacket)
		c.MessageID, c.ReturnCodes = p.PacketID, reasonBytes(p.Reasons)
		return c
	case *Unsubscribe:
		c := p3.NewControlPacket(p3.Unsubscribe).(*p3.UnsubscribePacket)
		c.MessageID = p.PacketID
		for _, f := range p.Filters {
			c.Topics = append(c.Topics, string(f))
		}
		return c
	case *Unsuback:
		c := p3.NewControlPacket(p3.Unsuback).(*p3.UnsubackPacket)
		c.MessageID = p.PacketID
		return c
	case *Pingreq:
		return p3.NewControlPacket(p3.Pingreq)
	case *Pingresp:
		return p3.NewControlPacket(p3.Pingresp)
	case *Disconnect:
		return p3.NewControlPacket(p3.Disconnect)
	}
	panic(fmt.Sprintf("toPaho3: %T", p))
}

func fromPaho3(cp p3.ControlPacket) Packet {
	switch c := cp.(type) {
	case *p3.ConnectPacket:
		p := &Connect{ProtocolName: []byte(c.ProtocolName), Version: Version(c.ProtocolVersion),
			CleanStart: c.CleanSession, KeepAlive: c.Keepalive, ClientID: []byte(c.ClientIdentifier),
			Will: c.WillFlag, WillQoS: c.WillQos, WillRetain: c.WillRetain,
			HasUsername: c.UsernameFlag, HasPassword: c.PasswordFlag, Password: c.Password}
		if c.WillFlag {
			p.WillTopic, p.WillPayload = []byte(c.WillTopic), c.WillMessage
		}
		if c.UsernameFlag {
			p.Username = []byte(c.Username)
		}
		if c.ReservedBit != 0 {
			panic("paho saw a reserved bit we never set")
		}
		return p
	case *p3.ConnackPacket:
		return &Connack{SessionPresent: c.SessionPresent, Reason: ReasonCode(c.ReturnCode)}
	case *p3.PublishPacket:
		p := &Publish{Dup: c.Dup, QoS: c.Qos, Retain: c.Retain, Topic: []byte(c.TopicName), Payload: c.Payload}
		if c.Qos > 0 {
			p.PacketID = c.MessageID
		}
		return p
	case *p3.PubackPacket:
		return &Puback{PacketID: c.MessageID}
	case *p3.PubrecPacket:
		return &Pubrec{PacketID: c.MessageID}
	case *p3.PubrelPacket:
		return &Pubrel{PacketID: c.MessageID}
	case *p3.PubcompPacket:
		return &Pubcomp{PacketID: c.MessageID}
	case *p3.SubscribePacket:
		p := &Subscribe{PacketID: c.MessageID}
		for i, f := range c.Topics {
			p.Subscriptions = append(p.Subscriptions, Subscription{Filter: []byte(f), QoS: c.Qoss[i]})
		}
		return p
	case *p3.SubackPacket:
		return &Suback{PacketID: c.MessageID, Reasons: reasonCodes(c.ReturnCodes)}
	case *p3.UnsubscribePacket:
		p := &Unsubscribe{PacketID: c.MessageID}
		for _, f := range c.Topics {
			p.Filters = append(p.Filters, []byte(f))
		}
		return p
	case *p3.UnsubackPacket:
		return &Unsuback{PacketID: c.MessageID}
	case *p3.PingreqPacket:
		return &Pingreq{}
	case *p3.PingrespPacket:
		return &Pingresp{}
	case *p3.DisconnectPacket:
		return &Disconnect{}
	}
	panic(fmt.Sprintf("fromPaho3: %T", cp))
}

func TestPahoV3ReadsOurs(t *testing.T) {
	types := map[byte]bool{}
	for _, s := range v3Samples() {
		t.Run(s.name, func(t *testing.T) {
			b := mustAppend(t, s.p, s.v)
			cp, err := p3.ReadPacket(bytes.NewReader(b))
			if err != nil {
				t.Fatalf("paho rejects our % x: %v", b, err)
			}
			if c, ok := cp.(*p3.ConnectPacket); ok {
				if code := c.Validate(); code != p3.Accepted {
					t.Fatalf("paho's CONNECT validation refuses ours: %d", code)
				}
			}
			got := fromPaho3(cp)
			if want := withProtocolName(s.p); !sameFields(want, got) {
				t.Fatalf("paho read a different packet\n sent %s\n read %s\nbytes % x", show(want), show(got), b)
			}
			types[s.p.Type()] = true
		})
	}
	checkV3Coverage(t, types)
}

func TestOursReadsPahoV3(t *testing.T) {
	types := map[byte]bool{}
	for _, s := range v3Samples() {
		t.Run(s.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := toPaho3(s.p).Write(&buf); err != nil {
				t.Fatal(err)
			}
			got, err := Decode(buf.Bytes(), s.v)
			if err != nil {
				t.Fatalf("we reject paho's % x: %v", buf.Bytes(), err)
			}
			if want := withProtocolName(s.p); !sameFields(want, got) {
				t.Fatalf("we read a different packet\n sent %s\n read %s\nbytes % x", show(want), show(got), buf.Bytes())
			}
			// Same bytes both ways: there is one correct v3 encoding.
			if ours := mustAppend(t, s.p, s.v); !bytes.Equal(ours, buf.Bytes()) {
				t.Fatalf("encodings differ\n ours % x\npaho % x", ours, buf.Bytes())
			}
			types[s.p.Type()] = true
		})
	}
	checkV3Coverage(t, types)
}

func checkV3Coverage(t *testing.T, types map[byte]bool) {
	t.Helper()
	for typ := CONNECT; typ <= DISCONNECT; typ++ {
		if !types[typ] {
			t.Errorf("no %s crossed paho", TypeName(typ))
		}
	}
}
