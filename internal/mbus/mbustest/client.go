// Package mbustest is an mBus client written from the protocol reference, for tests: it speaks
// the framing (with zlib), create, commands and events, and lets a test send raw bytes.
package mbustest

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/mbus"
)

// Client is an mBus client written from the protocol reference, for the tests only.
type Client struct {
	t    *testing.T
	NC   net.Conn
	rd   *bufio.Reader
	zlib bool
	seq  int
	mu   sync.Mutex
	In   chan mbus.Message
	ID   string
}

func Dial(t *testing.T, network, addr string) *Client {
	t.Helper()
	nc, err := net.DialTimeout(network, addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return New(t, nc)
}

// New is a client on a connection the test made (TLS, WebSocket).
func New(t *testing.T, nc net.Conn) *Client {
	c := &Client{t: t, NC: nc, rd: bufio.NewReader(nc), In: make(chan mbus.Message, 1000)}
	t.Cleanup(func() { nc.Close() })
	return c
}

// startReader delivers incoming messages to c.in (after create, whose result is read directly).
func (c *Client) startReader() {
	go func() {
		for {
			c.mu.Lock()
			z := c.zlib
			c.mu.Unlock()
			b, err := readFrame(c.rd, z, nil)
			if err != nil {
				close(c.In)
				return
			}
			var m mbus.Message
			if json.Unmarshal(b, &m) == nil {
				c.In <- m
			}
		}
	}()
}

func (c *Client) Write(m mbus.Message) {
	c.t.Helper()
	b, _ := json.Marshal(m)
	c.mu.Lock()
	z := c.zlib
	c.mu.Unlock()
	if _, err := c.NC.Write(AppendFrame(nil, b, z)); err != nil {
		c.t.Logf("write: %v", err)
	}
}

func (c *Client) NextSeq() int {
	c.seq++
	return c.seq
}

// Command sends a command and returns its sequence.
func (c *Client) Command(dest, id string, payload any) int {
	p, _ := json.Marshal(payload)
	seq := c.NextSeq()
	timeout := 30000
	c.Write(mbus.Message{Type: mbus.TypeCommand, Destination: dest, Identifier: id, Sequence: &seq, Timeout: &timeout, Payload: p})
	return seq
}

// Create sends command.create and reads its (uncompressed) result.
func (c *Client) Create(payload map[string]any) mbus.Message {
	c.t.Helper()
	seq := c.Command(mbus.ServerID, "command.create", payload)
	_ = c.NC.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := readFrame(c.rd, false, nil)
	_ = c.NC.SetReadDeadline(time.Time{})
	if err != nil {
		c.t.Fatalf("create result: %v", err)
	}
	var m mbus.Message
	if err := json.Unmarshal(b, &m); err != nil || m.Type != mbus.TypeResult || *m.Sequence != seq {
		c.t.Fatalf("create result %s: %v", b, err)
	}
	if *m.Status == 0 {
		var r struct{ Identifier, Compression string }
		_ = json.Unmarshal(m.Payload, &r)
		c.ID = r.Identifier
		c.mu.Lock()
		c.zlib = r.Compression == "zlib"
		c.mu.Unlock()
		c.startReader()
	}
	return m
}

// Next waits (at most 5 s) for the next message matching keep.
func (c *Client) Next(keep func(mbus.Message) bool) mbus.Message {
	c.t.Helper()
	return c.NextWithin(5*time.Second, keep)
}

// NextWithin is Next with a deadline of d, for an answer that comes only after the server has
// worked through much that was sent before it.
func (c *Client) NextWithin(d time.Duration, keep func(mbus.Message) bool) mbus.Message {
	c.t.Helper()
	deadline := time.After(d)
	for {
		select {
		case m, ok := <-c.In:
			if !ok {
				c.t.Fatal("connection closed")
			}
			if keep(m) {
				return m
			}
		case <-deadline:
			c.t.Fatalf("no matching message within %v", d)
		}
	}
}

// ResultOf waits (at most 5 s) for the result of sequence seq and returns its status and payload.
func (c *Client) ResultOf(seq int) (int, json.RawMessage) {
	c.t.Helper()
	return c.ResultWithin(5*time.Second, seq)
}

// ResultWithin is ResultOf with a deadline of d.
func (c *Client) ResultWithin(d time.Duration, seq int) (int, json.RawMessage) {
	c.t.Helper()
	m := c.NextWithin(d, func(m mbus.Message) bool { return m.Type == mbus.TypeResult && m.Sequence != nil && *m.Sequence == seq })
	return *m.Status, m.Payload
}

func (c *Client) Closed() bool {
	select {
	case _, ok := <-c.In:
		return !ok
	case <-time.After(5 * time.Second):
		return false
	}
}

// WriteRaw sends bytes as they are (bad input).
func (c *Client) WriteRaw(b []byte) {
	_, _ = c.NC.Write(b)
}

// StartReader reads what arrives into In (Create starts it after a successful create).
func (c *Client) StartReader() { c.startReader() }

// AppendFrame appends payload as one mBus frame: a big-endian length, then the payload, or with
// zlib the inflated length and a zlib stream. It is written here from the protocol reference, not
// shared with the server's codec, so that a framing mistake there cannot hide on both sides.
func AppendFrame(dst, payload []byte, compressed bool) []byte {
	if !compressed {
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(payload)))
		return append(dst, payload...)
	}
	var z bytes.Buffer
	zw := zlib.NewWriter(&z)
	_, _ = zw.Write(payload)
	_ = zw.Close()
	dst = binary.BigEndian.AppendUint32(dst, uint32(4+z.Len()))
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(payload)))
	return append(dst, z.Bytes()...)
}

func readFrame(r io.Reader, compressed bool, _ []byte) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	b := make([]byte, binary.BigEndian.Uint32(hdr[:]))
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	if !compressed {
		return b, nil
	}
	if len(b) < 4 {
		return nil, fmt.Errorf("short compressed frame")
	}
	zr, err := zlib.NewReader(bytes.NewReader(b[4:]))
	if err != nil {
		return nil, err
	}
	return io.ReadAll(zr)
}
