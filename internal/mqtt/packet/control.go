package packet

// Pingreq is the PINGREQ packet: a fixed header and nothing else.
type Pingreq struct{}

// Pingresp is the PINGRESP packet: a fixed header and nothing else.
type Pingresp struct{}

func (*Pingreq) Type() byte  { return PINGREQ }
func (*Pingresp) Type() byte { return PINGRESP }

func (*Pingreq) Decode(flags byte, body []byte, v Version) error {
	return decodeEmpty(flags, body, v)
}
func (*Pingresp) Decode(flags byte, body []byte, v Version) error {
	return decodeEmpty(flags, body, v)
}

func (*Pingreq) Append(dst []byte, v Version) ([]byte, error) {
	return appendEmpty(dst, PINGREQ, v)
}
func (*Pingresp) Append(dst []byte, v Version) ([]byte, error) {
	return appendEmpty(dst, PINGRESP, v)
}

func decodeEmpty(flags byte, body []byte, v Version) error {
	if err := checkVersion(v); err != nil {
		return err
	}
	if flags != 0 {
		return errBadFlags
	}
	if len(body) != 0 {
		return errTrailing
	}
	return nil
}

func appendEmpty(dst []byte, typ byte, v Version) ([]byte, error) {
	if err := checkVersion(v); err != nil {
		return dst, err
	}
	return append(dst, typ<<4, 0), nil
}

// Disconnect is the DISCONNECT packet. In v3 it has no body; Reason and
// Props are dropped on Append.
type Disconnect struct {
	Reason ReasonCode
	Props  Properties
}

func (*Disconnect) Type() byte { return DISCONNECT }

// Decode parses a DISCONNECT body. In v5 an empty body means Normal
// Disconnection and a one-byte body a reason without properties (3.14.2.1).
func (d *Disconnect) Decode(flags byte, body []byte, v Version) error {
	return decodeReasonProps(DISCONNECT, flags, body, v, &d.Reason, &d.Props)
}

// Append writes the DISCONNECT in its shortest form: empty for Normal
// Disconnection without properties, the reason code alone when there are no
// properties.
func (d *Disconnect) Append(dst []byte, v Version) ([]byte, error) {
	if err := checkVersion(v); err != nil {
		return dst, err
	}
	if v != V5 {
		return append(dst, DISCONNECT<<4, 0), nil
	}
	return appendReasonProps(dst, DISCONNECT, d.Reason, &d.Props, true)
}

// Auth is the AUTH packet, MQTT 5 only.
type Auth struct {
	Reason ReasonCode
	Props  Properties
}

func (*Auth) Type() byte { return AUTH }

// Decode parses an AUTH body. An empty body means Success (3.15.2.1). The
// spec does not mention a one-byte body for AUTH as it does for DISCONNECT;
// it is accepted as a reason without properties, as DISCONNECT's is.
func (a *Auth) Decode(flags byte, body []byte, v Version) error {
	if v.valid() && v != V5 {
		a.Reason = Success
		a.Props.Reset()
		return errV5Only
	}
	return decodeReasonProps(AUTH, flags, body, v, &a.Reason, &a.Props)
}

// Append writes the AUTH: empty for Success without properties, otherwise
// reason code and property length (always present, since the spec defines
// no AUTH form that omits it after a reason code).
func (a *Auth) Append(dst []byte, v Version) ([]byte, error) {
	if err := checkVersion(v); err != nil {
		return dst, err
	}
	if v != V5 {
		return dst, errV5Only
	}
	return appendReasonProps(dst, AUTH, a.Reason, &a.Props, false)
}

func reasonsFor(typ byte) *reasonSet {
	if typ == AUTH {
		return &authReasons
	}
	return &disconnectReasons
}

// decodeReasonProps parses the reason-code-then-properties body shared by
// DISCONNECT and AUTH. In v3 (DISCONNECT only) the body must be empty.
func decodeReasonProps(typ, flags byte, body []byte, v Version, r *ReasonCode, p *Properties) error {
	*r = Success
	p.Reset()
	if err := checkVersion(v); err != nil {
		return err
	}
	if flags != 0 {
		return errBadFlags
	}
	if len(body) == 0 {
		return nil
	}
	if v != V5 {
		return errTrailing
	}
	*r = ReasonCode(body[0])
	if !reasonsFor(typ).has(*r) {
		return errBadReason
	}
	if len(body) == 1 {
		return nil
	}
	b, err := p.decode(body[1:], typ)
	if err != nil {
		return err
	}
	if len(b) != 0 {
		return errTrailing
	}
	return nil
}

func appendReasonProps(dst []byte, typ byte, r ReasonCode, p *Properties, reasonOnly bool) ([]byte, error) {
	if !reasonsFor(typ).has(r) {
		return dst, errBadReason
	}
	rem, pn, withProps := 0, 0, true
	switch {
	case p.empty() && r == Success:
		withProps = false
	case p.empty() && reasonOnly:
		rem, withProps = 1, false
	default:
		blk, n, err := propsSize(p, typ)
		if err != nil {
			return dst, err
		}
		rem, pn = 1+blk, n
	}
	out, err := appendHeader(dst, typ<<4, rem)
	if err != nil {
		return dst, err
	}
	if rem > 0 {
		out = append(out, byte(r))
	}
	if withProps {
		out = p.appendTo(out, pn)
	}
	return out, nil
}
