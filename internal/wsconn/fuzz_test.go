package wsconn

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/netio"
)

// whole is a transport that hands out its input in reads of up to chunk bytes without blocking.
type whole struct {
	net.Conn
	in      []byte
	chunk   int
	written bytes.Buffer
}

func (w *whole) Read(p []byte) (int, error) {
	if len(w.in) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), w.chunk)], w.in)
	w.in = w.in[n:]
	return n, nil
}
func (w *whole) Write(p []byte) (int, error)      { return w.written.Write(p) }
func (w *whole) SetWriteDeadline(time.Time) error { return nil }

// readAll reads c to its end, retrying ErrWouldBlock, in reads of size bytes. Every read
// must make progress: more reads than the input could need is an error.
func readAll(c *Conn, size, inLen int) ([]byte, error) {
	var out []byte
	buf := make([]byte, size)
	for reads := 0; ; reads++ {
		if reads > 4*inLen+16 {
			return out, errors.New("reads make no progress")
		}
		n, err := c.Read(buf)
		out = append(out, buf[:n]...)
		if errors.Is(err, netio.ErrWouldBlock) {
			continue
		}
		if err != nil {
			return out, err
		}
	}
}

func FuzzParseHeader(f *testing.F) {
	f.Add([]byte{0x82, 0x85, 1, 2, 3, 4})
	f.Add([]byte{0x82, 0xFE, 0x01, 0x00, 1, 2, 3, 4})
	f.Add([]byte{0x02, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4})
	f.Add([]byte{0x89, 0xFE, 0x00, 0x7E})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, n, err := parseHeader(b)
		if err != nil {
			return
		}
		if n > len(b) || n != headerLen(b[1]) || h.length>>63 != 0 {
			t.Fatalf("% x: header %+v of %d bytes", b, h, n)
		}
	})
}

// Whatever the client sends, reading it a byte at a time with every other read interrupted gives
// the same payload and the same end as reading it in large reads, and never more payload than
// was sent.
func FuzzReadInterrupted(f *testing.F) {
	f.Add(append(clientFrame(false, opBinary, []byte("ab")), clientFrame(true, opContinuation, []byte("cd"))...), 3)
	f.Add(append(clientFrame(true, opPing, []byte("p")), clientFrame(true, opBinary, make([]byte, 300))...), 100)
	f.Add(clientFrame(true, opClose, []byte{0x03, 0xe8, 'x'}), 1)
	f.Fuzz(func(t *testing.T, in []byte, chunk int) {
		if chunk < 1 || chunk > 1<<16 {
			chunk = 1 + len(in)
		}
		w := &whole{in: in, chunk: chunk}
		big, bigErr := readAll(&Conn{nc: w}, 4096, len(in))
		d := &dribble{in: in}
		small, smallErr := readAll(&Conn{nc: d}, 5, len(in))
		if !bytes.Equal(big, small) {
			t.Fatalf("payload %q read whole, %q interrupted", big, small)
		}
		if bigErr.Error() == "reads make no progress" || smallErr.Error() == "reads make no progress" {
			t.Fatalf("% x: reads make no progress", in)
		}
		if bigErr.Error() != smallErr.Error() {
			t.Fatalf("ended with %v read whole, %v interrupted", bigErr, smallErr)
		}
		if !bytes.Equal(w.written.Bytes(), d.written.Bytes()) {
			t.Fatalf("wrote % x read whole, % x interrupted", w.written.Bytes(), d.written.Bytes())
		}
		if len(big) > len(in) {
			t.Fatalf("%d payload bytes from %d sent", len(big), len(in))
		}
	})
}

// readMessages reads c's messages to its end, retrying ErrWouldBlock, each as "text:len:bytes".
func readMessages(c *Conn, limit, inLen int) ([]string, error) {
	var out []string
	for reads := 0; ; reads++ {
		if reads > 4*inLen+16 {
			return out, errors.New("reads make no progress")
		}
		text, msg, err := c.ReadMessage(limit)
		if errors.Is(err, netio.ErrWouldBlock) {
			continue
		}
		if err != nil {
			return out, err
		}
		if len(msg) > limit {
			return out, errors.New("a message over the limit")
		}
		out = append(out, fmt.Sprintf("%v:%d:%x", text, len(msg), msg))
	}
}

// Whatever the client sends, ReadMessage interrupted at every byte gives the same messages and
// the same end as reading in large reads, none over the limit.
func FuzzReadMessageInterrupted(f *testing.F) {
	f.Add(append(clientFrame(false, opText, []byte("ab")), clientFrame(true, opContinuation, []byte("cd"))...), 3, 10)
	f.Add(append(clientFrame(true, opPing, []byte("p")), clientFrame(true, opBinary, make([]byte, 300))...), 100, 200)
	f.Add(clientFrame(true, opText, []byte{0xc3, 0xa9}), 1, 2)
	f.Fuzz(func(t *testing.T, in []byte, chunk, limit int) {
		if chunk < 1 || chunk > 1<<16 {
			chunk = 1 + len(in)
		}
		limit = max(0, limit%4096)
		w := &whole{in: in, chunk: chunk}
		big, bigErr := readMessages(&Conn{nc: w}, limit, len(in))
		d := &dribble{in: in}
		small, smallErr := readMessages(&Conn{nc: d}, limit, len(in))
		if fmt.Sprint(big) != fmt.Sprint(small) {
			t.Fatalf("messages %q read whole, %q interrupted", big, small)
		}
		for _, err := range []error{bigErr, smallErr} {
			if s := err.Error(); s == "reads make no progress" || s == "a message over the limit" {
				t.Fatalf("% x: %s", in, s)
			}
		}
		if bigErr.Error() != smallErr.Error() {
			t.Fatalf("ended with %v read whole, %v interrupted", bigErr, smallErr)
		}
		if !bytes.Equal(w.written.Bytes(), d.written.Bytes()) {
			t.Fatalf("wrote % x read whole, % x interrupted", w.written.Bytes(), d.written.Bytes())
		}
	})
}
