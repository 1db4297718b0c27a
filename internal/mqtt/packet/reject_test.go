package packet

import (
	"bytes"
	"testing"
)

const (
	malf  = MalformedPacket
	proto = ProtocolError
)

type rejectCase struct {
	name string
	v    Version
	hex  string
	code ReasonCode
}

// decodeRejectCases are whole wire packets that each break one rule; the
// fuzz targets use them as seeds too.
func decodeRejectCases() []rejectCase {
	return []rejectCase{
		// Fixed header.
		{"type 0", V311, "00 00", malf},
		{"CONNECT flags", V311, "11 0d 0004 4d515454 04 02 003c 0001 63", malf},
		{"CONNACK flags", V311, "21 02 00 00", malf},
		{"PUBACK flags", V311, "42 02 0001", malf},
		{"PUBREC flags", V5, "51 02 0001", malf},
		{"PUBREL flags 0", V311, "60 02 0001", malf},
		{"PUBCOMP flags", V311, "72 02 0001", malf},
		{"SUBSCRIBE flags 0", V311, "80 06 0001 0001 61 00", malf},
		{"SUBACK flags", V311, "92 03 0001 00", malf},
		{"UNSUBSCRIBE flags 0", V311, "a0 05 0001 0001 61", malf},
		{"UNSUBACK flags", V311, "b1 02 0001", malf},
		{"PINGREQ flags", V311, "c1 00", malf},
		{"PINGRESP flags", V311, "d8 00", malf},
		{"DISCONNECT flags", V5, "e2 00", malf},
		{"AUTH flags", V5, "f1 00", malf},

		// PUBLISH.
		{"publish QoS 3", V311, "36 05 0001 74 0001", malf},
		{"publish DUP on QoS 0", V311, "38 03 0001 74", malf},
		{"publish packet id 0", V311, "32 05 0001 74 0000", proto},
		{"publish packet id 0 v5", V5, "32 06 0001 74 0000 00", proto},
		{"publish missing packet id", V311, "32 03 0001 74", malf},
		{"publish topic overruns", V311, "30 03 0005 61", malf},
		{"publish topic with +", V311, "30 05 0003 612f2b", TopicNameInvalid},
		{"publish topic with #", V5, "30 04 0001 23 00", TopicNameInvalid},
		{"publish topic with + after non-ASCII", V311, "30 05 0003 c3a92b", TopicNameInvalid},
		{"publish topic with U+0000", V311, "30 05 0003 610062", malf},
		{"publish topic with wildcard then U+0000", V311, "30 05 0003 2b0062", malf},
		{"publish topic with surrogate", V311, "30 05 0003 eda080", malf},
		{"publish topic bad UTF-8", V5, "30 04 0001 ff 00", malf},
		{"publish empty topic v3", V311, "30 03 0000 78", proto},
		{"publish empty topic v5 without alias", V5, "30 03 0000 00", proto},
		{"publish v5 missing property length", V5, "30 03 0001 74", malf},
		{"publish property length overruns", V5, "30 05 0001 74 05 01", malf},
		{"publish property value overruns", V5, "30 05 0001 74 01 02", malf},
		{"publish u32 property truncated", V5, "30 08 0001 74 04 02 000000", malf},
		{"publish u16 property truncated", V5, "30 06 0001 74 02 23 00", malf},
		{"publish string property length truncated", V5, "30 06 0001 74 02 03 00", malf},
		{"publish property length varint too long", V5, "30 08 0001 74 ffffffff 7f", malf},
		{"publish unknown property 0x05", V5, "30 06 0001 74 02 0500", malf},
		{"publish unknown property 0x00", V5, "30 06 0001 74 02 0000", malf},
		{"publish multi-byte property id", V5, "30 06 0001 74 02 8101", malf},
		{"publish session expiry not allowed", V5, "30 09 0001 74 05 11 00000001", malf},
		{"publish will delay not allowed", V5, "30 09 0001 74 05 18 00000001", malf},
		{"publish reason string not allowed", V5, "30 07 0001 74 03 1f 0000", malf},
		{"publish payload format twice", V5, "30 08 0001 74 04 0101 0100", proto},
		{"publish topic alias twice", V5, "30 0a 0001 74 06 230001 230002", proto},
		{"publish payload format 2", V5, "30 06 0001 74 02 0102", proto},
		{"publish subscription id 0", V5, "30 06 0001 74 02 0b00", proto},
		{"publish subscription id varint too long", V5, "30 09 0001 74 05 0b ffffffff", malf},
		{"publish subscription id truncated", V5, "30 06 0001 74 02 0b80", malf},
		{"publish topic alias 0", V5, "30 07 0001 74 03 230000", TopicAliasInvalid},
		{"publish content type bad UTF-8", V5, "30 08 0001 74 04 03 0001 ff", malf},
		{"publish content type surrogate", V5, "30 0a 0001 74 06 03 0003 edbfbf", malf},
		{"publish user property missing value", V5, "30 08 0001 74 04 26 0001 6b", malf},
		{"publish user property value U+0000", V5, "30 0b 0001 74 07 26 0001 6b 0001 00", malf},
		{"publish correlation data overruns", V5, "30 08 0001 74 04 09 0005 61", malf},

		// CONNECT.
		{"connect MQTT level 3", V311, "10 0d 0004 4d515454 03 02 003c 0001 63", UnsupportedProtocolVersion},
		{"connect MQTT level 6", V311, "10 0d 0004 4d515454 06 02 003c 0001 63", UnsupportedProtocolVersion},
		{"connect MQIsdp level 4", V311, "10 0f 0006 4d5149736470 04 02 003c 0001 63", UnsupportedProtocolVersion},
		{"connect unknown name", V311, "10 0d 0004 4d515458 04 02 003c 0001 63", UnsupportedProtocolVersion},
		{"connect name bad UTF-8", V311, "10 0d 0004 4d5154ff 04 02 003c 0001 63", malf},
		{"connect truncated name", V311, "10 03 0004 4d", malf},
		{"connect missing level", V311, "10 06 0004 4d515454", malf},
		{"connect reserved flag", V311, "10 0d 0004 4d515454 04 03 003c 0001 63", malf},
		{"connect reserved flag v5", V5, "10 0e 0004 4d515454 05 01 003c 00 0001 63", malf},
		{"connect will QoS 3", V311, "10 12 0004 4d515454 04 1e 003c 0001 63 0001 77 0000", malf},
		{"connect will QoS without will", V311, "10 0d 0004 4d515454 04 0a 003c 0001 63", malf},
		{"connect will retain without will", V5, "10 0e 0004 4d515454 05 22 003c 00 0001 63", malf},
		{"connect password without username v3", V311, "10 10 0004 4d515454 04 42 003c 0001 63 0001 70", malf},
		{"connect password without username v3.1", V311, "10 12 0006 4d5149736470 03 42 003c 0001 63 0001 70", malf},
		{"connect missing client id", V311, "10 0a 0004 4d515454 04 02 003c", malf},
		{"connect client id bad UTF-8", V311, "10 0d 0004 4d515454 04 02 003c 0001 ff", malf},
		{"connect missing username", V311, "10 0d 0004 4d515454 04 82 003c 0001 63", malf},
		{"connect missing password", V311, "10 10 0004 4d515454 04 c2 003c 0001 63 0001 75", malf},
		{"connect trailing bytes", V311, "10 0e 0004 4d515454 04 02 003c 0001 63 00", malf},
		{"connect will topic wildcard", V311, "10 12 0004 4d515454 04 06 003c 0001 63 0001 23 0000", TopicNameInvalid},
		{"connect will topic empty", V311, "10 11 0004 4d515454 04 06 003c 0001 63 0000 0000", TopicNameInvalid},
		{"connect missing will payload", V311, "10 10 0004 4d515454 04 06 003c 0001 63 0001 77", malf},
		{"connect v5 missing props", V5, "10 0a 0004 4d515454 05 02 003c", malf},
		{"connect v5 payload format in connect props", V5, "10 10 0004 4d515454 05 02 003c 02 0101 0001 63", malf},
		{"connect v5 topic alias in will props", V5, "10 17 0004 4d515454 05 06 003c 00 0001 63 03 230001 0001 77 0000", malf},
		{"connect v5 will delay in connect props", V5, "10 13 0004 4d515454 05 02 003c 05 18 00000001 0001 63", malf},
		{"connect v5 session expiry in will props", V5, "10 19 0004 4d515454 05 06 003c 00 0001 63 05 11 00000001 0001 77 0000", malf},
		{"connect v5 session expiry twice", V5, "10 18 0004 4d515454 05 02 003c 0a 11 00000001 11 00000002 0001 63", proto},
		{"connect v5 receive max 0", V5, "10 11 0004 4d515454 05 02 003c 03 210000 0001 63", proto},
		{"connect v5 max packet size 0", V5, "10 13 0004 4d515454 05 02 003c 05 27 00000000 0001 63", proto},
		{"connect v5 request problem info 2", V5, "10 10 0004 4d515454 05 02 003c 02 1702 0001 63", proto},
		{"connect v5 request response info 2", V5, "10 10 0004 4d515454 05 02 003c 02 1902 0001 63", proto},
		{"connect v5 auth data without method", V5, "10 12 0004 4d515454 05 02 003c 04 16 0001 78 0001 63", proto},
		{"connect v5 will props overrun", V5, "10 0f 0004 4d515454 05 06 003c 00 0001 63 09", malf},

		// CONNACK.
		{"connack v3 too long", V311, "20 03 00 00 00", malf},
		{"connack v3 too short", V311, "20 01 00", malf},
		{"connack v3 reserved flag", V311, "20 02 02 00", malf},
		{"connack v3 return code 6", V311, "20 02 00 06", proto},
		{"connack v3 present with refusal", V311, "20 02 01 05", proto},
		{"connack v5 missing props", V5, "20 02 00 00", malf},
		{"connack v5 reserved flag", V5, "20 03 80 00 00", malf},
		{"connack v5 reason 0x01", V5, "20 03 00 01 00", proto},
		{"connack v5 reason 0x8e", V5, "20 03 00 8e 00", proto},
		{"connack v5 present with refusal", V5, "20 03 01 87 00", proto},
		{"connack v5 topic alias not allowed", V5, "20 06 00 00 03 230001", malf},
		{"connack v5 max QoS 2", V5, "20 05 00 00 02 2402", proto},
		{"connack v5 retain available 2", V5, "20 05 00 00 02 2502", proto},
		{"connack v5 wildcard available 2", V5, "20 05 00 00 02 2802", proto},
		{"connack v5 sub ids available 2", V5, "20 05 00 00 02 2902", proto},
		{"connack v5 shared available 2", V5, "20 05 00 00 02 2a02", proto},
		{"connack v5 trailing", V5, "20 04 00 00 00 00", malf},

		// PUBACK family.
		{"puback id 0", V311, "40 02 0000", proto},
		{"pubrel id 0 v5", V5, "62 02 0000", proto},
		{"puback too short", V311, "40 01 00", malf},
		{"puback v3 too long", V311, "40 03 0001 00", malf},
		{"pubcomp v3 too long", V311, "70 04 0001 0000", malf},
		{"puback v5 reason 0x92", V5, "40 03 0001 92", proto},
		{"pubrec v5 reason 0x01", V5, "50 03 0001 01", proto},
		{"pubrel v5 reason 0x10", V5, "62 03 0001 10", proto},
		{"pubcomp v5 reason 0x80", V5, "70 03 0001 80", proto},
		{"puback v5 props overrun", V5, "40 05 0001 00 05 1f", malf},
		{"puback v5 props not allowed", V5, "40 09 0001 00 05 11 00000001", malf},
		{"puback v5 trailing", V5, "40 05 0001 00 00 ff", malf},
		{"pubrel v5 reason string twice", V5, "62 0c 0001 00 08 1f 0001 61 1f 0001 62", proto},

		// SUBSCRIBE.
		{"subscribe no filters v3", V311, "82 02 0001", proto},
		{"subscribe no filters v5", V5, "82 03 0001 00", proto},
		{"subscribe id 0", V311, "82 06 0000 0001 61 00", proto},
		{"subscribe missing options", V311, "82 05 0001 0001 61", malf},
		{"subscribe filter overruns", V311, "82 06 0001 0009 61 00", malf},
		{"subscribe filter bad UTF-8", V311, "82 06 0001 0001 ff 00", malf},
		{"subscribe filter U+0000", V5, "82 07 0001 00 0001 00 00", malf},
		{"subscribe v3 QoS 3", V311, "82 06 0001 0001 61 03", malf},
		{"subscribe v3 no local bit", V311, "82 06 0001 0001 61 04", malf},
		{"subscribe v3 retain handling bits", V311, "82 06 0001 0001 61 10", malf},
		{"subscribe v3 reserved bits", V311, "82 06 0001 0001 61 80", malf},
		{"subscribe v5 reserved bit 6", V5, "82 07 0001 00 0001 61 40", malf},
		{"subscribe v5 reserved bit 7", V5, "82 07 0001 00 0001 61 81", malf},
		{"subscribe v5 QoS 3", V5, "82 07 0001 00 0001 61 03", proto},
		{"subscribe v5 retain handling 3", V5, "82 07 0001 00 0001 61 30", proto},
		{"subscribe v5 no local on shared", V5, "82 10 0001 00 000a 247368617265 2f672f 61 04", proto},
		{"subscribe v5 second filter bad", V5, "82 0b 0001 00 0001 61 01 0001 62 30", proto},
		{"subscribe v5 two subscription ids", V5, "82 0b 0001 04 0b01 0b02 0001 61 00", proto},
		{"subscribe v5 subscription id 0", V5, "82 09 0001 02 0b00 0001 61 00", proto},
		{"subscribe v5 reason string not allowed", V5, "82 0a 0001 03 1f 0000 0001 61 00", malf},

		// SUBACK.
		{"suback no reasons v3", V311, "90 02 0001", proto},
		{"suback no reasons v5", V5, "90 03 0001 00", proto},
		{"suback id 0", V311, "90 03 0000 00", proto},
		{"suback v3 code 3", V311, "90 03 0001 03", proto},
		{"suback v3 code 0x87", V311, "90 03 0001 87", proto},
		{"suback v5 code 0x10", V5, "90 04 0001 00 10", proto},
		{"suback v5 props overrun", V5, "90 04 0001 04 00", malf},

		// UNSUBSCRIBE and UNSUBACK.
		{"unsubscribe no filters v3", V311, "a2 02 0001", proto},
		{"unsubscribe no filters v5", V5, "a2 03 0001 00", proto},
		{"unsubscribe id 0", V5, "a2 06 0000 00 0001 61", proto},
		{"unsubscribe filter overruns", V311, "a2 05 0001 0002 61", malf},
		{"unsubscribe filter bad UTF-8", V311, "a2 05 0001 0001 c3", malf},
		{"unsubscribe v5 subscription id not allowed", V5, "a2 08 0001 02 0b01 0001 61", malf},
		{"unsuback id 0", V311, "b0 02 0000", proto},
		{"unsuback v3 too long", V311, "b0 03 0001 00", malf},
		{"unsuback v5 no reasons", V5, "b0 03 0001 00", proto},
		{"unsuback v5 reason 0x10", V5, "b0 04 0001 00 10", proto},

		// PINGs, DISCONNECT, AUTH.
		{"pingreq with body", V311, "c0 01 00", malf},
		{"pingresp with body", V5, "d0 01 00", malf},
		{"disconnect v3 with body", V311, "e0 01 00", malf},
		{"disconnect v5 reason 0x01", V5, "e0 01 01", proto},
		{"disconnect v5 reason 0x84", V5, "e0 01 84", proto},
		{"disconnect v5 props overrun", V5, "e0 02 00 05", malf},
		{"disconnect v5 auth method not allowed", V5, "e0 06 00 04 15 0001 61", malf},
		{"disconnect v5 trailing", V5, "e0 03 00 00 00", malf},
		{"auth in v3.1.1", V311, "f0 00", proto},
		{"auth v5 reason 0x04", V5, "f0 02 04 00", proto},
		{"auth v5 data without method", V5, "f0 06 18 04 16 0001 61", proto},
		{"auth v5 session expiry not allowed", V5, "f0 07 18 05 11 00000001", malf},
	}
}

