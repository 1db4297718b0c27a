package mbus

import (
	"bytes"
	"errors"
	"testing"
)

func TestFrameRoundTrip(t *testing.T) {
	for _, z := range []bool{false, true} {
		payload := []byte(`{"org.mbus.method.tag.type":"org.mbus.method.type.event"}`)
		b := appendFrame(nil, payload, z)
		got, err := readFrame(bytes.NewReader(b), z, nil)
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
		if _, err := readFrame(bytes.NewReader(c.b), c.z, nil); !errors.Is(err, errFrame) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func FuzzReadFrame(f *testing.F) {
	f.Add(appendFrame(nil, []byte(`{}`), false), false)
	f.Add(appendFrame(nil, []byte(`{"a":1}`), true), true)
	f.Fuzz(func(t *testing.T, b []byte, z bool) {
		got, err := readFrame(bytes.NewReader(b), z, nil)
		if err == nil && len(got) > MaxFrame {
			t.Fatalf("frame of %d bytes", len(got))
		}
	})
}
