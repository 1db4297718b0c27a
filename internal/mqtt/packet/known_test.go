package packet

import (
	"bytes"
	"strings"
	"testing"
)

// Hand-written encodings, most taken from the examples in the MQTT 3.1.1 and
// 5.0 specifications. Each is checked in both directions: our encoder must
// produce exactly these bytes and our decoder must read them back into the
// same fields.
func TestKnownEncodings(t *testing.T) {
	cases := []struct {
		name string
		v    Version
		p    Packet
		hex  string
	}{
		// 3.1.1 section 3.1.2.10 example variable header (flags 0xCE: user,
		// password, will QoS 1, will, clean session; keep alive 10).
		{"3.1.1 CONNECT spec example", V311, &Connect{Version: V311, CleanStart: true, KeepAlive: 10,
			ClientID: bs("c"), Will: true, WillQoS: 1, WillTopic: bs("w"), WillPayload: bs("m"),
			HasUsername: true, Username: bs("u"), HasPassword: true, Password: bs("p")},
			"10 19 0004 4d515454 04 ce 000a 0001 63 0001 77 0001 6d 0001 75 0001 70"},
		// 5.0 section 3.1.2.11 example: the same flags, plus properties
		// length 5 holding Session Expiry Interval 10.
		{"5.0 CONNECT spec example", V5, &Connect{Version: V5, CleanStart: true, KeepAlive: 10,
			Props: props(PropSessionExpiry, 10), ClientID: bs("c"), Will: true, WillQoS: 1,
			WillTopic: bs("w"), WillPayload: bs("m"), HasUsername: true, Username: bs("u"),
			HasPassword: true, Password: bs("p")},
			"10 20 0004 4d515454 05 ce 000a 05 11 0000000a 0001 63 00 0001 77 0001 6d 0001 75 0001 70"},
		{"3.1 CONNECT", V31, &Connect{Version: V31, CleanStart: true, KeepAlive: 60, ClientID: bs("c")},
			"10 0f 0006 4d5149736470 03 02 003c 0001 63"},
		{"3.1.1 CONNACK session present", V311, &Connack{SessionPresent: true}, "20 02 01 00"},
		{"3.1.1 CONNACK bad credentials", V311, &Connack{Reason: V3RefusedBadUsernameOrPassword}, "20 02 00 04"},
		{"5.0 CONNACK bare", V5, &Connack{}, "20 03 00 00 00"},
		{"5.0 CONNACK topic alias max", V5, &Connack{Props: props(PropTopicAliasMax, 5)}, "20 06 00 00 03 22 0005"},
		// 3.1.1 section 3.3.2.3 example: topic "a/b", packet id 10.
		{"3.1.1 PUBLISH spec example", V311, &Publish{QoS: 1, Topic: bs("a/b"), PacketID: 10},
			"32 07 0003 612f62 000a"},
		// 5.0 section 3.3.2.3 example: the same with property length 0.
		{"5.0 PUBLISH spec example", V5, &Publish{QoS: 1, Topic: bs("a/b"), PacketID: 10},
			"32 08 0003 612f62 000a 00"},
		{"PUBLISH QoS 0 retain", V311, &Publish{Retain: true, Topic: bs("t"), Payload: bs("hi")}, "31 05 0001 74 6869"},
		{"PUBLISH QoS 2 dup", V311, &Publish{Dup: true, QoS: 2, Topic: bs("t"), PacketID: 0x0102}, "3c 05 0001 74 0102"},
		// Properties are written in increasing identifier order; 300 is the
		// two-byte variable byte integer ac 02.
		{"5.0 PUBLISH properties", V5, &Publish{Topic: bs("t"), Payload: bs("p"),
			Props: props(PropPayloadFormat, 1, PropSubscriptionID, 300, PropTopicAlias, 7,
				PropUser, [2]string{"k", "v"})},
			"30 14 0001 74 0f 0101 0bac02 230007 26 0001 6b 0001 76 70"},
		{"5.0 PUBLISH empty topic with alias", V5, &Publish{Props: props(PropTopicAlias, 1)},
			"30 06 0000 03 230001"},
		{"3.1.1 PUBACK", V311, &Puback{PacketID: 1}, "40 02 0001"},
		{"3.1.1 PUBREC", V311, &Pubrec{PacketID: 1}, "50 02 0001"},
		{"3.1.1 PUBREL", V311, &Pubrel{PacketID: 1}, "62 02 0001"},
		{"3.1.1 PUBCOMP", V311, &Pubcomp{PacketID: 1}, "70 02 0001"},
		{"5.0 PUBACK short form", V5, &Puback{PacketID: 1}, "40 02 0001"},
		{"5.0 PUBACK reason only", V5, &Puback{PacketID: 2, Reason: NoMatchingSubscribers}, "40 03 0002 10"},
		{"5.0 PUBACK reason and props", V5, &Puback{PacketID: 3, Reason: QuotaExceeded,
			Props: props(PropReasonString, "x")}, "40 08 0003 97 04 1f 0001 78"},
		{"5.0 PUBREL success with props", V5, &Pubrel{PacketID: 4, Props: props(PropReasonString, "x")},
			"62 08 0004 00 04 1f 0001 78"},
		{"5.0 PUBCOMP not found", V5, &Pubcomp{PacketID: 5, Reason: PacketIDNotFound}, "70 03 0005 92"},
		// 3.1.1 section 3.8.3 example payload: "a/b" QoS 1, "c/d" QoS 2.
		{"3.1.1 SUBSCRIBE spec example", V311, &Subscribe{PacketID: 10, Subscriptions: []Subscription{
			{Filter: bs("a/b"), QoS: 1}, {Filter: bs("c/d"), QoS: 2}}},
			"82 0e 000a 0003 612f62 01 0003 632f64 02"},
		{"5.0 SUBSCRIBE options", V5, &Subscribe{PacketID: 10, Subscriptions: []Subscription{
			{Filter: bs("a/b"), QoS: 1, NoLocal: true, RetainAsPublished: true, RetainHandling: 2}}},
			"82 09 000a 00 0003 612f62 2d"},
		// 3.1.1 section 3.9.3 example payload: 0x00, 0x02, 0x80.
		{"3.1.1 SUBACK spec example", V311, &Suback{PacketID: 10, Reasons: []ReasonCode{0, 2, 0x80}},
			"90 05 000a 00 02 80"},
		{"5.0 SUBACK", V5, &Suback{PacketID: 10, Reasons: []ReasonCode{1, TopicFilterInvalid}}, "90 05 000a 00 01 8f"},
		// 3.1.1 section 3.10.3 example payload: "a/b", "c/d".
		{"3.1.1 UNSUBSCRIBE spec example", V311, &Unsubscribe{PacketID: 10, Filters: [][]byte{bs("a/b"), bs("c/d")}},
			"a2 0c 000a 0003 612f62 0003 632f64"},
		{"5.0 UNSUBSCRIBE", V5, &Unsubscribe{PacketID: 10, Filters: [][]byte{bs("a")}}, "a2 06 000a 00 0001 61"},
		{"3.1.1 UNSUBACK", V311, &Unsuback{PacketID: 10}, "b0 02 000a"},
		{"5.0 UNSUBACK", V5, &Unsuback{PacketID: 10, Reasons: []ReasonCode{Success, NoSubscriptionExisted}},
			"b0 05 000a 00 00 11"},
		{"PINGREQ", V311, &Pingreq{}, "c0 00"},
		{"PINGRESP", V5, &Pingresp{}, "d0 00"},
		{"3.1.1 DISCONNECT", V311, &Disconnect{}, "e0 00"},
		{"5.0 DISCONNECT normal", V5, &Disconnect{}, "e0 00"},
		{"5.0 DISCONNECT with will", V5, &Disconnect{Reason: DisconnectWithWill}, "e0 01 04"},
		{"5.0 DISCONNECT session expiry", V5, &Disconnect{Props: props(PropSessionExpiry, 0)},
			"e0 07 00 05 11 00000000"},
		{"5.0 AUTH success", V5, &Auth{}, "f0 00"},
		{"5.0 AUTH continue", V5, &Auth{Reason: ContinueAuthentication, Props: props(PropAuthMethod, "K")},
			"f0 06 18 04 15 0001 4b"},
		{"5.0 AUTH reason no props", V5, &Auth{Reason: ReAuthenticate}, "f0 02 19 00"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want := unhex(t, c.hex)
			got := mustAppend(t, c.p, c.v)
			if !bytes.Equal(got, want) {
				t.Fatalf("Append\n got % x\nwant % x", got, want)
			}
			back := mustDecode(t, want, c.v)
			exp := c.p
			if cp, ok := exp.(*Connect); ok {
				cc := *cp
				cc.ProtocolName = protocolName(cp.Version)
				exp = &cc
			}
			if !sameFields(exp, back) {
				t.Fatalf("Decode\n got %s\nwant %s", show(back), show(exp))
			}
		})
	}
}

