package rawio

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"
)

// TryWrite never waits: against a peer that reads nothing it returns short once the socket
// buffers are full, and what it reported written arrives intact.
func TestTryWriteStopsWhenFullAndLosesNothing(t *testing.T) {
	c, peer := tcpPair(t)
	_ = peer.(*net.TCPConn).SetReadBuffer(64 << 10)

	w := NewWriter(c)
	var op Op
	if !w.Able() {
		t.Fatal("a TCP connection is not Able")
	}
	chunk := make([]byte, 256<<10)
	var sent bytes.Buffer
	for i := 0; ; i++ {
		if i == 1000 {
			t.Fatal("256 MiB written to a peer that reads nothing: TryWrite waited or buffered")
		}
		for j := range chunk {
			chunk[j] = byte(i + j)
		}
		n, err := w.TryWrite(&op, chunk)
		if err != nil {
			t.Fatal(err)
		}
		sent.Write(chunk[:n])
		if n < len(chunk) {
			break
		}
	}
	c.Close()
	got, err := io.ReadAll(peer)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, sent.Bytes()) {
		t.Fatalf("received %d bytes that differ from the %d reported written", len(got), sent.Len())
	}
	var none Writer
	if none.Able() {
		t.Fatal("the zero Writer is Able")
	}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if pw := NewWriter(a); pw.Able() {
		t.Fatal("a pipe is Able")
	}
}

// A write deadline in the past, left by an earlier blocking write, makes TryWrite report nothing
// written rather than an error, which would end a healthy connection.
func TestTryWriteIgnoresAStaleDeadline(t *testing.T) {
	a, b := tcpPair(t)
	if err := a.SetWriteDeadline(time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	w := NewWriter(a)
	var op Op
	if n, err := w.TryWrite(&op, []byte("x")); n != 0 || err != nil {
		t.Fatalf("TryWrite after the deadline: %d, %v; want 0, nil", n, err)
	}
	if err := a.SetWriteDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	if n, err := w.TryWrite(&op, []byte("y")); n != 1 || err != nil {
		t.Fatalf("TryWrite with the deadline cleared: %d, %v", n, err)
	}
	buf := make([]byte, 1)
	if _, err := io.ReadFull(b, buf); err != nil || buf[0] != 'y' {
		t.Fatalf("read %q, %v", buf, err)
	}
}

// tcpPair is a connected loopback TCP pair.
func tcpPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c.Close(); peer.Close() })
	return c, peer
}
