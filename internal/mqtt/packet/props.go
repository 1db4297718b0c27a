package packet

import "math/bits"

// PropID is an MQTT 5 property identifier (spec section 2.2.2.2).
type PropID byte

// Property identifiers.
const (
	PropPayloadFormat        PropID = 0x01
	PropMessageExpiry        PropID = 0x02
	PropContentType          PropID = 0x03
	PropResponseTopic        PropID = 0x08
	PropCorrelationData      PropID = 0x09
	PropSubscriptionID       PropID = 0x0B
	PropSessionExpiry        PropID = 0x11
	PropAssignedClientID     PropID = 0x12
	PropServerKeepAlive      PropID = 0x13
	PropAuthMethod           PropID = 0x15
	PropAuthData             PropID = 0x16
	PropRequestProblemInfo   PropID = 0x17
	PropWillDelay            PropID = 0x18
	PropRequestResponseInfo  PropID = 0x19
	PropResponseInfo         PropID = 0x1A
	PropServerReference      PropID = 0x1C
	PropReasonString         PropID = 0x1F
	PropReceiveMax           PropID = 0x21
	PropTopicAliasMax        PropID = 0x22
	PropTopicAlias           PropID = 0x23
	PropMaxQoS               PropID = 0x24
	PropRetainAvailable      PropID = 0x25
	PropUser                 PropID = 0x26
	PropMaxPacketSize        PropID = 0x27
	PropWildcardSubAvailable PropID = 0x28
	PropSubIDAvailable       PropID = 0x29
	PropSharedSubAvailable   PropID = 0x2A
)

const maxPropID = PropSharedSubAvailable

// UserProperty is one User Property pair; both alias the decoded buffer.
type UserProperty struct {
	Key, Value []byte
}

// Properties holds the MQTT 5 properties of one packet (or of a Will).
// Byte-slice fields alias the decoded buffer. Present records which
// single-value properties were seen, because 0 is a meaningful value for
// many of them (a Session Expiry of 0 differs from an absent one).
type Properties struct {
	// Present has bit i set when the property with identifier i is present.
	Present uint64

	PayloadFormat        byte
	MessageExpiry        uint32
	ContentType          []byte
	ResponseTopic        []byte
	CorrelationData      []byte
	SubscriptionIDs      []uint32
	SessionExpiry        uint32
	AssignedClientID     []byte
	ServerKeepAlive      uint16
	AuthMethod           []byte
	AuthData             []byte
	RequestProblemInfo   byte
	WillDelay            uint32
	RequestResponseInfo  byte
	ResponseInfo         []byte
	ServerReference      []byte
	ReasonString         []byte
	ReceiveMax           uint16
	TopicAliasMax        uint16
	TopicAlias           uint16
	MaxQoS               byte
	RetainAvailable      byte
	User                 []UserProperty
	MaxPacketSize        uint32
	WildcardSubAvailable byte
	SubIDAvailable       byte
	SharedSubAvailable   byte
}

// Has reports whether the property was seen (decode) or is to be written
// (encode). For User and SubscriptionID the encoder looks at the slices
// instead.
func (p *Properties) Has(id PropID) bool { return id < 64 && p.Present&(1<<id) != 0 }

// Set marks a property present; set its field as well.
func (p *Properties) Set(id PropID) {
	if id < 64 {
		p.Present |= 1 << id
	}
}

// Clear marks a property absent.
func (p *Properties) Clear(id PropID) {
	if id < 64 {
		p.Present &^= 1 << id
	}
}

// Reset clears every property but keeps the capacity of User and
// SubscriptionIDs, so decoding into the same struct again allocates nothing.
func (p *Properties) Reset() {
	clear(p.User) // drop references into old buffers so the GC can free them
	user, ids := p.User[:0], p.SubscriptionIDs[:0]
	*p = Properties{User: user, SubscriptionIDs: ids}
}

// AddUser appends a User Property pair.
func (p *Properties) AddUser(key, value []byte) {
	p.User = append(p.User, UserProperty{Key: key, Value: value})
	p.Set(PropUser)
}

const (
	bitUser  = uint64(1) << PropUser
	bitSubID = uint64(1) << PropSubscriptionID
)

// empty reports whether an encoder would write no properties at all.
func (p *Properties) empty() bool {
	return p.Present&^(bitUser|bitSubID) == 0 && len(p.User) == 0 && len(p.SubscriptionIDs) == 0
}

