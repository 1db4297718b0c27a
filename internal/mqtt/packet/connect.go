package packet

import "bytes"

// Connect is the CONNECT packet. Decode works out the version itself from
// the protocol name and level.
type Connect struct {
	// ProtocolName is "MQTT" (3.1.1, 5) or "MQIsdp" (3.1). Append fills it
	// in from Version when empty.
	ProtocolName []byte
	// Version is the protocol level. After an UnsupportedProtocolVersion
	// error it holds the raw level byte the client sent, so the broker can
	// pick the CONNACK format for its refusal.
	Version    Version
	CleanStart bool // "Clean Session" in v3
	KeepAlive  uint16
	Props      Properties
	ClientID   []byte

	Will        bool
	WillQoS     byte
	WillRetain  bool
	WillProps   Properties
	WillTopic   []byte
	WillPayload []byte

	HasUsername bool
	Username    []byte
	HasPassword bool
	Password    []byte
}

func (*Connect) Type() byte { return CONNECT }

// Connect flag bits (spec 3.1.2.3).
const (
	cfReserved   = 0x01
	cfCleanStart = 0x02
	cfWill       = 0x04
	cfWillQoS    = 0x18
	cfWillRetain = 0x20
	cfPassword   = 0x40
	cfUsername   = 0x80
)

var (
	nameMQTT   = []byte("MQTT")
	nameMQIsdp = []byte("MQIsdp")

	errConnReserved      = malformed("CONNECT reserved flag set")
	errWillQoS3          = malformed("will QoS 3")
	errWillFlagsNoWill   = malformed("will QoS or retain set without will flag")
	errPasswordNoUser    = malformed("password flag without user name flag")
	errWillTopicEmpty    = &Error{Code: TopicNameInvalid, Reason: "empty will topic"}
	errConnVersionConfig = protocolErr("Connect.Version and the version argument differ")
)

func protocolName(v Version) []byte {
	if v == V31 {
		return nameMQIsdp
	}
	return nameMQTT
}

// reset empties c for Decode, keeping slice capacity.
func (c *Connect) reset() {
	p, wp := c.Props, c.WillProps
	p.Reset()
	wp.Reset()
	*c = Connect{Props: p, WillProps: wp}
}

// Decode parses a CONNECT body. The v argument is ignored.
func (c *Connect) Decode(flags byte, body []byte, _ Version) error {
	c.reset()
	if flags != 0 {
		return errBadFlags
	}
	name, b, err := readString(body)
	if err != nil {
		return err
	}
	level, b, err := readByte(b)
	if err != nil {
		return err
	}
	c.ProtocolName, c.Version = name, Version(level)
	if !bytes.Equal(name, protocolName(c.Version)) || !c.Version.valid() {
		// Spec 3.1.2.1/3.1.2.2: the server may answer an unknown name or
		// level with a CONNACK saying so (0x84, or 0x01 in v3).
		return errBadVersion
	}
	cf, b, err := readByte(b)
	if err != nil {
		return err
	}
	if cf&cfReserved != 0 {
		return errConnReserved
	}
	c.CleanStart = cf&cfCleanStart != 0
	c.Will = cf&cfWill != 0
	c.WillQoS = (cf & cfWillQoS) >> 3
	c.WillRetain = cf&cfWillRetain != 0
	c.HasPassword = cf&cfPassword != 0
	c.HasUsername = cf&cfUsername != 0
	if err := c.checkFlags(c.Version); err != nil {
		return err
	}
	if c.KeepAlive, b, err = readU16(b); err != nil {
		return err
	}
	if c.Version == V5 {
		if b, err = c.Props.decode(b, CONNECT); err != nil {
			return err
		}
	}
	if c.ClientID, b, err = readString(b); err != nil {
		return err
	}
	if c.Will {
		if c.Version == V5 {
			if b, err = c.WillProps.decode(b, ctxWill); err != nil {
				return err
			}
		}
		if c.WillTopic, b, err = readString(b); err != nil {
			return err
		}
		if err := checkWillTopic(c.WillTopic); err != nil {
			return err
		}
		if c.WillPayload, b, err = readBinary(b); err != nil {
			return err
		}
	}
	if c.HasUsername {
		if c.Username, b, err = readString(b); err != nil {
			return err
		}
	}
	if c.HasPassword {
		if c.Password, b, err = readBinary(b); err != nil {
			return err
		}
	}
	if len(b) != 0 {
		return errTrailing
	}
	return nil
}

// checkFlags holds the flag rules shared by Decode and Append.
func (c *Connect) checkFlags(v Version) error {
	if c.WillQoS > 2 {
		return errWillQoS3
	}
	if !c.Will && (c.WillQoS != 0 || c.WillRetain) {
		return errWillFlagsNoWill
	}
	// MQTT 5 allows a password without a user name (3.1.2.9); v3 does not.
	if v != V5 && c.HasPassword && !c.HasUsername {
		return errPasswordNoUser
	}
	return nil
}

// checkWillTopic: the Will Topic is a topic name, so no wildcards, and,
// unlike a v5 PUBLISH, it cannot lean on a topic alias to be empty.
func checkWillTopic(t []byte) error {
	if len(t) == 0 {
		return errWillTopicEmpty
	}
	return checkTopicName(t)
}