// TestDecodeRejects checks the reason code the decoder chose for each.
func TestDecodeRejects(t *testing.T) {
	for _, c := range decodeRejectCases() {
		t.Run(c.name, func(t *testing.T) {
			b := unhex(t, c.hex)
			if c.hex[:2] != "00" {
				// Guard the table itself: the header must frame the body.
				_, _, rem, hl, err := ParseFixedHeader(b)
				if err != nil || hl+rem != len(b) {
					t.Fatalf("bad test vector: rem %d hl %d len %d err %v", rem, hl, len(b), err)
				}
			}
			p, err := Decode(b, c.v)
			if err == nil {
				t.Fatalf("accepted: %s", show(p))
			}
			wantCode(t, err, c.code)
		})
	}
}

// After UnsupportedProtocolVersion the broker needs the raw level to choose
// its CONNACK format.
func TestConnectUnsupportedVersionKeepsLevel(t *testing.T) {
	var c Connect
	typ, flags, body := split(t, unhex(t, "10 0d 0004 4d515454 06 02 003c 0001 63"))
	if typ != CONNECT {
		t.Fatal(typ)
	}
	err := c.Decode(flags, body, 0)
	wantCode(t, err, UnsupportedProtocolVersion)
	if c.Version != 6 || string(c.ProtocolName) != "MQTT" {
		t.Fatalf("after refusal: version %d name %q", c.Version, c.ProtocolName)
	}
	// And a later good CONNECT into the same struct is clean.
	good := mustAppend(t, &Connect{Version: V5, ClientID: bs("x")}, V5)
	_, flags, body = split(t, good)
	if err := c.Decode(flags, body, 0); err != nil || c.Version != V5 || string(c.ClientID) != "x" {
		t.Fatalf("reuse: %v %s", err, show(&c))
	}
}

