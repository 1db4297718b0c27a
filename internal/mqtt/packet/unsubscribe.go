package packet

// Unsubscribe is the UNSUBSCRIBE packet.
type Unsubscribe struct {
	PacketID uint16
	Props    Properties
	Filters  [][]byte
}

func (*Unsubscribe) Type() byte { return UNSUBSCRIBE }

// Decode parses an UNSUBSCRIBE body; the filters alias body.
func (u *Unsubscribe) Decode(flags byte, body []byte, v Version) error {
	u.PacketID = 0
	u.Props.Reset()
	clear(u.Filters)
	u.Filters = u.Filters[:0]
	b, err := decodeFilterListHeader(UNSUBSCRIBE, flags, body, v, &u.PacketID, &u.Props)
	if err != nil {
		return err
	}
	for len(b) > 0 {
		var f []byte
		if f, b, err = readString(b); err != nil {
			return err
		}
		u.Filters = append(u.Filters, f)
	}
	return nil
}

// Append writes the UNSUBSCRIBE.
func (u *Unsubscribe) Append(dst []byte, v Version) ([]byte, error) {
	if err := checkVersion(v); err != nil {
		return dst, err
	}
	if u.PacketID == 0 {
		return dst, errZeroPacketID
	}
	if len(u.Filters) == 0 {
		return dst, errNoFilters
	}
	rem, pn := 2, 0
	if v == V5 {
		blk, n, err := propsSize(&u.Props, UNSUBSCRIBE)
		if err != nil {
			return dst, err
		}
		rem, pn = rem+blk, n
	}
	for _, f := range u.Filters {
		n, err := strSize(f)
		if err != nil {
			return dst, err
		}
		rem += n
	}
	out, err := appendHeader(dst, UNSUBSCRIBE<<4|fixedFlags(UNSUBSCRIBE), rem)
	if err != nil {
		return dst, err
	}
	out = appendU16(out, u.PacketID)
	if v == V5 {
		out = u.Props.appendTo(out, pn)
	}
	for _, f := range u.Filters {
		out = appendBinary(out, f)
	}
	return out, nil
}

// Unsuback is the UNSUBACK packet. v3 has no payload: Reasons and Props
// exist only in v5 (one reason per filter, in order).
type Unsuback struct {
	PacketID uint16
	Props    Properties
	Reasons  []ReasonCode
}

func (*Unsuback) Type() byte { return UNSUBACK }

// Decode parses an UNSUBACK body.
func (u *Unsuback) Decode(flags byte, body []byte, v Version) error {
	u.PacketID = 0
	u.Props.Reset()
	u.Reasons = u.Reasons[:0]
	if err := checkVersion(v); err != nil {
		return err
	}
	if flags != 0 {
		return errBadFlags
	}
	var err error
	b := body
	if u.PacketID, b, err = readU16(b); err != nil {
		return err
	}
	if u.PacketID == 0 {
		return errZeroPacketID
	}
	if v != V5 {
		if len(b) != 0 {
			return errTrailing
		}
		return nil
	}
	if b, err = u.Props.decode(b, UNSUBACK); err != nil {
		return err
	}
	if len(b) == 0 {
		return errNoReasons
	}
	u.Reasons, err = appendReasons(u.Reasons, b, &unsubackReasons)
	return err
}

// Append writes the UNSUBACK; in v3 only the packet identifier.
func (u *Unsuback) Append(dst []byte, v Version) ([]byte, error) {
	if err := checkVersion(v); err != nil {
		return dst, err
	}
	if u.PacketID == 0 {
		return dst, errZeroPacketID
	}
	rem, pn := 2, 0
	if v == V5 {
		if len(u.Reasons) == 0 {
			return dst, errNoReasons
		}
		for _, r := range u.Reasons {
			if !unsubackReasons.has(r) {
				return dst, errBadReason
			}
		}
		blk, n, err := propsSize(&u.Props, UNSUBACK)
		if err != nil {
			return dst, err
		}
		rem, pn = rem+blk+len(u.Reasons), n
	}
	out, err := appendHeader(dst, UNSUBACK<<4, rem)
	if err != nil {
		return dst, err
	}
	out = appendU16(out, u.PacketID)
	if v == V5 {
		out = u.Props.appendTo(out, pn)
		for _, r := range u.Reasons {
			out = append(out, byte(r))
		}
	}
	return out, nil
}
