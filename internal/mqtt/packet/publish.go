package packet

// Publish is the PUBLISH packet. This is the hot path: decoding and
// encoding into reused structs and buffers allocates nothing.
type Publish struct {
	Dup    bool
	QoS    byte
	Retain bool
	// Topic may be empty only in v5 with a Topic Alias property; the broker
	// resolves aliases, the codec only checks that one is there.
	Topic []byte
	// PacketID is present on the wire only for QoS 1 and 2.
	PacketID uint16
	Props    Properties
	Payload  []byte
}

func (*Publish) Type() byte { return PUBLISH }

// PUBLISH fixed header flags.
const (
	pubRetain = 0x01
	pubQoS    = 0x06
	pubDup    = 0x08
)

var (
	errQoS3       = malformed("QoS 3")
	errDupQoS0    = malformed("DUP set on a QoS 0 PUBLISH")
	errTopicEmpty = protocolErr("empty topic name without a topic alias")
)

// Decode parses a PUBLISH body. Topic, Payload and the properties alias
// body.
func (p *Publish) Decode(flags byte, body []byte, v Version) error {
	p.Props.Reset()
	p.Topic, p.Payload, p.PacketID = nil, nil, 0
	p.Dup = flags&pubDup != 0
	p.QoS = (flags & pubQoS) >> 1
	p.Retain = flags&pubRetain != 0
	if err := checkVersion(v); err != nil {
		return err
	}
	if p.QoS == 3 {
		return errQoS3 // 3.3.1.2: Malformed, not a Protocol Error
	}
	if p.QoS == 0 && p.Dup {
		return errDupQoS0
	}
	topic, b, err := readBinary(body)
	if err != nil {
		return err
	}
	if err := checkTopicName(topic); err != nil {
		return err
	}
	p.Topic = topic
	if p.QoS > 0 {
		if p.PacketID, b, err = readU16(b); err != nil {
			return err
		}
		// 2.2.1: a PUBLISH with QoS > 0 needs a non-zero identifier. The
		// packet parses fine, so by the spec's terms this is a Protocol
		// Error rather than a Malformed Packet.
		if p.PacketID == 0 {
			return errZeroPacketID
		}
	}
	if v == V5 {
		if b, err = p.Props.decode(b, PUBLISH); err != nil {
			return err
		}
	}
	if len(topic) == 0 && (v != V5 || !p.Props.Has(PropTopicAlias)) {
		return errTopicEmpty
	}
	p.Payload = b[:len(b):len(b)]
	return nil
}

// layout validates p for version v and returns its remaining length and
// property length; Append and Size share it.
func (p *Publish) layout(v Version) (rem, pn int, err error) {
	if err := checkVersion(v); err != nil {
		return 0, 0, err
	}
	if p.QoS > 2 {
		return 0, 0, errQoS3
	}
	if p.QoS == 0 && p.Dup {
		return 0, 0, errDupQoS0
	}
	if p.QoS > 0 && p.PacketID == 0 {
		return 0, 0, errZeroPacketID
	}
	if err := checkTopicName(p.Topic); err != nil {
		return 0, 0, err
	}
	if len(p.Topic) > 0xFFFF {
		return 0, 0, errStringTooLong
	}
	rem = 2 + len(p.Topic) + len(p.Payload)
	if p.QoS > 0 {
		rem += 2
	}
	if v == V5 {
		blk, n, err := propsSize(&p.Props, PUBLISH)
		if err != nil {
			return 0, 0, err
		}
		rem, pn = rem+blk, n
	}
	if len(p.Topic) == 0 && (v != V5 || !p.Props.Has(PropTopicAlias)) {
		return 0, 0, errTopicEmpty
	}
	if rem > MaxRemaining {
		return 0, 0, errTooLarge
	}
	return rem, pn, nil
}

// Size returns the length Append would write for version v, without
// writing; a broker compares it with a client's Maximum Packet Size before
// deciding to send.
func (p *Publish) Size(v Version) (int, error) {
	rem, _, err := p.layout(v)
	if err != nil {
		return 0, err
	}
	return 1 + varintLen(rem) + rem, nil
}

// Append writes the PUBLISH. Properties are written only in v5, so one
// struct can be fanned out to v3 and v5 subscribers alike.
func (p *Publish) Append(dst []byte, v Version) ([]byte, error) {
	rem, pn, err := p.layout(v)
	if err != nil {
		return dst, err
	}
	first := PUBLISH<<4 | p.QoS<<1
	if p.Dup {
		first |= pubDup
	}
	if p.Retain {
		first |= pubRetain
	}
	out, err := appendHeader(dst, first, rem)
	if err != nil {
		return dst, err
	}
	out = appendBinary(out, p.Topic)
	if p.QoS > 0 {
		out = appendU16(out, p.PacketID)
	}
	if v == V5 {
		out = p.Props.appendTo(out, pn)
	}
	return append(out, p.Payload...), nil
}