// Append writes the CONNECT for c.Version. If c.Version is 0 it uses v;
// otherwise v must be 0 or equal to it. Properties are written only for v5.
func (c *Connect) Append(dst []byte, v Version) ([]byte, error) {
	ver := c.Version
	if ver == 0 {
		ver = v
	} else if v != 0 && v != ver {
		return dst, errConnVersionConfig
	}
	if err := checkVersion(ver); err != nil {
		return dst, err
	}
	name := protocolName(ver)
	if len(c.ProtocolName) != 0 && !bytes.Equal(c.ProtocolName, name) {
		return dst, errBadVersion
	}
	if err := c.checkFlags(ver); err != nil {
		return dst, err
	}

	rem := 2 + len(name) + 1 + 1 + 2
	var pn, wpn int
	if ver == V5 {
		blk, n, err := propsSize(&c.Props, CONNECT)
		if err != nil {
			return dst, err
		}
		rem, pn = rem+blk, n
	}
	n, err := strSize(c.ClientID)
	if err != nil {
		return dst, err
	}
	rem += n
	if c.Will {
		if ver == V5 {
			blk, n, err := propsSize(&c.WillProps, ctxWill)
			if err != nil {
				return dst, err
			}
			rem, wpn = rem+blk, n
		}
		if err := checkWillTopic(c.WillTopic); err != nil {
			return dst, err
		}
		if n, err = strSize(c.WillTopic); err != nil {
			return dst, err
		}
		rem += n
		if n, err = binSize(c.WillPayload); err != nil {
			return dst, err
		}
		rem += n
	}
	if c.HasUsername {
		if n, err = strSize(c.Username); err != nil {
			return dst, err
		}
		rem += n
	}
	if c.HasPassword {
		if n, err = binSize(c.Password); err != nil {
			return dst, err
		}
		rem += n
	}

	var cf byte
	if c.CleanStart {
		cf |= cfCleanStart
	}
	if c.Will {
		cf |= cfWill | c.WillQoS<<3
		if c.WillRetain {
			cf |= cfWillRetain
		}
	}
	if c.HasPassword {
		cf |= cfPassword
	}
	if c.HasUsername {
		cf |= cfUsername
	}

	out, err := appendHeader(dst, CONNECT<<4, rem)
	if err != nil {
		return dst, err
	}
	out = appendBinary(out, name)
	out = append(out, byte(ver), cf)
	out = appendU16(out, c.KeepAlive)
	if ver == V5 {
		out = c.Props.appendTo(out, pn)
	}
	out = appendBinary(out, c.ClientID)
	if c.Will {
		if ver == V5 {
			out = c.WillProps.appendTo(out, wpn)
		}
		out = appendBinary(out, c.WillTopic)
		out = appendBinary(out, c.WillPayload)
	}
	if c.HasUsername {
		out = appendBinary(out, c.Username)
	}
	if c.HasPassword {
		out = appendBinary(out, c.Password)
	}
	return out, nil
}

// Connack is the CONNACK packet. In v3, Reason holds the 3.1.1 return code
// (0..5).
type Connack struct {
	SessionPresent bool
	Reason         ReasonCode
	Props          Properties
}

func (*Connack) Type() byte { return CONNACK }

var (
	errConnackFlags     = malformed("CONNACK reserved flag set")
	errConnackPresent   = protocolErr("session present with a refusal")
	errV3ReturnCode     = protocolErr("CONNACK return code above 5")
	errV3ConnackUnknown = protocolErr("reason code has no MQTT 3.1.1 CONNACK counterpart")
)

// Decode parses a CONNACK body.
func (c *Connack) Decode(flags byte, body []byte, v Version) error {
	c.Props.Reset()
	c.SessionPresent, c.Reason = false, 0
	if err := checkVersion(v); err != nil {
		return err
	}
	if flags != 0 {
		return errBadFlags
	}
	af, b, err := readByte(body)
	if err != nil {
		return err
	}
	r, b, err := readByte(b)
	if err != nil {
		return err
	}
	if af&^1 != 0 {
		return errConnackFlags
	}
	c.SessionPresent, c.Reason = af == 1, ReasonCode(r)
	if v == V5 {
		if !connackReasons.has(c.Reason) {
			return errBadReason
		}
		if b, err = c.Props.decode(b, CONNACK); err != nil {
			return err
		}
	} else if c.Reason > V3RefusedNotAuthorized {
		return errV3ReturnCode
	}
	// 3.2.2.2 (v5) / 3.2.2.2 (3.1.1): a refusal must not claim a session.
	if c.SessionPresent && c.Reason != Success {
		return errConnackPresent
	}
	if len(b) != 0 {
		return errTrailing
	}
	return nil
}

// Append writes the CONNACK. In v3 a v5 failure code (0x80 and up) is
// mapped with V3ConnackCode and properties are dropped; codes 0..5 are
// written as they are.
func (c *Connack) Append(dst []byte, v Version) ([]byte, error) {
	if err := checkVersion(v); err != nil {
		return dst, err
	}
	r := c.Reason
	rem := 2
	var pn int
	if v == V5 {
		if !connackReasons.has(r) {
			return dst, errBadReason
		}
		blk, n, err := propsSize(&c.Props, CONNACK)
		if err != nil {
			return dst, err
		}
		rem, pn = rem+blk, n
	} else if r > V3RefusedNotAuthorized {
		if !r.IsError() || !connackReasons.has(r) {
			return dst, errV3ConnackUnknown
		}
		r = V3ConnackCode(r)
	}
	if c.SessionPresent && r != Success {
		return dst, errConnackPresent
	}
	out, err := appendHeader(dst, CONNACK<<4, rem)
	if err != nil {
		return dst, err
	}
	var af byte
	if c.SessionPresent {
		af = 1
	}
	out = append(out, af, byte(r))
	if v == V5 {
		out = c.Props.appendTo(out, pn)
	}
	return out, nil
}