// A malformed v5 CONNECT still reports V5, so the broker answers in v5.
func TestConnectErrorKeepsVersion(t *testing.T) {
	var c Connect
	_, flags, body := split(t, unhex(t, "10 0e 0004 4d515454 05 01 003c 00 0001 63"))
	wantCode(t, c.Decode(flags, body, 0), MalformedPacket)
	if c.Version != V5 {
		t.Fatalf("version %d", c.Version)
	}
}

// manyUsers returns n User Properties that all share one 60000-byte key:
// an encoding hundreds of megabytes long, held in 60 kB of memory. Only a
// size check can see it; nothing is ever written.
func manyUsers(n int) Properties {
	key := bytes.Repeat([]byte{'k'}, 60000)
	var p Properties
	for range n {
		p.AddUser(key, nil)
	}
	return p
}

// manySubs is the SUBSCRIBE equivalent: n entries sharing one long filter.
func manySubs(n int) []Subscription {
	f := bytes.Repeat([]byte{'f'}, 60000)
	subs := make([]Subscription, n)
	for i := range subs {
		subs[i].Filter = f
	}
	return subs
}

// TestAppendRejects: every encoder refuses to write what its decoder would
// reject, and leaves dst as it was.
func TestAppendRejects(t *testing.T) {
	long := bytes.Repeat([]byte{'a'}, 65536)
	cases := []struct {
		name string
		v    Version
		p    Packet
		code ReasonCode
	}{
		{"bad version 0", 0, &Pingreq{}, UnsupportedProtocolVersion},
		{"bad version 6", 6, &Publish{Topic: bs("t")}, UnsupportedProtocolVersion},
		{"publish QoS 3", V311, &Publish{QoS: 3, Topic: bs("t"), PacketID: 1}, malf},
		{"publish DUP QoS 0", V311, &Publish{Dup: true, Topic: bs("t")}, malf},
		{"publish packet id 0", V5, &Publish{QoS: 1, Topic: bs("t")}, proto},
		{"publish wildcard", V311, &Publish{Topic: bs("a/+")}, TopicNameInvalid},
		{"publish empty topic v3", V311, &Publish{Props: props(PropTopicAlias, 1)}, proto},
		{"publish empty topic v5 without alias", V5, &Publish{}, proto},
		{"publish topic too long", V311, &Publish{Topic: long}, malf},
		{"publish topic bad UTF-8", V5, &Publish{Topic: bs("a\xff")}, malf},
		{"publish topic U+0000", V5, &Publish{Topic: bs("a\x00")}, malf},
		{"publish session expiry", V5, &Publish{Topic: bs("t"), Props: props(PropSessionExpiry, 1)}, malf},
		{"publish unknown property bit", V5, &Publish{Topic: bs("t"), Props: Properties{Present: 1 << 5}}, malf},
		{"publish payload format 2", V5, &Publish{Topic: bs("t"), Props: props(PropPayloadFormat, 2)}, proto},
		{"publish topic alias 0", V5, &Publish{Topic: bs("t"), Props: props(PropTopicAlias, 0)}, TopicAliasInvalid},
		{"publish subscription id 0", V5, &Publish{Topic: bs("t"), Props: props(PropSubscriptionID, 0)}, proto},
		{"publish subscription id too big", V5, &Publish{Topic: bs("t"), Props: props(PropSubscriptionID, MaxRemaining+1)}, proto},
		{"publish user key bad UTF-8", V5, &Publish{Topic: bs("t"), Props: props(PropUser, [2]string{"\xff", "v"})}, malf},
		{"publish content type too long", V5, &Publish{Topic: bs("t"), Props: props(PropContentType, string(long))}, malf},
		{"publish correlation data too long", V5, &Publish{Topic: bs("t"), Props: props(PropCorrelationData, string(long))}, malf},
		{"publish too large", V5, &Publish{Topic: bs("t"), Props: manyUsers(MaxRemaining/60000 + 1)}, PacketTooLarge},
		{"subscribe too large", V311, &Subscribe{PacketID: 1, Subscriptions: manySubs(MaxRemaining/60000 + 1)}, PacketTooLarge},
		{"unsubscribe too large", V5, &Unsubscribe{PacketID: 1, Filters: [][]byte{bytes.Repeat([]byte{'u'}, 65535)},
			Props: manyUsers(MaxRemaining/60000 + 1)}, PacketTooLarge},

		{"connect will QoS 3", V311, &Connect{Will: true, WillQoS: 3, WillTopic: bs("w")}, malf},
		{"connect will QoS without will", V311, &Connect{WillQoS: 1}, malf},
		{"connect will retain without will", V5, &Connect{WillRetain: true}, malf},
		{"connect password without username v3", V311, &Connect{HasPassword: true}, malf},
		{"connect version mismatch", V311, &Connect{Version: V5}, proto},
		{"connect bad version", 0, &Connect{Version: 7}, UnsupportedProtocolVersion},
		{"connect wrong protocol name", V311, &Connect{ProtocolName: bs("MQIsdp")}, UnsupportedProtocolVersion},
		{"connect empty will topic", V311, &Connect{Will: true}, TopicNameInvalid},
		{"connect will topic wildcard", V5, &Connect{Will: true, WillTopic: bs("#")}, TopicNameInvalid},
		{"connect client id bad UTF-8", V311, &Connect{ClientID: bs("\xc3")}, malf},
		{"connect client id too long", V311, &Connect{ClientID: long}, malf},
		{"connect password too long", V5, &Connect{HasPassword: true, Password: long}, malf},
		{"connect topic alias prop", V5, &Connect{Props: props(PropTopicAlias, 1)}, malf},
		{"connect will session expiry", V5, &Connect{Will: true, WillTopic: bs("w"), WillProps: props(PropSessionExpiry, 1)}, malf},
		{"connect receive max 0", V5, &Connect{Props: props(PropReceiveMax, 0)}, proto},
		{"connect auth data alone", V5, &Connect{Props: props(PropAuthData, "x")}, proto},

		{"connack v5 reason 0x01", V5, &Connack{Reason: 1}, proto},
		{"connack present with refusal", V5, &Connack{SessionPresent: true, Reason: NotAuthorized}, proto},
		{"connack v3 present with refusal", V311, &Connack{SessionPresent: true, Reason: V3RefusedNotAuthorized}, proto},
		{"connack v3 code with no mapping", V311, &Connack{Reason: NoMatchingSubscribers}, proto},
		{"connack max QoS 2", V5, &Connack{Props: props(PropMaxQoS, 2)}, proto},

		{"puback id 0", V311, &Puback{}, proto},
		{"pubrec v5 bad reason", V5, &Pubrec{PacketID: 1, Reason: PacketIDNotFound}, proto},
		{"pubrel v5 bad reason", V5, &Pubrel{PacketID: 1, Reason: NoMatchingSubscribers}, proto},
		{"pubcomp v5 not allowed prop", V5, &Pubcomp{PacketID: 1, Props: props(PropSessionExpiry, 1)}, malf},

		{"subscribe no filters", V311, &Subscribe{PacketID: 1}, proto},
		{"subscribe id 0", V5, &Subscribe{Subscriptions: []Subscription{{Filter: bs("a")}}}, proto},
		{"subscribe v5 QoS 3", V5, &Subscribe{PacketID: 1, Subscriptions: []Subscription{{Filter: bs("a"), QoS: 3}}}, proto},
		{"subscribe v3 QoS 3", V311, &Subscribe{PacketID: 1, Subscriptions: []Subscription{{Filter: bs("a"), QoS: 3}}}, malf},
		{"subscribe retain handling 3", V5, &Subscribe{PacketID: 1, Subscriptions: []Subscription{{Filter: bs("a"), RetainHandling: 3}}}, proto},
		{"subscribe no local shared", V5, &Subscribe{PacketID: 1, Subscriptions: []Subscription{{Filter: bs("$share/g/a"), NoLocal: true}}}, proto},
		{"subscribe v3 no local", V311, &Subscribe{PacketID: 1, Subscriptions: []Subscription{{Filter: bs("a"), NoLocal: true}}}, proto},
		{"subscribe v3 retain as published", V311, &Subscribe{PacketID: 1, Subscriptions: []Subscription{{Filter: bs("a"), RetainAsPublished: true}}}, proto},
		{"subscribe two subscription ids", V5, &Subscribe{PacketID: 1, Props: props(PropSubscriptionID, 1, PropSubscriptionID, 2),
			Subscriptions: []Subscription{{Filter: bs("a")}}}, proto},
		{"subscribe filter bad UTF-8", V5, &Subscribe{PacketID: 1, Subscriptions: []Subscription{{Filter: bs("\xed\xa0\x80")}}}, malf},

		{"suback no reasons", V311, &Suback{PacketID: 1}, proto},
		{"suback bad reason", V5, &Suback{PacketID: 1, Reasons: []ReasonCode{0x10}}, proto},
		{"suback bad reason v3", V311, &Suback{PacketID: 1, Reasons: []ReasonCode{3}}, proto},
		{"unsubscribe no filters", V5, &Unsubscribe{PacketID: 1}, proto},
		{"unsubscribe id 0", V311, &Unsubscribe{Filters: [][]byte{bs("a")}}, proto},
		{"unsubscribe filter bad UTF-8", V311, &Unsubscribe{PacketID: 1, Filters: [][]byte{bs("\xff")}}, malf},
		{"unsuback v5 no reasons", V5, &Unsuback{PacketID: 1}, proto},
		{"unsuback v5 bad reason", V5, &Unsuback{PacketID: 1, Reasons: []ReasonCode{NoMatchingSubscribers}}, proto},
		{"unsuback id 0", V311, &Unsuback{}, proto},
		{"disconnect bad reason", V5, &Disconnect{Reason: 1}, proto},
		{"disconnect auth method prop", V5, &Disconnect{Props: props(PropAuthMethod, "m")}, malf},
		{"auth in v3", V311, &Auth{}, proto},
		{"auth bad reason", V5, &Auth{Reason: DisconnectWithWill}, proto},
		{"auth data alone", V5, &Auth{Reason: ContinueAuthentication, Props: props(PropAuthData, "d")}, proto},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dst := []byte("keep")
			out, err := c.p.Append(dst, c.v)
			if err == nil {
				t.Fatalf("wrote % x", out)
			}
			wantCode(t, err, c.code)
			if string(out) != "keep" {
				t.Fatalf("dst changed to %q", out)
			}
		})
	}
}

// Decoders given an invalid version argument refuse instead of guessing.
func TestDecodeRejectsBadVersion(t *testing.T) {
	for typ := byte(2); typ <= 15; typ++ {
		err := New(typ).Decode(fixedFlags(typ), []byte{0, 1}, 6)
		wantCode(t, err, UnsupportedProtocolVersion)
	}
}
