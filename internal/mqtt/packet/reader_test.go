package packet

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// stream concatenates the encodings of every fixture of one version.
func stream(t testing.TB, v Version) (wire []byte, packets [][]byte) {
	for _, s := range allSamples() {
		if s.v != v {
			continue
		}
		b := mustAppend(t, s.p, v)
		packets = append(packets, b)
		wire = append(wire, b...)
	}
	return wire, packets
}

type frame struct {
	typ, flags byte
	body       []byte
}

// readAll drains r, copying each body (bodies are only valid until Next).
func readAll(r *Reader) ([]frame, error) {
	var out []frame
	for {
		typ, flags, body, err := r.Next()
		if err != nil {
			return out, err
		}
		out = append(out, frame{typ, flags, bytes.Clone(body)})
	}
}

func TestReaderFrames(t *testing.T) {
	wire, packets := stream(t, V5)
	for _, c := range []struct {
		name    string
		r       io.Reader
		bufSize int
	}{
		{"whole", bytes.NewReader(wire), 4096},
		{"one byte at a time", iotest.OneByteReader(bytes.NewReader(wire)), 4096},
		{"half reads", iotest.HalfReader(bytes.NewReader(wire)), 64},
		{"tiny buffer grows", bytes.NewReader(wire), 1},
		{"data with EOF", iotest.DataErrReader(bytes.NewReader(wire)), 16},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := readAll(NewReader(c.r, c.bufSize, 0))
			if err != io.EOF {
				t.Fatalf("end: %v", err)
			}
			if len(got) != len(packets) {
				t.Fatalf("%d packets, want %d", len(got), len(packets))
			}
			for i, f := range got {
				typ, flags, body := split(t, packets[i])
				if f.typ != typ || f.flags != flags || !bytes.Equal(f.body, body) {
					t.Fatalf("packet %d: got %d/%d % x, want %d/%d % x", i, f.typ, f.flags, f.body, typ, flags, body)
				}
			}
		})
	}
}

// A body must stay intact until the next call, even when the buffer is
// compacted for the packet after it.
func TestReaderBodyValidUntilNext(t *testing.T) {
	wire, packets := stream(t, V311)
	r := NewReader(iotest.HalfReader(bytes.NewReader(wire)), 32, 0)
	for i := range packets {
		_, _, body, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		_, _, want := split(t, packets[i])
		if !bytes.Equal(body, want) {
			t.Fatalf("packet %d body % x, want % x", i, body, want)
		}
		if cap(body) != len(body) {
			t.Fatalf("body capacity %d reaches past the packet", cap(body))
		}
	}
}

