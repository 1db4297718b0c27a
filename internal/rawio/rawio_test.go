package rawio

import (
	"bytes"
	"io"
	"net"
	"testing"
)

// TryWrite never waits: against a peer that reads nothing it returns short once the socket
// buffers are full, and what it reported written arrives intact.
func TestTryWriteStopsWhenFullAndLosesNothing(t *testing.T) {
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
	defer c.Close()
	peer, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	defer peer.Close()
	_ = peer.(*net.TCPConn).SetReadBuffer(64 << 10)

	w := NewWriter(c)
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
		n, err := w.TryWrite(chunk)
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
