package wsconn

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/ternmq/tern/internal/netio"
)

// echoServer upgrades every request and writes back what it reads, in reads of up to 7 KiB
// (so the frames it sends do not line up with the client's).
func echoServer(t *testing.T, o Options) (*httptest.Server, chan error) {
	t.Helper()
	ended := make(chan error, 8)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := Upgrade(w, r, o)
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 7<<10)
		for {
			n, err := c.Read(buf)
			if err != nil {
				ended <- err
				return
			}
			if _, err := c.Write(buf[:n]); err != nil {
				ended <- err
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	return srv, ended
}

func dial(t *testing.T, url string, protos ...string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: protos})
	if err != nil {
		t.Fatal(err)
	}
	ws.SetReadLimit(1 << 22)
	t.Cleanup(func() { _ = ws.CloseNow() })
	return ws
}

// A third-party client's binary messages of every length class come back as the same byte
// stream; pings are answered; a normal close ends the server's stream with io.EOF.
func TestEchoWithThirdPartyClient(t *testing.T) {
	srv, ended := echoServer(t, Options{Subprotocols: []string{"mqtt", "mqttv3.1"}, AnyOrigin: true})
	ws := dial(t, "ws"+strings.TrimPrefix(srv.URL, "http"), "mqttv3.1", "mqtt")
	if ws.Subprotocol() != "mqtt" {
		t.Fatalf("subprotocol %q, want the server's preference mqtt", ws.Subprotocol())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var sent []byte
	for _, n := range []int{1, 125, 126, 127, 65535, 65536, 300000} {
		msg := make([]byte, n)
		_, _ = rand.Read(msg)
		sent = append(sent, msg...)
	}
	// The client reads meanwhile: its ping's pong arrives through its reads.
	got := make(chan []byte, 1)
	go func() {
		var b []byte
		for len(b) < len(sent) {
			typ, m, err := ws.Read(ctx)
			if err != nil || typ != websocket.MessageBinary {
				break
			}
			b = append(b, m...)
		}
		got <- b
	}()
	if err := ws.Ping(ctx); err != nil {
		t.Fatalf("ping: %v", err)
	}
	for rest, n := sent, 0; len(rest) > 0; rest = rest[n:] {
		n = min(len(rest), 1+len(sent)-len(rest)) // 1, 2, 4, ... bytes: every length class
		if err := ws.Write(ctx, websocket.MessageBinary, rest[:n]); err != nil {
			t.Fatal(err)
		}
	}
	if b := <-got; !bytes.Equal(b, sent) {
		t.Fatalf("echoed %d bytes, differing from the %d sent", len(b), len(sent))
	}
	if err := ws.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := <-ended; !errors.Is(err, io.EOF) {
		t.Fatalf("server's read ended with %v, want io.EOF", err)
	}
}

// A text message is refused with close code 1003, and the server's stream ends.
func TestTextRefused(t *testing.T) {
	srv, ended := echoServer(t, Options{AnyOrigin: true})
	ws := dial(t, "ws"+strings.TrimPrefix(srv.URL, "http"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ws.Write(ctx, websocket.MessageText, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	_, _, err := ws.Read(ctx)
	if websocket.CloseStatus(err) != websocket.StatusUnsupportedData {
		t.Fatalf("client read %v, want close 1003", err)
	}
	var pe *protocolError
	if err := <-ended; !errors.As(err, &pe) || pe.code != closeUnsupported {
		t.Fatalf("server's read ended with %v", err)
	}
}

func TestHandshakeRefusals(t *testing.T) {
	srv, _ := echoServer(t, Options{OriginPatterns: []string{"*.example.com", "https://app.test"}})
	good := func() http.Header {
		return http.Header{"Connection": {"keep-alive, Upgrade"}, "Upgrade": {"websocket"},
			"Sec-Websocket-Version": {"13"}, "Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="}}
	}
	for _, c := range []struct {
		name string
		edit func(h http.Header)
		want int
	}{
		{"no upgrade", func(h http.Header) { h.Del("Upgrade") }, http.StatusUpgradeRequired},
		{"version 8", func(h http.Header) { h.Set("Sec-Websocket-Version", "8") }, http.StatusUpgradeRequired},
		{"short key", func(h http.Header) { h.Set("Sec-Websocket-Key", "c2hvcnQ=") }, http.StatusBadRequest},
		{"foreign origin", func(h http.Header) { h.Set("Origin", "https://evil.test") }, http.StatusForbidden},
		{"pattern origin", func(h http.Header) { h.Set("Origin", "https://a.example.com") }, http.StatusSwitchingProtocols},
		{"scheme pattern", func(h http.Header) { h.Set("Origin", "https://app.test") }, http.StatusSwitchingProtocols},
		{"scheme mismatch", func(h http.Header) { h.Set("Origin", "http://app.test") }, http.StatusForbidden},
		{"no origin", func(h http.Header) {}, http.StatusSwitchingProtocols},
	} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
		req.Header = good()
		c.edit(req.Header)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s: status %d, want %d", c.name, resp.StatusCode, c.want)
		}
		if c.want == http.StatusSwitchingProtocols && resp.Header.Get("Sec-Websocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
			t.Errorf("%s: Sec-WebSocket-Accept %q (RFC 6455's example)", c.name, resp.Header.Get("Sec-Websocket-Accept"))
		}
		if c.name == "version 8" && resp.Header.Get("Sec-Websocket-Version") != "13" {
			t.Errorf("version 8: the answer does not name version 13")
		}
	}
}

// clientFrame encodes a masked client frame.
func clientFrame(fin bool, opcode byte, payload []byte) []byte {
	b0 := opcode
	if fin {
		b0 |= 0x80
	}
	b := []byte{b0}
	switch n := len(payload); {
	case n <= 125:
		b = append(b, 0x80|byte(n))
	case n <= 0xFFFF:
		b = binary.BigEndian.AppendUint16(append(b, 0x80|126), uint16(n))
	default:
		b = binary.BigEndian.AppendUint64(append(b, 0x80|127), uint64(n))
	}
	mask := [4]byte{0x37, 0xfa, 0x21, 0x3d}
	b = append(b, mask[:]...)
	start := len(b)
	b = append(b, payload...)
	for i := range payload {
		b[start+i] ^= mask[i&3]
	}
	return b
}

// dribble is a transport that hands out its input a byte at a time, every other read failing
// with netio.ErrWouldBlock (a drained non-blocking socket), and records what is written.
type dribble struct {
	net.Conn
	in      []byte
	block   bool
	written bytes.Buffer
}

func (d *dribble) Read(p []byte) (int, error) {
	d.block = !d.block
	if d.block {
		return 0, netio.ErrWouldBlock
	}
	if len(d.in) == 0 {
		return 0, io.EOF
	}
	p[0] = d.in[0]
	d.in = d.in[1:]
	return 1, nil
}
func (d *dribble) Write(p []byte) (int, error)      { return d.written.Write(p) }
func (d *dribble) SetWriteDeadline(time.Time) error { return nil }
func (d *dribble) Close() error                     { return nil }

// A reader interrupted at every byte, inside headers, payloads and a ping between two fragments,
// goes on where it stopped: the payload stream is whole, the ping answered, the close echoed.
func TestReadResumesAfterWouldBlock(t *testing.T) {
	var in []byte
	in = append(in, clientFrame(false, opBinary, []byte("hello, "))...)
	in = append(in, clientFrame(true, opPing, []byte("are you there"))...)
	in = append(in, clientFrame(true, opContinuation, bytes.Repeat([]byte("w"), 300))...)
	in = append(in, clientFrame(true, opBinary, nil)...)
	in = append(in, clientFrame(true, opBinary, []byte("!"))...)
	in = append(in, clientFrame(true, opClose, []byte{0x03, 0xe8})...)
	d := &dribble{in: in}
	c := &Conn{nc: d}
	var got []byte
	buf := make([]byte, 64)
	blocked := 0
	for {
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if errors.Is(err, netio.ErrWouldBlock) {
			blocked++
			continue
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("read: %v after %q", err, got)
		}
	}
	if want := "hello, " + strings.Repeat("w", 300) + "!"; string(got) != want {
		t.Fatalf("read %q, want %q", got, want)
	}
	if blocked < len(in)-1 {
		t.Fatalf("only %d reads were interrupted", blocked)
	}
	pong := append(appendFrameHeader(nil, opPong, 13), "are you there"...)
	closeEcho := append(appendFrameHeader(nil, opClose, 2), 0x03, 0xe8)
	if want := append(pong, closeEcho...); !bytes.Equal(d.written.Bytes(), want) {
		t.Fatalf("wrote % x, want a pong and the close echo % x", d.written.Bytes(), want)
	}
}

// Frames no client may send end the stream with close 1002.
func TestProtocolErrors(t *testing.T) {
	unmasked := []byte{0x82, 0x01, 'x'}
	for name, in := range map[string][]byte{
		"unmasked":             unmasked,
		"reserved bit":         append([]byte{0xC2}, clientFrame(true, opBinary, []byte("x"))[1:]...),
		"orphan continuation":  clientFrame(true, opContinuation, []byte("x")),
		"fragmented ping":      clientFrame(false, opPing, nil),
		"long ping":            clientFrame(true, opPing, make([]byte, 126)),
		"unknown opcode":       clientFrame(true, 0x3, nil),
		"binary inside binary": append(clientFrame(false, opBinary, []byte("a")), clientFrame(true, opBinary, []byte("b"))...),
	} {
		d := &dribble{in: in}
		c := &Conn{nc: d}
		var err error
		buf := make([]byte, 16)
		for err == nil || errors.Is(err, netio.ErrWouldBlock) {
			_, err = c.Read(buf)
		}
		var pe *protocolError
		if !errors.As(err, &pe) || pe.code != closeProtocol {
			t.Errorf("%s: read ended with %v, want a protocol error", name, err)
			continue
		}
		w := d.written.Bytes()
		if len(w) < 4 || w[0] != 0x88 || binary.BigEndian.Uint16(w[2:]) != closeProtocol {
			t.Errorf("%s: wrote % x, want a close frame with 1002", name, w)
		}
	}
}

// The end of the transport inside a frame is unexpected; between frames it is the end.
func TestEndOfStream(t *testing.T) {
	frame := clientFrame(true, opBinary, []byte("abc"))
	for _, c := range []struct {
		in   []byte
		want error
	}{{frame, io.EOF}, {frame[:len(frame)-1], io.ErrUnexpectedEOF}, {frame[:3], io.ErrUnexpectedEOF}} {
		conn := &Conn{nc: &dribble{in: c.in}}
		var err error
		buf := make([]byte, 16)
		for err == nil || errors.Is(err, netio.ErrWouldBlock) {
			_, err = conn.Read(buf)
		}
		if !errors.Is(err, c.want) {
			t.Errorf("% x: %v, want %v", c.in, err, c.want)
		}
	}
}

func TestUnmaskMatchesBytewise(t *testing.T) {
	mask := [4]byte{1, 2, 3, 4}
	for pos := 0; pos < 4; pos++ {
		for n := 0; n < 40; n++ {
			b := make([]byte, n)
			_, _ = rand.Read(b)
			want := bytes.Clone(b)
			for i := range want {
				want[i] ^= mask[(pos+i)&3]
			}
			if end := unmask(mask, pos, b); end != pos+n || !bytes.Equal(b, want) {
				t.Fatalf("pos %d n %d: got % x want % x", pos, n, b, want)
			}
		}
	}
}