// Value types of properties.
const (
	kindNone byte = iota
	kindFlag      // one byte restricted to 0 or 1
	kindU16
	kindU32
	kindVarint
	kindString
	kindBinary
	kindPair
)

var propKind = [maxPropID + 1]byte{
	PropPayloadFormat: kindFlag, PropMessageExpiry: kindU32, PropContentType: kindString,
	PropResponseTopic: kindString, PropCorrelationData: kindBinary,
	PropSubscriptionID: kindVarint, PropSessionExpiry: kindU32,
	PropAssignedClientID: kindString, PropServerKeepAlive: kindU16,
	PropAuthMethod: kindString, PropAuthData: kindBinary, PropRequestProblemInfo: kindFlag,
	PropWillDelay: kindU32, PropRequestResponseInfo: kindFlag, PropResponseInfo: kindString,
	PropServerReference: kindString, PropReasonString: kindString, PropReceiveMax: kindU16,
	PropTopicAliasMax: kindU16, PropTopicAlias: kindU16, PropMaxQoS: kindFlag,
	PropRetainAvailable: kindFlag, PropUser: kindPair, PropMaxPacketSize: kindU32,
	PropWildcardSubAvailable: kindFlag, PropSubIDAvailable: kindFlag,
	PropSharedSubAvailable: kindFlag,
}

// ctxWill is the property context of CONNECT's Will Properties; the other
// contexts are packet types.
const ctxWill = 16

func propMask(ids ...PropID) uint64 {
	var m uint64
	for _, id := range ids {
		m |= 1 << id
	}
	return m
}

// allowedProps[ctx] has a bit for each property the spec's table 2.4 allows
// in that packet (or in the Will Properties).
var allowedProps = [17]uint64{
	CONNECT: propMask(PropSessionExpiry, PropReceiveMax, PropMaxPacketSize, PropTopicAliasMax,
		PropRequestResponseInfo, PropRequestProblemInfo, PropUser, PropAuthMethod, PropAuthData),
	CONNACK: propMask(PropSessionExpiry, PropReceiveMax, PropMaxQoS, PropRetainAvailable,
		PropMaxPacketSize, PropAssignedClientID, PropTopicAliasMax, PropReasonString, PropUser,
		PropWildcardSubAvailable, PropSubIDAvailable, PropSharedSubAvailable,
		PropServerKeepAlive, PropResponseInfo, PropServerReference, PropAuthMethod, PropAuthData),
	PUBLISH: propMask(PropPayloadFormat, PropMessageExpiry, PropTopicAlias, PropResponseTopic,
		PropCorrelationData, PropUser, PropSubscriptionID, PropContentType),
	PUBACK:      propMask(PropReasonString, PropUser),
	PUBREC:      propMask(PropReasonString, PropUser),
	PUBREL:      propMask(PropReasonString, PropUser),
	PUBCOMP:     propMask(PropReasonString, PropUser),
	SUBSCRIBE:   propMask(PropSubscriptionID, PropUser),
	SUBACK:      propMask(PropReasonString, PropUser),
	UNSUBSCRIBE: propMask(PropUser),
	UNSUBACK:    propMask(PropReasonString, PropUser),
	DISCONNECT:  propMask(PropSessionExpiry, PropReasonString, PropUser, PropServerReference),
	AUTH:        propMask(PropAuthMethod, PropAuthData, PropReasonString, PropUser),
	ctxWill: propMask(PropWillDelay, PropPayloadFormat, PropMessageExpiry, PropContentType,
		PropResponseTopic, PropCorrelationData, PropUser),
}

var (
	errPropNotAllowed = malformed("unknown property, or property not allowed in this packet")
	errPropOverrun    = malformed("property length exceeds the packet")
	errPropDup        = protocolErr("property included more than once")
	errPropValue      = protocolErr("property value out of range")
	errSubIDZero      = protocolErr("subscription identifier 0")
	errTopicAliasZero = &Error{Code: TopicAliasInvalid, Reason: "topic alias 0"}
	errAuthDataAlone  = protocolErr("authentication data without authentication method")
)

func (p *Properties) flagField(id PropID) *byte {
	switch id {
	case PropPayloadFormat:
		return &p.PayloadFormat
	case PropRequestProblemInfo:
		return &p.RequestProblemInfo
	case PropRequestResponseInfo:
		return &p.RequestResponseInfo
	case PropMaxQoS:
		return &p.MaxQoS
	case PropRetainAvailable:
		return &p.RetainAvailable
	case PropWildcardSubAvailable:
		return &p.WildcardSubAvailable
	case PropSubIDAvailable:
		return &p.SubIDAvailable
	}
	return &p.SharedSubAvailable
}

