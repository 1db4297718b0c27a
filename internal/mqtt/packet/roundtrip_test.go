package packet

import (
	"bytes"
	"fmt"
	"testing"
)

// TestRoundTrip encodes every fixture, decodes it into a fresh struct of the
// type named by the fixed header, and requires the same fields back and the
// same bytes on re-encoding.
func TestRoundTrip(t *testing.T) {
	for _, s := range allSamples() {
		t.Run(fmt.Sprintf("v%d/%s", s.v, s.name), func(t *testing.T) {
			b := mustAppend(t, s.p, s.v)
			typ, flags, body := split(t, b)
			if typ != s.p.Type() {
				t.Fatalf("type %d, want %d", typ, s.p.Type())
			}
			q := New(typ)
			if err := q.Decode(flags, body, s.v); err != nil {
				t.Fatalf("Decode(% x): %v", b, err)
			}
			want := s.p
			if c, ok := want.(*Connect); ok && c.ProtocolName == nil {
				// Decode reports the protocol name Append filled in.
				cc := *c
				cc.ProtocolName = protocolName(c.Version)
				want = &cc
			}
			if !sameFields(want, q) {
				t.Fatalf("round trip changed the packet\n sent %s\n  got %s\nbytes % x", show(want), show(q), b)
			}
			b2 := mustAppend(t, q, s.v)
			if !bytes.Equal(b, b2) {
				t.Fatalf("re-encoding differs\n first % x\nsecond % x", b, b2)
			}
		})
	}
}

// TestAppendKeepsPrefixAndReusesBuffer checks the append contract: the
// packet lands after what dst held, and a dst with room is not reallocated.
func TestAppendKeepsPrefixAndReusesBuffer(t *testing.T) {
	for _, s := range allSamples() {
		want := mustAppend(t, s.p, s.v)
		dst := make([]byte, 3, 3+len(want))
		copy(dst, "abc")
		out, err := s.p.Append(dst, s.v)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if string(out[:3]) != "abc" || !bytes.Equal(out[3:], want) {
			t.Fatalf("%s: Append(prefix) = % x, want abc + % x", s.name, out, want)
		}
		if &out[0] != &dst[0] {
			t.Fatalf("%s: Append reallocated a buffer that had room", s.name)
		}
	}
}

// TestDecodeReusesStruct decodes every fixture of a type, in turn, into one
// struct: nothing from an earlier packet may leak into a later one.
func TestDecodeReusesStruct(t *testing.T) {
	for _, v := range []Version{V311, V5} {
		reused := map[byte]Packet{}
		var list []sample
		for _, s := range allSamples() {
			if s.v == v {
				list = append(list, s)
			}
		}
		// Forwards then backwards so each packet follows a different one.
		for i := 0; i < 2*len(list); i++ {
			s := list[i%len(list)]
			if i >= len(list) {
				s = list[2*len(list)-1-i]
			}
			b := mustAppend(t, s.p, v)
			typ, flags, body := split(t, b)
			q, ok := reused[typ]
			if !ok {
				q = New(typ)
				reused[typ] = q
			}
			if err := q.Decode(flags, body, v); err != nil {
				t.Fatalf("%s: %v", s.name, err)
			}
			fresh := mustDecode(t, b, v)
			if !sameFields(fresh, q) {
				t.Fatalf("v%d %s: reused struct kept old fields\n got %s\nwant %s", v, s.name, show(q), show(fresh))
			}
		}
	}
}