// The variable byte integer table of spec section 1.5.5 (2.2.3 in 3.1.1).
func TestVarint(t *testing.T) {
	cases := []struct {
		n   int
		hex string
	}{
		{0, "00"}, {127, "7f"}, {128, "8001"}, {16383, "ff7f"}, {16384, "808001"},
		{2097151, "ffff7f"}, {2097152, "80808001"}, {268435455, "ffffff7f"},
	}
	for _, c := range cases {
		want := unhex(t, c.hex)
		if got := appendVarint(nil, c.n); !bytes.Equal(got, want) {
			t.Errorf("appendVarint(%d) = % x, want % x", c.n, got, want)
		}
		if varintLen(c.n) != len(want) {
			t.Errorf("varintLen(%d) = %d, want %d", c.n, varintLen(c.n), len(want))
		}
		// As a remaining length in a fixed header.
		typ, flags, rem, hl, err := ParseFixedHeader(append([]byte{0x3b}, want...))
		if err != nil || typ != PUBLISH || flags != 0x0b || rem != c.n || hl != 1+len(want) {
			t.Errorf("ParseFixedHeader(3b % x) = %d %d %d %d %v", want, typ, flags, rem, hl, err)
		}
		// Every proper prefix is incomplete.
		for i := 0; i < len(want); i++ {
			if _, _, _, _, err := ParseFixedHeader(append([]byte{0x30}, want[:i]...)); err != ErrIncomplete {
				t.Errorf("prefix % x: err = %v, want ErrIncomplete", want[:i], err)
			}
		}
	}
}