func (p *Properties) u16Field(id PropID) *uint16 {
	switch id {
	case PropServerKeepAlive:
		return &p.ServerKeepAlive
	case PropReceiveMax:
		return &p.ReceiveMax
	case PropTopicAliasMax:
		return &p.TopicAliasMax
	}
	return &p.TopicAlias
}

func (p *Properties) u32Field(id PropID) *uint32 {
	switch id {
	case PropMessageExpiry:
		return &p.MessageExpiry
	case PropSessionExpiry:
		return &p.SessionExpiry
	case PropWillDelay:
		return &p.WillDelay
	}
	return &p.MaxPacketSize
}

func (p *Properties) bytesField(id PropID) *[]byte {
	switch id {
	case PropContentType:
		return &p.ContentType
	case PropResponseTopic:
		return &p.ResponseTopic
	case PropCorrelationData:
		return &p.CorrelationData
	case PropAssignedClientID:
		return &p.AssignedClientID
	case PropAuthMethod:
		return &p.AuthMethod
	case PropAuthData:
		return &p.AuthData
	case PropResponseInfo:
		return &p.ResponseInfo
	case PropServerReference:
		return &p.ServerReference
	}
	return &p.ReasonString
}

// checkNumeric applies the value rules the spec states per property: the
// one-byte properties are booleans (Maximum QoS too: 0 or 1), Receive
// Maximum and Maximum Packet Size must not be 0, Topic Alias 0 is a
// Topic Alias error.
func checkNumeric(id PropID, v uint32) error {
	switch id {
	case PropReceiveMax, PropMaxPacketSize:
		if v == 0 {
			return errPropValue
		}
	case PropTopicAlias:
		if v == 0 {
			return errTopicAliasZero
		}
	case PropSubscriptionID:
		if v == 0 {
			return errSubIDZero
		}
		if v > MaxRemaining {
			return errPropValue
		}
	default:
		if propKind[id] == kindFlag && v > 1 {
			return errPropValue
		}
	}
	return nil
}

// repeatable reports whether id may occur more than once in ctx: User
// Property anywhere, Subscription Identifier only in PUBLISH (one per
// matching subscription).
func repeatable(id PropID, ctx byte) bool {
	return id == PropUser || (id == PropSubscriptionID && ctx == PUBLISH)
}

// decode reads a property length and that many bytes of properties from b
// into p (which must be Reset) and returns the rest of b.
func (p *Properties) decode(b []byte, ctx byte) ([]byte, error) {
	n, b, err := readVarintBody(b)
	if err != nil {
		return nil, err
	}
	if n > len(b) {
		return nil, errPropOverrun
	}
	props, rest := b[:n], b[n:]
	for len(props) > 0 {
		// The identifier is formally a variable byte integer, but every
		// defined one is below 0x80, so a first byte with the high bit set
		// (a multi-byte identifier) is unknown either way.
		id := PropID(props[0])
		props = props[1:]
		if id > maxPropID || allowedProps[ctx]&(1<<id) == 0 {
			return nil, errPropNotAllowed
		}
		if p.Present&(1<<id) != 0 && !repeatable(id, ctx) {
			return nil, errPropDup
		}
		p.Present |= 1 << id
		switch propKind[id] {
		case kindFlag:
			var v byte
			if v, props, err = readByte(props); err != nil {
				return nil, errPropOverrun
			}
			if err = checkNumeric(id, uint32(v)); err != nil {
				return nil, err
			}
			*p.flagField(id) = v
		case kindU16:
			var v uint16
			if v, props, err = readU16(props); err != nil {
				return nil, errPropOverrun
			}
			if err = checkNumeric(id, uint32(v)); err != nil {
				return nil, err
			}
			*p.u16Field(id) = v
		case kindU32:
			var v uint32
			if v, props, err = readU32(props); err != nil {
				return nil, errPropOverrun
			}
			if err = checkNumeric(id, v); err != nil {
				return nil, err
			}
			*p.u32Field(id) = v
		case kindVarint: // Subscription Identifier
			var v int
			if v, props, err = readVarintBody(props); err != nil {
				if err == errShort {
					err = errPropOverrun
				}
				return nil, err
			}
			if err = checkNumeric(id, uint32(v)); err != nil {
				return nil, err
			}
			p.SubscriptionIDs = append(p.SubscriptionIDs, uint32(v))
		case kindString, kindBinary:
			var s []byte
			if propKind[id] == kindString {
				s, props, err = readString(props)
			} else {
				s, props, err = readBinary(props)
			}
			if err != nil {
				if err == errShort {
					err = errPropOverrun
				}
				return nil, err
			}
			*p.bytesField(id) = s
		case kindPair:
			var k, v []byte
			if k, props, err = readString(props); err == nil {
				v, props, err = readString(props)
			}
			if err != nil {
				if err == errShort {
					err = errPropOverrun
				}
				return nil, err
			}
			p.User = append(p.User, UserProperty{Key: k, Value: v})
		}
	}
	if p.Present&(1<<PropAuthData) != 0 && p.Present&(1<<PropAuthMethod) == 0 {
		return nil, errAuthDataAlone
	}
	return rest, nil
}

