package wsconn

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/ternmq/tern/internal/netio"
)

// messageEcho upgrades every request and sends each message back as it came (text or binary),
// reading with ReadMessage under limit.
func messageEcho(t *testing.T, limit int) (*httptest.Server, chan error) {
	t.Helper()
	ended := make(chan error, 8)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := Upgrade(w, r, Options{AnyOrigin: true})
		if err != nil {
			return
		}
		defer c.Close()
		for {
			text, msg, err := c.ReadMessage(limit)
			if err != nil {
				ended <- err
				return
			}
			if err := c.WriteMessage(text, msg, 5*time.Second); err != nil {
				ended <- err
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	return srv, ended
}

// A third-party client's text and binary messages, whole or sent in fragments with a ping
// between them, come back as the same messages of the same type.
func TestMessagesWithThirdPartyClient(t *testing.T) {
	srv, ended := messageEcho(t, 1<<20)
	ws := dial(t, "ws"+strings.TrimPrefix(srv.URL, "http"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type msg struct {
		typ  websocket.MessageType
		data string
	}
	sent := []msg{
		{websocket.MessageText, `{"op":"sub","filter":"a/#"}`},
		{websocket.MessageBinary, "\x00\x01\x02"},
		{websocket.MessageText, ""},
		{websocket.MessageText, "héllo, " + strings.Repeat("wörld ", 20000)},
		{websocket.MessageBinary, strings.Repeat("b", 70000)},
	}
	got := make(chan []msg, 1)
	go func() {
		var ms []msg
		for len(ms) < len(sent) {
			typ, b, err := ws.Read(ctx)
			if err != nil {
				break
			}
			ms = append(ms, msg{typ, string(b)})
		}
		got <- ms
	}()
	for i, m := range sent {
		if i%2 == 1 {
			// In fragments, a control frame between them (the client's ping).
			w, err := ws.Writer(ctx, m.typ)
			if err != nil {
				t.Fatal(err)
			}
			half := len(m.data) / 2
			_, _ = w.Write([]byte(m.data[:half]))
			_, _ = w.Write([]byte(m.data[half:]))
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := ws.Write(ctx, m.typ, []byte(m.data)); err != nil {
			t.Fatal(err)
		}
	}
	ms := <-got
	if len(ms) != len(sent) {
		t.Fatalf("%d messages came back, want %d", len(ms), len(sent))
	}
	for i := range sent {
		if ms[i].typ != sent[i].typ || ms[i].data != sent[i].data {
			t.Fatalf("message %d came back as %v of %d bytes, sent %v of %d", i, ms[i].typ, len(ms[i].data), sent[i].typ, len(sent[i].data))
		}
	}
	if err := ws.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := <-ended; !errors.Is(err, io.EOF) {
		t.Fatalf("server's read ended with %v, want io.EOF", err)
	}
}

// A message over the limit ends the connection with 1009 as soon as a frame's header says so,
// also when it comes in fragments each under the limit; a text message that is not UTF-8 with
// 1007.
func TestMessageRefusals(t *testing.T) {
	for name, c := range map[string]struct {
		in   []byte
		code uint16
	}{
		"one frame over":   {clientFrame(true, opText, make([]byte, 101)), closeTooBig},
		"fragments over":   {append(clientFrame(false, opBinary, make([]byte, 60)), clientFrame(true, opContinuation, make([]byte, 41))...), closeTooBig},
		"invalid UTF-8":    {clientFrame(true, opText, []byte{'a', 0xff, 'b'}), StatusInvalidPayload},
		"split code point": {append(clientFrame(false, opText, []byte{0xc3}), clientFrame(true, opContinuation, []byte{'x'})...), StatusInvalidPayload},
		"text inside text": {append(clientFrame(false, opText, []byte("a")), clientFrame(true, opText, []byte("b"))...), closeProtocol},
	} {
		d := &dribble{in: c.in}
		conn := &Conn{nc: d}
		var err error
		for err == nil || errors.Is(err, netio.ErrWouldBlock) {
			_, _, err = conn.ReadMessage(100)
		}
		var pe *protocolError
		if !errors.As(err, &pe) || pe.code != c.code {
			t.Errorf("%s: read ended with %v, want close %d", name, err, c.code)
			continue
		}
		w := d.written.Bytes()
		if len(w) < 4 || w[0] != 0x88 || binary.BigEndian.Uint16(w[2:]) != c.code {
			t.Errorf("%s: wrote % x, want a close frame with %d", name, w, c.code)
		}
	}
	// A split code point completed in the next fragment is valid.
	in := append(clientFrame(false, opText, []byte{0xc3}), clientFrame(true, opContinuation, []byte{0xa9})...)
	text, msg, err := readMessageInterrupted(&Conn{nc: &dribble{in: in}}, 100)
	if err != nil || !text || string(msg) != "é" {
		t.Fatalf("split é: %v %q %v", text, msg, err)
	}
}

// readMessageInterrupted reads one message, retrying ErrWouldBlock.
func readMessageInterrupted(c *Conn, limit int) (bool, []byte, error) {
	for {
		text, msg, err := c.ReadMessage(limit)
		if !errors.Is(err, netio.ErrWouldBlock) {
			return text, msg, err
		}
	}
}

// Interrupted at every byte, ReadMessage goes on where it stopped: each message whole, the
// ping between two fragments answered, a zero-length message reported, and between messages
// it keeps no buffer.
func TestReadMessageResumesAfterWouldBlock(t *testing.T) {
	var in []byte
	in = append(in, clientFrame(false, opText, []byte("hello, "))...)
	in = append(in, clientFrame(true, opPing, []byte("there?"))...)
	in = append(in, clientFrame(true, opContinuation, []byte("world"))...)
	in = append(in, clientFrame(true, opBinary, nil)...)
	in = append(in, clientFrame(true, opBinary, bytes.Repeat([]byte{7}, 300))...)
	in = append(in, clientFrame(true, opClose, []byte{0x03, 0xe8})...)
	d := &dribble{in: in}
	c := &Conn{nc: d}
	var got []string
	for {
		text, msg, err := readMessageInterrupted(c, 1000)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("after %q: %v", got, err)
		}
		if c.msg != nil {
			t.Fatalf("the Conn keeps a buffer of %d bytes after a message", cap(c.msg))
		}
		got = append(got, fmt.Sprintf("%v:%d:%.7s", text, len(msg), msg))
	}
	want := []string{"true:12:hello, ", "false:0:", "false:300:\x07\x07\x07\x07\x07\x07\x07"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("read %q, want %q", got, want)
	}
	pong := append(appendFrameHeader(nil, opPong, 6), "there?"...)
	closeEcho := append(appendFrameHeader(nil, opClose, 2), 0x03, 0xe8)
	if want := append(pong, closeEcho...); !bytes.Equal(d.written.Bytes(), want) {
		t.Fatalf("wrote % x, want a pong and the close echo % x", d.written.Bytes(), want)
	}
}

// CloseWith sends its code and reason; a third-party client sees both, and the server's next
// read reports the client's answering close as the end.
func TestCloseWith(t *testing.T) {
	ended := make(chan error, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := Upgrade(w, r, Options{AnyOrigin: true})
		if err != nil {
			return
		}
		defer c.Close()
		if err := c.CloseWith(StatusPolicyViolation, "go away"); err != nil {
			ended <- err
			return
		}
		_, _, err = c.ReadMessage(100)
		ended <- err
	}))
	t.Cleanup(srv.Close)
	ws := dial(t, "ws"+strings.TrimPrefix(srv.URL, "http"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _, err := ws.Read(ctx)
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.StatusPolicyViolation || ce.Reason != "go away" {
		t.Fatalf("client read %v, want close 1008 \"go away\"", err)
	}
	if err := <-ended; !errors.Is(err, io.EOF) {
		t.Fatalf("server's read after its close ended with %v, want io.EOF", err)
	}
}
