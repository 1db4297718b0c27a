package mbus

import (
	"bytes"
	"encoding/binary"
	"errors"
	"runtime"
	"strings"
	"testing"
)

func TestFrameRoundTrip(t *testing.T) {
	for _, z := range []bool{false, true} {
		payload := []byte(`{"org.mbus.method.tag.type":"org.mbus.method.type.event"}`)
		b := appendFrame(nil, payload, z)
		got, err := readFrame(bytes.NewReader(b), z, nil, MaxFrame)
		if err != nil || !bytes.Equal(got, payload) {
			t.Fatalf("zlib=%v: %q %v", z, got, err)
		}
	}
}

func TestBadFrames(t *testing.T) {
	for name, c := range map[string]struct {
		b []byte
		z bool
	}{
		"oversized":      {[]byte{0x7f, 0, 0, 0}, false},
		"bad zlib":       {append([]byte{0, 0, 0, 8, 0, 0, 0, 4}, 1, 2, 3, 4), true},
		"short zlib":     {[]byte{0, 0, 0, 2, 0, 0}, true},
		"wrong inflated": {func() []byte { b := appendFrame(nil, []byte("abc"), true); b[7] = 9; return b }(), true},
	} {
		if _, err := readFrame(bytes.NewReader(c.b), c.z, nil, MaxFrame); !errors.Is(err, errFrame) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func FuzzReadFrame(f *testing.F) {
	f.Add(appendFrame(nil, []byte(`{}`), false), false)
	f.Add(appendFrame(nil, []byte(`{"a":1}`), true), true)
	f.Fuzz(func(t *testing.T, b []byte, z bool) {
		got, err := readFrame(bytes.NewReader(b), z, nil, MaxFrame)
		if err == nil && len(got) > MaxFrame {
			t.Fatalf("frame of %d bytes", len(got))
		}
	})
}

// FuzzDecodeRequest: any bytes decode to a message that meets mBus's requirements, or to an
// error; never a panic.
func FuzzDecodeRequest(f *testing.F) {
	f.Add([]byte(`{"org.mbus.method.tag.type":"org.mbus.method.type.command","org.mbus.method.tag.destination":"org.mbus.server",` +
		`"org.mbus.method.tag.identifier":"command.create","org.mbus.method.tag.sequence":1,"org.mbus.method.tag.payload":{}}`))
	f.Add([]byte(`{"org.mbus.method.tag.type":"org.mbus.method.type.event","org.mbus.method.tag.destination":"x","org.mbus.method.tag.identifier":"e","org.mbus.method.tag.sequence":-1,"org.mbus.method.tag.payload":null}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"org.mbus.method.tag.sequence":"1"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeRequest(b)
		if err != nil {
			return
		}
		if m.Destination == "" || m.Identifier == "" || m.Sequence == nil || *m.Sequence == -1 || m.Payload == nil ||
			(m.Type != TypeCommand && m.Type != TypeEvent && m.Type != TypeResult) {
			t.Fatalf("accepted %q as %+v", b, m)
		}
	})
}

// mBus looks keys up case-sensitively and only checks that payload is there: a key in another
// case is missing, and a null payload passes.
func TestDecodeRequestKeysAreExact(t *testing.T) {
	const ok = `{"org.mbus.method.tag.type":"org.mbus.method.type.event","org.mbus.method.tag.destination":"d",` +
		`"org.mbus.method.tag.identifier":"e","org.mbus.method.tag.sequence":3,"org.mbus.method.tag.payload":null}`
	m, err := decodeRequest([]byte(ok))
	if err != nil || string(m.Payload) != "null" || *m.Sequence != 3 || m.Destination != "d" {
		t.Fatalf("a null payload: %+v, %v", m, err)
	}
	for _, key := range []string{"type", "destination", "identifier", "sequence", "payload"} {
		upper := strings.Replace(ok, `"org.mbus.method.tag.`+key+`"`, `"ORG.MBUS.METHOD.TAG.`+strings.ToUpper(key)+`"`, 1)
		if _, err := decodeRequest([]byte(upper)); err == nil {
			t.Errorf("the %s key in capitals was taken", key)
		}
	}
	if _, err := decodeRequest([]byte(strings.Replace(ok, `:3`, `:"3"`, 1))); err == nil {
		t.Error("a sequence given as a string was taken")
	}
}

// allocated returns the bytes f allocates.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// A header claiming the largest frame, followed by a few bytes, costs what arrived, not what was
// claimed; likewise a compressed frame that claims a large inflated length.
func TestFrameMemoryFollowsTheBytes(t *testing.T) {
	claims := map[string][]byte{
		"plain":      append([]byte{0, 0x40, 0, 0}, make([]byte, 100)...),
		"compressed": appendFrame(nil, []byte("tiny"), true),
	}
	// The compressed frame says it inflates to MaxFrame bytes.
	binary.BigEndian.PutUint32(claims["compressed"][4:], MaxFrame)
	for name, b := range claims {
		n := allocated(func() { _, _ = readFrame(bytes.NewReader(b), name == "compressed", nil, MaxFrame) })
		if n > 256<<10 {
			t.Errorf("%s: %d bytes allocated for a frame of %d bytes", name, n, len(b))
		}
	}
}

// Before command.create a frame may be at most maxCreateFrame bytes.
func TestFrameLimit(t *testing.T) {
	b := appendFrame(nil, make([]byte, maxCreateFrame+1), false)
	if _, err := readFrame(bytes.NewReader(b), false, nil, maxCreateFrame); !errors.Is(err, errFrame) {
		t.Fatalf("a frame over the limit: %v", err)
	}
	if _, err := readFrame(bytes.NewReader(b), false, nil, MaxFrame); err != nil {
		t.Fatalf("the same frame under MaxFrame: %v", err)
	}
}