// TestV3Downgrade: broker-side packets carrying v5-only fields are written
// to v3 clients without them (one struct fans out to both versions).
func TestV3Downgrade(t *testing.T) {
	cases := []struct {
		name string
		p    Packet
		want string
	}{
		{"publish drops props", &Publish{QoS: 1, Topic: bs("t"), PacketID: 1,
			Props: publishPropsAll(), Payload: bs("p")}, "32 06 0001 74 0001 70"},
		{"puback drops reason and props", &Puback{PacketID: 5, Reason: QuotaExceeded,
			Props: reasonProps()}, "40 02 0005"},
		{"pubrel drops reason", &Pubrel{PacketID: 5, Reason: PacketIDNotFound}, "62 02 0005"},
		{"suback maps failures to 0x80", &Suback{PacketID: 1, Props: reasonProps(),
			Reasons: []ReasonCode{GrantedQoS1, NotAuthorized, WildcardSubscriptionsNotSupported, UnspecifiedError}},
			"90 06 0001 01 80 80 80"},
		{"unsuback drops reasons", &Unsuback{PacketID: 9, Reasons: []ReasonCode{NoSubscriptionExisted}},
			"b0 02 0009"},
		{"connack maps v5 refusal", &Connack{Reason: BadUsernameOrPassword, Props: reasonProps()}, "20 02 00 04"},
		{"connack maps banned", &Connack{Reason: Banned}, "20 02 00 05"},
		{"connack maps unsupported version", &Connack{Reason: UnsupportedProtocolVersion}, "20 02 00 01"},
		{"connack maps other failure", &Connack{Reason: QuotaExceeded}, "20 02 00 03"},
		{"connack keeps v3 code", &Connack{Reason: V3RefusedIdentifierRejected}, "20 02 00 02"},
		{"disconnect drops reason", &Disconnect{Reason: ServerShuttingDown, Props: reasonProps()}, "e0 00"},
		{"connect drops props", &Connect{Version: V311, ClientID: bs("c"), Props: connectPropsAll(),
			Will: true, WillProps: willPropsAll(), WillTopic: bs("w"), WillPayload: bs("x")},
			"10 13 0004 4d515454 04 04 0000 0001 63 0001 77 0001 78"},
	}
	for _, c := range cases {
		got, err := c.p.Append(nil, V311)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if want := unhex(t, c.want); !bytes.Equal(got, want) {
			t.Fatalf("%s:\n got % x\nwant % x", c.name, got, want)
		}
		// What we wrote must be a valid v3 packet.
		mustDecode(t, got, V311)
	}
}

func TestV3ConnackCode(t *testing.T) {
	cases := map[ReasonCode]ReasonCode{
		Success: V3Accepted, UnsupportedProtocolVersion: V3RefusedProtocolVersion,
		ClientIDNotValid: V3RefusedIdentifierRejected, ServerUnavailable: V3RefusedServerUnavailable,
		ServerBusy: V3RefusedServerUnavailable, BadUsernameOrPassword: V3RefusedBadUsernameOrPassword,
		NotAuthorized: V3RefusedNotAuthorized, Banned: V3RefusedNotAuthorized,
		BadAuthenticationMethod: V3RefusedNotAuthorized, MalformedPacket: V3RefusedServerUnavailable,
		UseAnotherServer: V3RefusedServerUnavailable, V3RefusedBadUsernameOrPassword: V3RefusedBadUsernameOrPassword,
	}
	for in, want := range cases {
		if got := V3ConnackCode(in); got != want {
			t.Errorf("V3ConnackCode(0x%02X) = %d, want %d", byte(in), got, want)
		}
	}
}

func TestReasonCodeString(t *testing.T) {
	cases := map[ReasonCode]string{
		Success: "success", MalformedPacket: "malformed packet", PacketTooLarge: "packet too large",
		WildcardSubscriptionsNotSupported: "wildcard subscriptions not supported",
		ReasonCode(0x03):                  "reason code 0x03",
	}
	for rc, want := range cases {
		if got := rc.String(); got != want {
			t.Errorf("%#x.String() = %q, want %q", byte(rc), got, want)
		}
	}
	// Every code in a packet's valid set has a name.
	for _, set := range []*reasonSet{&connackReasons, &pubackReasons, &pubrelReasons,
		&subackReasons, &unsubackReasons, &disconnectReasons, &authReasons} {
		for c := 0; c < 256; c++ {
			if set.has(ReasonCode(c)) {
				if _, ok := reasonNames[ReasonCode(c)]; !ok {
					t.Errorf("reason 0x%02X is valid somewhere but has no name", c)
				}
			}
		}
	}
}

func TestNewKnowsEveryType(t *testing.T) {
	for typ := byte(1); typ <= 15; typ++ {
		p := New(typ)
		if p == nil || p.Type() != typ {
			t.Fatalf("New(%d) = %v", typ, p)
		}
		if TypeName(typ) == "RESERVED" {
			t.Fatalf("TypeName(%d) unnamed", typ)
		}
	}
	if New(0) != nil || New(16) != nil {
		t.Fatal("New accepted an unknown type")
	}
}

