package packet

import "bytes"

// Subscription is one topic filter of a SUBSCRIBE with its options. Only
// QoS exists in v3.
type Subscription struct {
	Filter            []byte
	QoS               byte
	NoLocal           bool
	RetainAsPublished bool
	// RetainHandling: 0 send retained on subscribe, 1 only for a new
	// subscription, 2 never.
	RetainHandling byte
}

// Subscribe is the SUBSCRIBE packet. The codec checks filters only for
// UTF-8; wildcard placement and emptiness are the topic package's job,
// because the spec answers those per filter in the SUBACK (0x8F) rather than
// by dropping the connection.
type Subscribe struct {
	PacketID      uint16
	Props         Properties
	Subscriptions []Subscription
}

func (*Subscribe) Type() byte { return SUBSCRIBE }

// Subscription options bits (3.8.3.1).
const (
	soQoS      = 0x03
	soNoLocal  = 0x04
	soRAP      = 0x08
	soRetain   = 0x30
	soReserved = 0xC0
)

var (
	errNoFilters      = protocolErr("no topic filters")
	errSubReserved    = malformed("subscription options reserved bits set")
	errSubQoS3V3      = malformed("subscription QoS 3")
	errSubQoS3        = protocolErr("subscription QoS 3")
	errRetainHandling = protocolErr("retain handling 3")
	errSharedNoLocal  = protocolErr("no local on a shared subscription")
	errV3SubOptions   = protocolErr("subscription options other than QoS need MQTT 5")

	sharePrefix = []byte("$share/")
)

// Decode parses a SUBSCRIBE body.
func (s *Subscribe) Decode(flags byte, body []byte, v Version) error {
	s.PacketID = 0
	s.Props.Reset()
	clear(s.Subscriptions)
	s.Subscriptions = s.Subscriptions[:0]
	b, err := decodeFilterListHeader(SUBSCRIBE, flags, body, v, &s.PacketID, &s.Props)
	if err != nil {
		return err
	}
	for len(b) > 0 {
		var sub Subscription
		if sub.Filter, b, err = readString(b); err != nil {
			return err
		}
		var o byte
		if o, b, err = readByte(b); err != nil {
			return err
		}
		if err := sub.setOptions(o, v); err != nil {
			return err
		}
		s.Subscriptions = append(s.Subscriptions, sub)
	}
	return nil
}

// setOptions decodes and checks an options byte. The spec grades the faults
// differently: reserved bits are Malformed in both versions, QoS 3 is
// Malformed in 3.1.1 (3.8.3.1) but a Protocol Error in 5.0, and so is
// Retain Handling 3.
func (sub *Subscription) setOptions(o byte, v Version) error {
	sub.QoS = o & soQoS
	if v != V5 {
		if o&^soQoS != 0 {
			return errSubReserved
		}
		if sub.QoS == 3 {
			return errSubQoS3V3
		}
		return nil
	}
	if o&soReserved != 0 {
		return errSubReserved
	}
	sub.NoLocal = o&soNoLocal != 0
	sub.RetainAsPublished = o&soRAP != 0
	sub.RetainHandling = (o & soRetain) >> 4
	return sub.check()
}

// check holds the v5 option rules shared by Decode and Append.
func (sub *Subscription) check() error {
	if sub.QoS > 2 {
		return errSubQoS3
	}
	if sub.RetainHandling > 2 {
		return errRetainHandling
	}
	// 3.8.3.1: No Local on a shared subscription is a Protocol Error.
	if sub.NoLocal && bytes.HasPrefix(sub.Filter, sharePrefix) {
		return errSharedNoLocal
	}
	return nil
}

func (sub *Subscription) options() byte {
	o := sub.QoS
	if sub.NoLocal {
		o |= soNoLocal
	}
	if sub.RetainAsPublished {
		o |= soRAP
	}
	return o | sub.RetainHandling<<4
}

