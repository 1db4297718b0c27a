package packet

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// One fuzz target per decoder, plus the fixed header and the stream reader.
// Each decoder target asserts that:
//   - nothing panics and every failure is an *Error;
//   - a decoded packet re-encodes, the encoding decodes to the same fields,
//     and re-encoding that is byte-identical (the encoder is canonical);
//   - decoding into a struct that held another packet gives the same result
//     as decoding into a fresh one (Decode resets everything).
//
// Seeds are the round-trip fixtures and the rejection table.

// fuzzVersions maps the fuzzer's version byte onto the three versions, so
// every input is tried against each.
func fuzzVersion(b byte) Version { return Version(3 + b%3) }

func seedDecoder(f *testing.F, typ byte) {
	f.Helper()
	add := func(b []byte, v Version) {
		t, flags, rem, hl, err := ParseFixedHeader(b)
		if err != nil || t != typ || hl+rem != len(b) {
			return
		}
		f.Add(flags, bytes.Clone(b[hl:]), byte(v-3))
	}
	for _, s := range allSamples() {
		b, err := s.p.Append(nil, s.v)
		if err != nil {
			f.Fatalf("seed %s: %v", s.name, err)
		}
		add(b, s.v)
	}
	for _, c := range decodeRejectCases() {
		add(unhex(f, c.hex), c.v)
	}
}

// richSample is a populated packet of typ, used to dirty a struct before a
// reused decode.
func richSample(typ byte) []byte {
	var best []byte
	for _, s := range v5Samples() {
		if s.p.Type() == typ {
			if b, err := s.p.Append(nil, V5); err == nil && len(b) > len(best) {
				best = b
			}
		}
	}
	return best
}

func fuzzDecoder(f *testing.F, typ byte) {
	seedDecoder(f, typ)
	dirty := richSample(typ)
	f.Fuzz(func(t *testing.T, flags byte, body []byte, vb byte) {
		v := fuzzVersion(vb)
		flags &= 0x0F
		p := New(typ)
		err := p.Decode(flags, body, v)

		// A struct that held another packet must end up the same.
		reused := New(typ)
		if _, rflags, rbody := splitQuiet(dirty); rbody != nil {
			_ = reused.Decode(rflags, rbody, V5)
		}
		rerr := reused.Decode(flags, body, v)
		if (err == nil) != (rerr == nil) || (err != nil && err.Error() != rerr.Error()) {
			t.Fatalf("fresh decode: %v, reused decode: %v", err, rerr)
		}

		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("decoder returned a foreign error %T: %v", err, err)
			}
			return
		}
		if !sameFields(p, reused) {
			t.Fatalf("reused struct differs\nfresh  %s\nreused %s", show(p), show(reused))
		}

		encV := v
		if c, ok := p.(*Connect); ok {
			encV = c.Version // CONNECT carries its own version
		}
		b, err := p.Append(nil, encV)
		if err != nil {
			t.Fatalf("decoded packet does not re-encode: %v\n%s", err, show(p))
		}
		typ2, flags2, rem, hl, err := ParseFixedHeader(b)
		if err != nil || typ2 != typ || hl+rem != len(b) {
			t.Fatalf("bad re-encoding % x: %v", b, err)
		}
		q := New(typ)
		if err := q.Decode(flags2, b[hl:], encV); err != nil {
			t.Fatalf("re-encoding % x does not decode: %v", b, err)
		}
		if !sameFields(p, q) {
			t.Fatalf("round trip changed the packet\nfirst  %s\nsecond %s", show(p), show(q))
		}
		b2, err := q.Append(nil, encV)
		if err != nil || !bytes.Equal(b, b2) {
			t.Fatalf("encoding is not canonical\n% x\n% x (%v)", b, b2, err)
		}
	})
}

func splitQuiet(b []byte) (typ, flags byte, body []byte) {
	typ, flags, rem, hl, err := ParseFixedHeader(b)
	if err != nil || hl+rem != len(b) {
		return 0, 0, nil
	}
	return typ, flags, b[hl:]
}

func FuzzDecodeConnect(f *testing.F)     { fuzzDecoder(f, CONNECT) }
func FuzzDecodeConnack(f *testing.F)     { fuzzDecoder(f, CONNACK) }
func FuzzDecodePublish(f *testing.F)     { fuzzDecoder(f, PUBLISH) }
func FuzzDecodePuback(f *testing.F)      { fuzzDecoder(f, PUBACK) }
func FuzzDecodePubrec(f *testing.F)      { fuzzDecoder(f, PUBREC) }
func FuzzDecodePubrel(f *testing.F)      { fuzzDecoder(f, PUBREL) }
func FuzzDecodePubcomp(f *testing.F)     { fuzzDecoder(f, PUBCOMP) }
func FuzzDecodeSubscribe(f *testing.F)   { fuzzDecoder(f, SUBSCRIBE) }
func FuzzDecodeSuback(f *testing.F)      { fuzzDecoder(f, SUBACK) }
func FuzzDecodeUnsubscribe(f *testing.F) { fuzzDecoder(f, UNSUBSCRIBE) }
func FuzzDecodeUnsuback(f *testing.F)    { fuzzDecoder(f, UNSUBACK) }
func FuzzDecodePingreq(f *testing.F)     { fuzzDecoder(f, PINGREQ) }
func FuzzDecodePingresp(f *testing.F)    { fuzzDecoder(f, PINGRESP) }
func FuzzDecodeDisconnect(f *testing.F)  { fuzzDecoder(f, DISCONNECT) }
func FuzzDecodeAuth(f *testing.F)        { fuzzDecoder(f, AUTH) }