// writeMask is the set of identifiers the encoder will write: single-value
// properties by their Present bit, the two repeatable ones by their slices.
func (p *Properties) writeMask() uint64 {
	m := p.Present &^ (bitUser | bitSubID)
	if len(p.User) > 0 {
		m |= bitUser
	}
	if len(p.SubscriptionIDs) > 0 {
		m |= bitSubID
	}
	return m
}

// size validates p for ctx exactly as decode would, and returns the encoded
// size of the properties (without their length prefix).
func (p *Properties) size(ctx byte) (int, error) {
	m := p.writeMask()
	if m&^allowedProps[ctx] != 0 {
		return 0, errPropNotAllowed
	}
	if ctx != PUBLISH && len(p.SubscriptionIDs) > 1 {
		return 0, errPropDup
	}
	if m&(1<<PropAuthData) != 0 && m&(1<<PropAuthMethod) == 0 {
		return 0, errAuthDataAlone
	}
	n := 0
	for m != 0 {
		id := PropID(bits.TrailingZeros64(m))
		m &= m - 1
		switch propKind[id] {
		case kindFlag:
			if err := checkNumeric(id, uint32(*p.flagField(id))); err != nil {
				return 0, err
			}
			n += 2
		case kindU16:
			if err := checkNumeric(id, uint32(*p.u16Field(id))); err != nil {
				return 0, err
			}
			n += 3
		case kindU32:
			if err := checkNumeric(id, *p.u32Field(id)); err != nil {
				return 0, err
			}
			n += 5
		case kindVarint:
			for _, v := range p.SubscriptionIDs {
				if err := checkNumeric(id, v); err != nil {
					return 0, err
				}
				n += 1 + varintLen(int(v))
			}
		case kindString, kindBinary:
			var s int
			var err error
			if propKind[id] == kindString {
				s, err = strSize(*p.bytesField(id))
			} else {
				s, err = binSize(*p.bytesField(id))
			}
			if err != nil {
				return 0, err
			}
			n += 1 + s
		case kindPair:
			for _, u := range p.User {
				k, err := strSize(u.Key)
				if err != nil {
					return 0, err
				}
				v, err := strSize(u.Value)
				if err != nil {
					return 0, err
				}
				n += 1 + k + v
			}
		}
	}
	if n > MaxRemaining {
		return 0, errTooLarge
	}
	return n, nil
}

// appendTo writes the property length n (from size) and the properties,
// in increasing identifier order.
func (p *Properties) appendTo(dst []byte, n int) []byte {
	dst = appendVarint(dst, n)
	m := p.writeMask()
	for m != 0 {
		id := PropID(bits.TrailingZeros64(m))
		m &= m - 1
		switch propKind[id] {
		case kindFlag:
			dst = append(dst, byte(id), *p.flagField(id))
		case kindU16:
			dst = appendU16(append(dst, byte(id)), *p.u16Field(id))
		case kindU32:
			dst = appendU32(append(dst, byte(id)), *p.u32Field(id))
		case kindVarint:
			for _, v := range p.SubscriptionIDs {
				dst = appendVarint(append(dst, byte(id)), int(v))
			}
		case kindString, kindBinary:
			dst = appendBinary(append(dst, byte(id)), *p.bytesField(id))
		case kindPair:
			for _, u := range p.User {
				dst = appendBinary(append(dst, byte(id)), u.Key)
				dst = appendBinary(dst, u.Value)
			}
		}
	}
	return dst
}

// propsSize is the whole property block (length prefix included) for ctx.
func propsSize(p *Properties, ctx byte) (block, n int, err error) {
	n, err = p.size(ctx)
	if err != nil {
		return 0, 0, err
	}
	return varintLen(n) + n, n, nil
}