func TestReaderErrors(t *testing.T) {
	pub := mustAppend(t, &Publish{Topic: bs("t"), Payload: bytes.Repeat([]byte("x"), 100)}, V311)

	t.Run("clean EOF", func(t *testing.T) {
		_, _, _, err := NewReader(bytes.NewReader(nil), 0, 0).Next()
		if err != io.EOF {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("EOF inside header", func(t *testing.T) {
		_, _, _, err := NewReader(bytes.NewReader(unhex(t, "30 80")), 0, 0).Next()
		if err != io.ErrUnexpectedEOF {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("EOF inside body", func(t *testing.T) {
		r := NewReader(bytes.NewReader(pub[:50]), 0, 0)
		if _, _, _, err := r.Next(); err != io.ErrUnexpectedEOF {
			t.Fatalf("got %v", err)
		}
		if _, _, _, err := r.Next(); err != io.ErrUnexpectedEOF {
			t.Fatalf("not sticky: %v", err)
		}
	})
	t.Run("too large", func(t *testing.T) {
		r := NewReader(bytes.NewReader(pub), 16, len(pub)-1)
		_, _, _, err := r.Next()
		wantCode(t, err, PacketTooLarge)
		_, _, _, err = r.Next()
		wantCode(t, err, PacketTooLarge)
		// Exactly the limit is fine.
		r = NewReader(bytes.NewReader(pub), 16, len(pub))
		if _, _, body, err := r.Next(); err != nil || len(body) != len(pub)-2 {
			t.Fatalf("at the limit: %v", err)
		}
	})
	t.Run("too large refused before its body arrives", func(t *testing.T) {
		// Header announces MaxRemaining; nothing else is sent. The reader
		// must refuse at once instead of waiting for (or buffering) 256 MB.
		_, _, _, err := NewReader(bytes.NewReader(unhex(t, "30 ff ff ff 7f")), 0, 1024).Next()
		wantCode(t, err, PacketTooLarge)
	})
	t.Run("malformed length", func(t *testing.T) {
		r := NewReader(bytes.NewReader(unhex(t, "c0 00 30 ff ff ff ff 01")), 0, 0)
		if typ, _, _, err := r.Next(); err != nil || typ != PINGREQ {
			t.Fatalf("first packet: %d %v", typ, err)
		}
		_, _, _, err := r.Next()
		wantCode(t, err, MalformedPacket)
		_, _, _, err = r.Next()
		wantCode(t, err, MalformedPacket)
	})
	t.Run("type 0", func(t *testing.T) {
		_, _, _, err := NewReader(bytes.NewReader(unhex(t, "00")), 0, 0).Next()
		wantCode(t, err, MalformedPacket)
	})
	t.Run("read error after data", func(t *testing.T) {
		boom := errors.New("boom")
		src := io.MultiReader(bytes.NewReader(unhex(t, "c0 00 d0")), iotest.ErrReader(boom))
		r := NewReader(src, 0, 0)
		if typ, _, _, err := r.Next(); err != nil || typ != PINGREQ {
			t.Fatalf("first packet: %d %v", typ, err)
		}
		if _, _, _, err := r.Next(); err != boom {
			t.Fatalf("got %v, want boom", err)
		}
		if _, _, _, err := r.Next(); err != boom {
			t.Fatalf("not sticky: %v", err)
		}
	})
	t.Run("no progress", func(t *testing.T) {
		_, _, _, err := NewReader(zeroReader{}, 0, 0).Next()
		if err != io.ErrNoProgress {
			t.Fatalf("got %v", err)
		}
	})
}

// zeroReader returns 0, nil forever, which io.Reader permits but
// discourages.
type zeroReader struct{}

func (zeroReader) Read([]byte) (int, error) { return 0, nil }

// The reader decodes what the encoder wrote, through New and Decode.
func TestReaderWithDecode(t *testing.T) {
	wire, packets := stream(t, V5)
	r := NewReader(bytes.NewReader(wire), 64, 1<<16)
	for i := range packets {
		typ, flags, body, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		p := New(typ)
		if err := p.Decode(flags, body, V5); err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		if again := mustAppend(t, p, V5); !bytes.Equal(again, packets[i]) {
			t.Fatalf("packet %d re-encodes as % x, want % x", i, again, packets[i])
		}
	}
	if r.Buffered() != 0 {
		t.Fatalf("%d bytes left over", r.Buffered())
	}
}

// Ready tells whether Next can return a packet without reading: only a whole one counts.
func TestReaderReady(t *testing.T) {
	a := mustAppend(t, &Puback{PacketID: 1}, V5)
	b := mustAppend(t, &Puback{PacketID: 2}, V5)
	// The stream holds a, b and half of a third; one read takes it all.
	wire := append(append(append([]byte(nil), a...), b...), b[:len(b)-1]...)
	r := NewReader(bytes.NewReader(wire), 4096, 0)
	if r.Ready() {
		t.Fatal("ready before anything was read")
	}
	for i, want := range []bool{true, false} {
		if _, _, _, err := r.Next(); err != nil {
			t.Fatal(err)
		}
		if r.Ready() != want {
			t.Fatalf("after packet %d: ready %v, want %v", i+1, !want, want)
		}
	}
}