func FuzzParseFixedHeader(f *testing.F) {
	for _, s := range allSamples() {
		b, _ := s.p.Append(nil, s.v)
		f.Add(b[:min(len(b), 6)])
	}
	for _, h := range []string{"", "00", "30", "30 80", "30 ff ff ff 7f", "30 ff ff ff ff", "30 80 80 80 80 01", "f0 83 00"} {
		f.Add(unhex(f, h))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		typ, flags, rem, hl, err := ParseFixedHeader(b)
		switch {
		case err == ErrIncomplete:
			if len(b) >= 5 {
				t.Fatalf("incomplete with %d bytes", len(b))
			}
			if len(b) == 0 {
				return
			}
			for _, c := range b[1:] {
				if c&0x80 == 0 {
					t.Fatalf("incomplete, but % x has a final length byte", b)
				}
			}
		case err != nil:
			var e *Error
			if !errors.As(err, &e) || e.Code != MalformedPacket {
				t.Fatalf("unexpected error %v", err)
			}
			if len(b) > 0 && b[0]>>4 != 0 && len(b) < 5 {
				t.Fatalf("malformed after only %d bytes: % x", len(b), b)
			}
		default:
			if typ == 0 || typ != b[0]>>4 || flags != b[0]&0x0F {
				t.Fatalf("type/flags %d/%d from %02x", typ, flags, b[0])
			}
			if hl < 2 || hl > 5 || hl > len(b) || rem < 0 || rem > MaxRemaining {
				t.Fatalf("rem %d hl %d from % x", rem, hl, b)
			}
			// The minimal re-encoding parses to the same length.
			h := appendVarint([]byte{b[0]}, rem)
			_, _, rem2, hl2, err := ParseFixedHeader(h)
			if err != nil || rem2 != rem || hl2 > hl {
				t.Fatalf("re-encoded % x: rem %d hl %d err %v", h, rem2, hl2, err)
			}
		}
	})
}

type fuzzFrame struct {
	typ, flags byte
	body       string
}

func drain(r *Reader) ([]fuzzFrame, error) {
	var out []fuzzFrame
	for {
		typ, flags, body, err := r.Next()
		if err != nil {
			return out, err
		}
		out = append(out, fuzzFrame{typ, flags, string(body)})
	}
}

func FuzzReader(f *testing.F) {
	for _, v := range []Version{V311, V5} {
		wire, _ := stream(f, v)
		f.Add(wire, uint8(16), uint16(0))
		f.Add(wire, uint8(0), uint16(64))
	}
	for _, c := range decodeRejectCases() {
		f.Add(unhex(f, c.hex), uint8(3), uint16(40))
	}
	f.Fuzz(func(t *testing.T, data []byte, bufSize uint8, maxPacket uint16) {
		whole, werr := drain(NewReader(bytes.NewReader(data), int(bufSize), int(maxPacket)))
		bytewise, berr := drain(NewReader(iotest.OneByteReader(bytes.NewReader(data)), int(bufSize), int(maxPacket)))
		if len(whole) != len(bytewise) || (werr == nil) != (berr == nil) || werr.Error() != berr.Error() {
			t.Fatalf("read sizes change the result: %d frames/%v vs %d frames/%v", len(whole), werr, len(bytewise), berr)
		}
		consumed := 0
		for i, fr := range whole {
			if fr != bytewise[i] {
				t.Fatalf("frame %d differs with one-byte reads", i)
			}
			total := 1 + varintLen(len(fr.body)) + len(fr.body)
			if maxPacket > 0 && total > int(maxPacket) {
				// A non-minimal length makes the header longer, never
				// shorter, so the minimal size is a lower bound.
				t.Fatalf("frame %d is %d bytes, limit %d", i, total, maxPacket)
			}
			consumed += total
			for _, v := range []Version{V31, V311, V5} {
				_ = New(fr.typ).Decode(fr.flags, []byte(fr.body), v) // must not panic
			}
		}
		if consumed > len(data) {
			t.Fatalf("returned %d bytes of packets from %d bytes", consumed, len(data))
		}
		if werr != io.EOF && werr != io.ErrUnexpectedEOF {
			var e *Error
			if !errors.As(werr, &e) {
				t.Fatalf("unexpected error %v", werr)
			}
		}
	})
}
