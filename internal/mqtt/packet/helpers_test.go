package packet

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// sameFields compares two values field by field, treating nil and empty
// slices as equal (a decoder aliases its input, so "absent" and "empty" come
// back as whatever the buffer gave).
func sameFields(a, b any) bool {
	return sameValue(reflect.ValueOf(a), reflect.ValueOf(b))
}

func sameValue(a, b reflect.Value) bool {
	if a.IsValid() != b.IsValid() {
		return false
	}
	if !a.IsValid() {
		return true
	}
	if a.Type() != b.Type() {
		return false
	}
	switch a.Kind() {
	case reflect.Pointer, reflect.Interface:
		if a.IsNil() || b.IsNil() {
			return a.IsNil() == b.IsNil()
		}
		return sameValue(a.Elem(), b.Elem())
	case reflect.Struct:
		for i := 0; i < a.NumField(); i++ {
			if !sameValue(a.Field(i), b.Field(i)) {
				return false
			}
		}
		return true
	case reflect.Slice, reflect.Array:
		if a.Len() != b.Len() {
			return false
		}
		for i := 0; i < a.Len(); i++ {
			if !sameValue(a.Index(i), b.Index(i)) {
				return false
			}
		}
		return true
	default:
		return a.Equal(b)
	}
}

// show prints a packet readably: byte slices as quoted strings, zero fields
// left out.
func show(v any) string {
	var sb strings.Builder
	showValue(&sb, reflect.ValueOf(v))
	return sb.String()
}

func showValue(sb *strings.Builder, v reflect.Value) {
	switch v.Kind() {
	case reflect.Invalid:
		sb.WriteString("<nil>")
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			sb.WriteString("<nil>")
			return
		}
		showValue(sb, v.Elem())
	case reflect.Struct:
		sb.WriteString(v.Type().Name() + "{")
		first := true
		for i := 0; i < v.NumField(); i++ {
			if v.Field(i).IsZero() {
				continue
			}
			if !first {
				sb.WriteString(" ")
			}
			first = false
			sb.WriteString(v.Type().Field(i).Name + ":")
			showValue(sb, v.Field(i))
		}
		sb.WriteString("}")
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 && v.Type().Elem().Name() == "uint8" {
			fmt.Fprintf(sb, "%q", v.Bytes())
			return
		}
		sb.WriteString("[")
		for i := 0; i < v.Len(); i++ {
			if i > 0 {
				sb.WriteString(" ")
			}
			showValue(sb, v.Index(i))
		}
		sb.WriteString("]")
	default:
		if v.CanInterface() {
			fmt.Fprintf(sb, "%v", v.Interface())
		}
	}
}

// unhex turns "30 0a 00 03" style text into bytes; spaces are ignored.
func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// mustAppend encodes p or fails the test.
func mustAppend(t testing.TB, p Packet, v Version) []byte {
	t.Helper()
	b, err := p.Append(nil, v)
	if err != nil {
		t.Fatalf("Append(%s, v%d): %v", show(p), v, err)
	}
	return b
}

// mustDecode decodes one whole wire packet or fails the test.
func mustDecode(t testing.TB, b []byte, v Version) Packet {
	t.Helper()
	p, err := Decode(b, v)
	if err != nil {
		t.Fatalf("Decode(% x, v%d): %v", b, v, err)
	}
	return p
}

// wantCode checks that err is an *Error with the given code.
func wantCode(t testing.TB, err error, code ReasonCode) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error = %v, want *Error with %v", err, code)
	}
	if e.Code != code {
		t.Fatalf("error = %v, want code %v (0x%02X)", err, code, byte(code))
	}
}

// split separates a wire packet into its fixed header fields and body.
func split(t testing.TB, b []byte) (typ, flags byte, body []byte) {
	t.Helper()
	typ, flags, rem, hl, err := ParseFixedHeader(b)
	if err != nil {
		t.Fatalf("ParseFixedHeader(% x): %v", b, err)
	}
	if hl+rem != len(b) {
		t.Fatalf("header says %d bytes, packet has %d", hl+rem, len(b))
	}
	return typ, flags, b[hl:]
}

func bs(s string) []byte { return []byte(s) }

// props builds a Properties from id/value pairs: int for numeric properties
// (and one Subscription Identifier each), string for string and binary ones,
// [2]string for a User Property.
func props(pairs ...any) Properties {
	var p Properties
	for i := 0; i+1 < len(pairs); i += 2 {
		id := pairs[i].(PropID)
		switch v := pairs[i+1].(type) {
		case int:
			switch propKind[id] {
			case kindFlag:
				*p.flagField(id) = byte(v)
			case kindU16:
				*p.u16Field(id) = uint16(v)
			case kindU32:
				*p.u32Field(id) = uint32(v)
			case kindVarint:
				p.SubscriptionIDs = append(p.SubscriptionIDs, uint32(v))
			default:
				panic(fmt.Sprintf("property %#x is not numeric", id))
			}
		case string:
			*p.bytesField(id) = []byte(v)
		case [2]string:
			p.User = append(p.User, UserProperty{Key: []byte(v[0]), Value: []byte(v[1])})
		default:
			panic(fmt.Sprintf("bad value %T", v))
		}
		p.Set(id)
	}
	return p
}

// clone deep-copies a packet through the encoder so that tests can change
// a copy without touching a shared fixture.
func clone(t testing.TB, p Packet, v Version) Packet {
	t.Helper()
	return mustDecode(t, mustAppend(t, p, v), v)
}

func TestSameFields(t *testing.T) {
	// The comparator must be able to fail, or every round trip passes.
	a := &Publish{Topic: bs("a"), Payload: nil}
	b := &Publish{Topic: bs("a"), Payload: []byte{}}
	if !sameFields(a, b) {
		t.Fatal("nil and empty payload should compare equal")
	}
	b.Payload = bs("x")
	if sameFields(a, b) {
		t.Fatal("different payloads compared equal")
	}
	c := &Publish{Topic: bs("a"), Props: props(PropUser, [2]string{"k", "v"})}
	d := &Publish{Topic: bs("a"), Props: props(PropUser, [2]string{"k", "w"})}
	if sameFields(c, d) {
		t.Fatal("different user properties compared equal")
	}
	if sameFields(&Puback{PacketID: 1}, &Pubrec{PacketID: 1}) {
		t.Fatal("different packet types compared equal")
	}
	if !bytes.Contains([]byte(show(c)), []byte(`"k"`)) {
		t.Fatalf("show lost a field: %s", show(c))
	}
}
