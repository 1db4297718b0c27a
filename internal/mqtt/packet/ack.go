package packet

// PUBACK, PUBREC, PUBREL and PUBCOMP share their layout. They are four
// distinct types (so a Packet's Type() is fixed and a PUBREL can never be
// written with the wrong flags) backed by the shared decodeAck/appendAck.
//
// In v3 only PacketID exists on the wire: Reason and Props are dropped on
// Append and zero after Decode.

// Puback is the PUBACK packet (QoS 1 acknowledgement).
type Puback struct {
	PacketID uint16
	Reason   ReasonCode
	Props    Properties
}

// Pubrec is the PUBREC packet (QoS 2, part 1).
type Pubrec struct {
	PacketID uint16
	Reason   ReasonCode
	Props    Properties
}

// Pubrel is the PUBREL packet (QoS 2, part 2); its fixed header flags are
// 0b0010.
type Pubrel struct {
	PacketID uint16
	Reason   ReasonCode
	Props    Properties
}

// Pubcomp is the PUBCOMP packet (QoS 2, part 3).
type Pubcomp struct {
	PacketID uint16
	Reason   ReasonCode
	Props    Properties
}

func (*Puback) Type() byte  { return PUBACK }
func (*Pubrec) Type() byte  { return PUBREC }
func (*Pubrel) Type() byte  { return PUBREL }
func (*Pubcomp) Type() byte { return PUBCOMP }

func (a *Puback) Decode(flags byte, body []byte, v Version) error {
	return decodeAck(PUBACK, flags, body, v, &a.PacketID, &a.Reason, &a.Props)
}
func (a *Pubrec) Decode(flags byte, body []byte, v Version) error {
	return decodeAck(PUBREC, flags, body, v, &a.PacketID, &a.Reason, &a.Props)
}
func (a *Pubrel) Decode(flags byte, body []byte, v Version) error {
	return decodeAck(PUBREL, flags, body, v, &a.PacketID, &a.Reason, &a.Props)
}
func (a *Pubcomp) Decode(flags byte, body []byte, v Version) error {
	return decodeAck(PUBCOMP, flags, body, v, &a.PacketID, &a.Reason, &a.Props)
}

func (a *Puback) Append(dst []byte, v Version) ([]byte, error) {
	return appendAck(dst, PUBACK, v, a.PacketID, a.Reason, &a.Props)
}
func (a *Pubrec) Append(dst []byte, v Version) ([]byte, error) {
	return appendAck(dst, PUBREC, v, a.PacketID, a.Reason, &a.Props)
}
func (a *Pubrel) Append(dst []byte, v Version) ([]byte, error) {
	return appendAck(dst, PUBREL, v, a.PacketID, a.Reason, &a.Props)
}
func (a *Pubcomp) Append(dst []byte, v Version) ([]byte, error) {
	return appendAck(dst, PUBCOMP, v, a.PacketID, a.Reason, &a.Props)
}

// fixedFlags is the only valid low nibble for every type but PUBLISH.
func fixedFlags(typ byte) byte {
	if typ == PUBREL || typ == SUBSCRIBE || typ == UNSUBSCRIBE {
		return 0x02
	}
	return 0
}

func ackReasons(typ byte) *reasonSet {
	if typ == PUBACK || typ == PUBREC {
		return &pubackReasons
	}
	return &pubrelReasons
}

func decodeAck(typ, flags byte, body []byte, v Version, id *uint16, r *ReasonCode, p *Properties) error {
	*id, *r = 0, Success
	p.Reset()
	if err := checkVersion(v); err != nil {
		return err
	}
	if flags != fixedFlags(typ) {
		return errBadFlags
	}
	var err error
	b := body
	if *id, b, err = readU16(b); err != nil {
		return err
	}
	if *id == 0 {
		return errZeroPacketID
	}
	// v5 short forms (3.4.2.1): remaining length 2 means Success and no
	// properties, 3 means a reason code and no properties.
	if v != V5 || len(b) == 0 {
		if len(b) != 0 {
			return errTrailing
		}
		return nil
	}
	*r = ReasonCode(b[0])
	b = b[1:]
	if !ackReasons(typ).has(*r) {
		return errBadReason
	}
	if len(b) == 0 {
		return nil
	}
	if b, err = p.decode(b, typ); err != nil {
		return err
	}
	if len(b) != 0 {
		return errTrailing
	}
	return nil
}

// AppendAck appends a PUBACK, PUBREC, PUBREL or PUBCOMP (typ) without building the packet struct:
// a broker writes one per QoS 1/2 message, and one Properties on its stack is enough. props may
// be nil.
func AppendAck(dst []byte, typ byte, v Version, id uint16, r ReasonCode, props *Properties) ([]byte, error) {
	if typ < PUBACK || typ > PUBCOMP {
		return dst, protocolErr("not an acknowledgement packet type")
	}
	if props == nil {
		props = &noProps
	}
	return appendAck(dst, typ, v, id, r, props)
}

// noProps is an empty property set for AppendAck; it is only read.
var noProps Properties

// appendAck writes the shortest form the spec allows, as peers do: just the
// packet identifier for Success without properties, the reason code alone
// when there are no properties.
func appendAck(dst []byte, typ byte, v Version, id uint16, r ReasonCode, p *Properties) ([]byte, error) {
	if err := checkVersion(v); err != nil {
		return dst, err
	}
	if id == 0 {
		return dst, errZeroPacketID
	}
	rem, pn, withProps := 2, 0, false
	if v == V5 {
		if !ackReasons(typ).has(r) {
			return dst, errBadReason
		}
		if !p.empty() {
			blk, n, err := propsSize(p, typ)
			if err != nil {
				return dst, err
			}
			rem, pn, withProps = 3+blk, n, true
		} else if r != Success {
			rem = 3
		}
	}
	out, err := appendHeader(dst, typ<<4|fixedFlags(typ), rem)
	if err != nil {
		return dst, err
	}
	out = appendU16(out, id)
	if rem > 2 {
		out = append(out, byte(r))
	}
	if withProps {
		out = p.appendTo(out, pn)
	}
	return out, nil
}