// Append writes the SUBSCRIBE. In v3 any option besides QoS is refused
// rather than silently dropped: a client asking for No Local would get
// different behaviour than it asked for.
func (s *Subscribe) Append(dst []byte, v Version) ([]byte, error) {
	if err := checkVersion(v); err != nil {
		return dst, err
	}
	if s.PacketID == 0 {
		return dst, errZeroPacketID
	}
	if len(s.Subscriptions) == 0 {
		return dst, errNoFilters
	}
	rem, pn := 2, 0
	if v == V5 {
		blk, n, err := propsSize(&s.Props, SUBSCRIBE)
		if err != nil {
			return dst, err
		}
		rem, pn = rem+blk, n
	}
	for i := range s.Subscriptions {
		sub := &s.Subscriptions[i]
		if v == V5 {
			if err := sub.check(); err != nil {
				return dst, err
			}
		} else {
			if sub.QoS > 2 {
				return dst, errSubQoS3V3
			}
			if sub.NoLocal || sub.RetainAsPublished || sub.RetainHandling != 0 {
				return dst, errV3SubOptions
			}
		}
		n, err := strSize(sub.Filter)
		if err != nil {
			return dst, err
		}
		rem += n + 1
	}
	out, err := appendHeader(dst, SUBSCRIBE<<4|fixedFlags(SUBSCRIBE), rem)
	if err != nil {
		return dst, err
	}
	out = appendU16(out, s.PacketID)
	if v == V5 {
		out = s.Props.appendTo(out, pn)
	}
	for i := range s.Subscriptions {
		sub := &s.Subscriptions[i]
		out = appendBinary(out, sub.Filter)
		out = append(out, sub.options())
	}
	return out, nil
}

// Suback is the SUBACK packet: one reason code per filter of the SUBSCRIBE,
// in order.
type Suback struct {
	PacketID uint16
	Props    Properties
	Reasons  []ReasonCode
}

func (*Suback) Type() byte { return SUBACK }

var errNoReasons = protocolErr("no reason codes")

// Decode parses a SUBACK body.
func (s *Suback) Decode(flags byte, body []byte, v Version) error {
	s.PacketID = 0
	s.Props.Reset()
	s.Reasons = s.Reasons[:0]
	if err := checkVersion(v); err != nil {
		return err
	}
	if flags != 0 {
		return errBadFlags
	}
	var err error
	b := body
	if s.PacketID, b, err = readU16(b); err != nil {
		return err
	}
	if s.PacketID == 0 {
		return errZeroPacketID
	}
	valid := &v3SubackReasons
	if v == V5 {
		valid = &subackReasons
		if b, err = s.Props.decode(b, SUBACK); err != nil {
			return err
		}
	}
	if len(b) == 0 {
		return errNoReasons
	}
	s.Reasons, err = appendReasons(s.Reasons, b, valid)
	return err
}

// appendReasons appends the reason codes of a SUBACK or UNSUBACK payload, each of which must be in
// valid.
func appendReasons(dst []ReasonCode, b []byte, valid *reasonSet) ([]ReasonCode, error) {
	for _, c := range b {
		if !valid.has(ReasonCode(c)) {
			return dst, errBadReason
		}
		dst = append(dst, ReasonCode(c))
	}
	return dst, nil
}

// Append writes the SUBACK. In v3, where the only failure code is 0x80,
// every v5 SUBACK failure code is written as 0x80 and properties are
// dropped.
func (s *Suback) Append(dst []byte, v Version) ([]byte, error) {
	if err := checkVersion(v); err != nil {
		return dst, err
	}
	if s.PacketID == 0 {
		return dst, errZeroPacketID
	}
	if len(s.Reasons) == 0 {
		return dst, errNoReasons
	}
	for _, r := range s.Reasons {
		if !subackReasons.has(r) {
			return dst, errBadReason
		}
	}
	rem, pn := 2+len(s.Reasons), 0
	if v == V5 {
		blk, n, err := propsSize(&s.Props, SUBACK)
		if err != nil {
			return dst, err
		}
		rem, pn = rem+blk, n
	}
	out, err := appendHeader(dst, SUBACK<<4, rem)
	if err != nil {
		return dst, err
	}
	out = appendU16(out, s.PacketID)
	if v == V5 {
		out = s.Props.appendTo(out, pn)
	}
	for _, r := range s.Reasons {
		if v != V5 && r.IsError() {
			r = V3SubackFailure
		}
		out = append(out, byte(r))
	}
	return out, nil
}

// decodeFilterListHeader reads what SUBSCRIBE and UNSUBSCRIBE share before their filters: the
// fixed flags, a non-zero packet id and (MQTT 5) the properties. It returns the filter bytes, which
// must not be empty (3.8.3, 3.10.3: at least one filter).
func decodeFilterListHeader(typ, flags byte, body []byte, v Version, id *uint16, props *Properties) ([]byte, error) {
	if err := checkVersion(v); err != nil {
		return nil, err
	}
	if flags != fixedFlags(typ) {
		return nil, errBadFlags
	}
	var err error
	b := body
	if *id, b, err = readU16(b); err != nil {
		return nil, err
	}
	if *id == 0 {
		return nil, errZeroPacketID
	}
	if v == V5 {
		if b, err = props.decode(b, typ); err != nil {
			return nil, err
		}
	}
	if len(b) == 0 {
		return nil, errNoFilters
	}
	return b, nil
}