func TestCodeOf(t *testing.T) {
	_, err := Decode(unhex(t, "30 02 00"), V311)
	if CodeOf(err) != MalformedPacket {
		t.Fatalf("CodeOf(%v) = %v", err, CodeOf(err))
	}
	if CodeOf(fmt.Errorf("wrapped: %w", errTooLarge)) != PacketTooLarge {
		t.Fatal("CodeOf does not unwrap")
	}
	if CodeOf(bytes.ErrTooLarge) != UnspecifiedError {
		t.Fatal("CodeOf of a foreign error")
	}
}

// Decoded fields alias the body but must not reach past their own bytes: a
// caller appending to Payload must not overwrite the next packet in a shared
// read buffer.
func TestDecodedSlicesAreClipped(t *testing.T) {
	wire := mustAppend(t, &Publish{QoS: 1, Topic: bs("a/b"), PacketID: 1,
		Props: props(PropCorrelationData, "cd", PropUser, [2]string{"k", "v"}), Payload: bs("pay")}, V5)
	buf := append(bytes.Clone(wire), "NEXT-PACKET"...)
	_, flags, _, hl, err := ParseFixedHeader(buf)
	if err != nil {
		t.Fatal(err)
	}
	var p Publish
	if err := p.Decode(flags, buf[hl:len(wire)], V5); err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string][]byte{"payload": p.Payload, "topic": p.Topic,
		"correlation": p.Props.CorrelationData, "user value": p.Props.User[0].Value} {
		if cap(s) != len(s) {
			t.Errorf("%s: cap %d > len %d", name, cap(s), len(s))
		}
	}
	_ = append(p.Payload, "XXXX"...)
	if !bytes.HasSuffix(buf, []byte("NEXT-PACKET")) {
		t.Fatal("appending to the payload overwrote the following bytes")
	}
}

func TestPublishSize(t *testing.T) {
	for _, s := range allSamples() {
		p, ok := s.p.(*Publish)
		if !ok {
			continue
		}
		n, err := p.Size(s.v)
		if b := mustAppend(t, p, s.v); err != nil || n != len(b) {
			t.Errorf("%s: Size = %d, %v; Append wrote %d", s.name, n, err, len(b))
		}
	}
	if _, err := (&Publish{Topic: bs("#")}).Size(V5); CodeOf(err) != TopicNameInvalid {
		t.Errorf("Size accepted a wildcard topic: %v", err)
	}
}

func TestDecodeWholePacket(t *testing.T) {
	b := mustAppend(t, &Publish{Topic: bs("t"), Payload: bs("p")}, V311)
	for name, in := range map[string][]byte{
		"empty": nil, "header only": b[:1], "truncated": b[:len(b)-1], "trailing": append(bytes.Clone(b), 0),
	} {
		if p, err := Decode(in, V311); CodeOf(err) != MalformedPacket {
			t.Errorf("%s: %v %v", name, p, err)
		}
	}
}

func TestSmallHelpers(t *testing.T) {
	if V31.String() != "3.1" || V311.String() != "3.1.1" || V5.String() != "5.0" || Version(9).String() != "Version(9)" {
		t.Error("Version.String")
	}
	if TypeName(PUBLISH) != "PUBLISH" || TypeName(0) != "RESERVED" || TypeName(200) != "RESERVED" {
		t.Error("TypeName")
	}
	p := props(PropTopicAlias, 3, PropUser, [2]string{"k", "v"})
	p.Clear(PropTopicAlias)
	if p.Has(PropTopicAlias) || !p.Has(PropUser) || p.Has(PropID(70)) {
		t.Errorf("Clear/Has: %064b", p.Present)
	}
	p.Set(PropID(70)) // out of range: ignored, not a panic
	if p.Present>>PropUser != 1 {
		t.Errorf("Set out of range changed bits: %064b", p.Present)
	}
	e := &Error{Code: ProtocolError, Reason: "x"}
	if e.Error() != "mqtt: x (protocol error)" {
		t.Errorf("Error() = %q", e.Error())
	}
}
