package mqtt

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/mqtt/packet"
)

// chunkConn is a net.Conn whose reads return its data in pieces of at most chunk bytes, then EOF.
type chunkConn struct {
	net.Conn // nil: only Read and SetReadDeadline are used
	data     []byte
	chunk    int
}

func (c *chunkConn) Read(b []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := copy(b[:min(len(b), c.chunk)], c.data)
	c.data = c.data[n:]
	return n, nil
}

func (c *chunkConn) SetReadDeadline(time.Time) error { return nil }

// FuzzPacketReader: whatever bytes arrive, in whatever pieces, the server's framer returns the
// packets they hold in order with their bytes intact, stops at the first malformed or oversized
// header with an error, and never holds a buffer much larger than what it was sent.
func FuzzPacketReader(f *testing.F) {
	pub, _ := (&packet.Publish{Topic: []byte("a/b"), Payload: []byte("hello")}).Append(nil, packet.V311)
	ping, _ := (&packet.Pingreq{}).Append(nil, packet.V311)
	f.Add(byte(1), append(pub, ping...))
	f.Add(byte(7), connectHeader(1_048_000, packet.V5))
	f.Add(byte(255), []byte{0x30, 0xff, 0xff, 0xff, 0xff, 0x7f})
	f.Add(byte(3), bytes.Repeat(ping, 100))
	f.Fuzz(func(t *testing.T, chunk byte, data []byte) {
		const maxSize = 4096
		c := &chunkConn{data: data, chunk: int(chunk) + 1}
		r := newPacketReader(c, maxSize)
		defer r.close()
		consumed := 0
		for {
			typ, _, body, err := r.next(time.Time{}, readWait, nil)
			if limit := readBufSize + 2*len(data); len(r.st.buf) > limit {
				t.Fatalf("buffer of %d bytes after %d bytes sent", len(r.st.buf), len(data))
			}
			if err != nil {
				if errors.Is(err, io.EOF) {
					// Only a partial packet may be left.
					if _, _, rem, hl, perr := packet.ParseFixedHeader(data[consumed:]); perr == nil && hl+rem <= len(data)-consumed {
						t.Fatalf("EOF with a whole packet of %d bytes unread", hl+rem)
					}
				}
				return
			}
			_, _, rem, hl, perr := packet.ParseFixedHeader(data[consumed:])
			if perr != nil || data[consumed]>>4 != typ || !bytes.Equal(body, data[consumed+hl:consumed+hl+rem]) {
				t.Fatalf("packet at %d does not match the input", consumed)
			}
			if hl+rem > maxSize {
				t.Fatalf("packet of %d bytes returned over the %d limit", hl+rem, maxSize)
			}
			consumed += hl + rem
		}
	})
}
