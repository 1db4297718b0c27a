package tcpproxy

import (
	"io"
	"net"
	"testing"
	"time"
)

// target accepts connections and hands each to the test.
func target(t *testing.T) (string, <-chan net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	conns := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { _ = c.Close() })
			conns <- c
		}
	}()
	return ln.Addr().String(), conns
}

func start(t *testing.T, to string) *Proxy {
	t.Helper()
	p, err := Listen("127.0.0.1:0", to)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return p
}

func dial(t *testing.T, addr, from string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

func accepted(t *testing.T, conns <-chan net.Conn) net.Conn {
	t.Helper()
	select {
	case c := <-conns:
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("the proxy did not connect to the target")
		return nil
	}
}

func roundTrip(t *testing.T, client, server net.Conn) {
	t.Helper()
	if _, err := client.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(server, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("target read %q, %v", buf, err)
	}
	if _, err := server.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(client, buf); err != nil || string(buf) != "pong" {
		t.Fatalf("client read %q, %v", buf, err)
	}
}

// closed reports whether c's peer closed it: a read ends without data.
func closed(c net.Conn) bool {
	n, err := c.Read(make([]byte, 1))
	return n == 0 && err != nil && !isTimeout(err)
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// linked starts a target and a proxy to it, and returns one connection through the proxy (c, and s
// at the target) that has carried bytes both ways.
func linked(t *testing.T) (p *Proxy, conns <-chan net.Conn, c, s net.Conn) {
	t.Helper()
	to, conns := target(t)
	p = start(t, to)
	c = dial(t, p.Addr(), "")
	s = accepted(t, conns)
	roundTrip(t, c, s)
	return p, conns, c, s
}

func TestCutClosesAndRefusesUntilRestore(t *testing.T) {
	p, conns, c, s := linked(t)

	p.Cut()
	if !closed(c) || !closed(s) {
		t.Fatal("Cut left a connection open")
	}
	refused := dial(t, p.Addr(), "")
	if !closed(refused) {
		t.Fatal("a connection made while cut was carried")
	}

	p.Restore()
	c2 := dial(t, p.Addr(), "")
	roundTrip(t, c2, accepted(t, conns))
}

func TestBlackholeLosesBytesUntilRestoreEndsTheConnection(t *testing.T) {
	p, conns, c, s := linked(t)

	p.Blackhole()
	if _, err := c.Write([]byte("lost")); err != nil {
		t.Fatalf("a blackholed connection refused a write: %v", err)
	}
	if p.Open() != 1 {
		t.Fatalf("blackholed connections open: %d, want 1", p.Open())
	}
	p.Restore()
	// The target sees its connection end without one byte of what was written meanwhile.
	got, err := io.ReadAll(s)
	if err != nil && !closed(s) {
		t.Fatalf("target: %v", err)
	}
	if len(got) != 0 {
		t.Fatalf("the target received %q through a blackhole", got)
	}
	roundTrip(t, dial(t, p.Addr(), ""), accepted(t, conns))
}

func TestBlockRefusesOneSource(t *testing.T) {
	to, conns := target(t)
	p := start(t, to)
	other := dial(t, p.Addr(), "127.0.0.2")
	accepted(t, conns)
	mine := dial(t, p.Addr(), "127.0.0.1")
	mineSrv := accepted(t, conns)

	p.Block("127.0.0.2", true)
	if !closed(other) {
		t.Fatal("the blocked source's connection stayed open")
	}
	if !closed(dial(t, p.Addr(), "127.0.0.2")) {
		t.Fatal("a new connection from the blocked source was carried")
	}
	roundTrip(t, mine, mineSrv)

	p.Block("127.0.0.2", false)
	roundTrip(t, dial(t, p.Addr(), "127.0.0.2"), accepted(t, conns))
}