func TestParseFixedHeaderErrors(t *testing.T) {
	if _, _, _, _, err := ParseFixedHeader(nil); err != ErrIncomplete {
		t.Fatalf("empty: %v", err)
	}
	_, _, _, _, err := ParseFixedHeader(unhex(t, "30 ff ff ff ff"))
	wantCode(t, err, MalformedPacket)
	_, _, _, _, err = ParseFixedHeader(unhex(t, "30 80 80 80 80 01"))
	wantCode(t, err, MalformedPacket)
	_, _, _, _, err = ParseFixedHeader(unhex(t, "00"))
	wantCode(t, err, MalformedPacket) // type 0, even before the length arrives
	_, _, _, _, err = ParseFixedHeader(unhex(t, "0f 00"))
	wantCode(t, err, MalformedPacket)
	// Non-minimal lengths are accepted on decode (3 written as 83 00).
	_, _, rem, hl, err := ParseFixedHeader(unhex(t, "30 83 00"))
	if err != nil || rem != 3 || hl != 3 {
		t.Fatalf("non-minimal: rem %d hl %d err %v", rem, hl, err)
	}
	p := mustDecode(t, unhex(t, "30 83 00 0001 74"), V311).(*Publish)
	if string(p.Topic) != "t" {
		t.Fatalf("non-minimal packet decoded as %s", show(p))
	}
	// Flags are left to Decode.
	typ, flags, _, _, err := ParseFixedHeader(unhex(t, "4f 02"))
	if err != nil || typ != PUBACK || flags != 0x0f {
		t.Fatalf("flags: %d %d %v", typ, flags, err)
	}
}

// The UTF-8 example of spec section 1.5.4: "A" followed by U+2A6D4.
func TestStringEncoding(t *testing.T) {
	want := unhex(t, "0005 41 f0aa9b94")
	if got := appendBinary(nil, []byte("A\U0002A6D4")); !bytes.Equal(got, want) {
		t.Fatalf("got % x", got)
	}
	s, rest, err := readString(want)
	if err != nil || string(s) != "A\U0002A6D4" || len(rest) != 0 {
		t.Fatalf("readString: %q %v %v", s, rest, err)
	}
	bad := []string{
		"\x00",                          // U+0000
		"a\x00b",                        // U+0000 inside
		"\xed\xa0\x80",                  // U+D800, a surrogate
		"\xed\xbf\xbf",                  // U+DFFF
		"\xc0\xaf",                      // overlong '/'
		"\xff",                          // never valid
		"\xf4\x90\x80\x80",              // above U+10FFFF
		"ok\xe2\x82",                    // truncated sequence
		"é\x00",                         // NUL after a non-ASCII rune
		strings.Repeat("a", 5) + "\x80", // stray continuation byte
	}
	for _, s := range bad {
		if validUTF8([]byte(s)) {
			t.Errorf("validUTF8(%q) = true", s)
		}
	}
	for _, s := range []string{"", "a/b", "温度/é", "\U0010FFFF", "\uFFFF", "\u007f"} {
		if !validUTF8([]byte(s)) {
			t.Errorf("validUTF8(%q) = false", s)
		}
	}
}

// A large remaining length uses a multi-byte varint in the header.
func TestLargePacketHeader(t *testing.T) {
	p := &Publish{Topic: bs("t"), Payload: bytes.Repeat([]byte{'x'}, 125)}
	b := mustAppend(t, p, V311)
	if !bytes.Equal(b[:3], unhex(t, "30 80 01")) || len(b) != 131 {
		t.Fatalf("header % x, len %d", b[:3], len(b))
	}
	p.Payload = make([]byte, 1<<20)
	b = mustAppend(t, p, V5)
	typ, _, rem, hl, err := ParseFixedHeader(b)
	if err != nil || typ != PUBLISH || hl != 4 || rem != len(b)-4 {
		t.Fatalf("1 MiB publish header: %d %d %d %v", typ, rem, hl, err)
	}
}

// The fixed header refuses a remaining length past MaxRemaining (the
// varint table above shows MaxRemaining itself encodes).
func TestAppendHeaderLimit(t *testing.T) {
	out, err := appendHeader([]byte("x"), 0x30, MaxRemaining+1)
	if CodeOf(err) != PacketTooLarge || string(out) != "x" {
		t.Fatalf("MaxRemaining+1: %q %v", out, err)
	}
}
