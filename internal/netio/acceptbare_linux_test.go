package netio

import (
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// socketOptions reads acceptedOptions' values from a socket.
func socketOptions(t *testing.T, rc syscall.RawConn) [len(acceptedOptions)]int {
	t.Helper()
	var got [len(acceptedOptions)]int
	err := rc.Control(func(fd uintptr) {
		for i, o := range acceptedOptions {
			v, err := unix.GetsockoptInt(int(fd), o.level, o.opt)
			if err != nil {
				t.Errorf("getsockopt: %v", err)
			}
			got[i] = v
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// goOptions: no Nagle delay, keep-alive probes after 15 s, every 15 s, 9 of them, as Go's net
// package sets them on the connections it accepts.
var goOptions = [len(acceptedOptions)]int{1, 1, 15, 15, 9}

// dialN opens n connections to ln, closed at the end of the test.
func dialN(t *testing.T, ln net.Listener, n int) []net.Conn {
	t.Helper()
	var cs []net.Conn
	for range n {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		cs = append(cs, c)
	}
	return cs
}

// On a listener from Listen, accept4 takes the connections waiting in the backlog with the
// options Go sets on the connections it accepts (inherited from the listener, which had them
// before it listened), and nothing from an empty backlog.
func TestAcceptWaitingInheritsGoOptions(t *testing.T) {
	ln, err := Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	rc, _ := ln.(*net.TCPListener).SyscallConn()
	if !hasAcceptedOptions(rc) {
		t.Fatal("the listener lacks the options")
	}
	if s := acceptWaiting(rc); s != nil {
		t.Fatal("accept4 took a connection from an empty backlog")
	}
	clients := dialN(t, ln, 3)
	for i := range clients {
		var s *Socket
		for deadline := time.Now().Add(5 * time.Second); s == nil; {
			if s = acceptWaiting(rc); s == nil && time.Now().After(deadline) {
				t.Fatalf("connection %d was not taken from the backlog", i)
			}
		}
		if got := socketOptions(t, s.RawConn()); got != goOptions {
			t.Errorf("connection %d: options %v, want %v", i, got, goOptions)
		}
		s.fd.close()
	}
}

// ServeBare takes a backlog and then a connection to an idle listener, from Listen or not
// (then always through ln.Accept): every socket has Go's options and carries its client's
// bytes, and ServeBare returns when the listener closes.
func TestServeBareAcceptsEitherWay(t *testing.T) {
	for _, listen := range []struct {
		name string
		fn   func(string, string) (net.Listener, error)
	}{{"netio.Listen", Listen}, {"net.Listen", net.Listen}} {
		t.Run(listen.name, func(t *testing.T) {
			ln, err := listen.fn("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			const waiting = 5
			clients := dialN(t, ln, waiting)
			r := NewRegistry[int](nil)
			sockets := make(chan *Socket, waiting+1)
			done := make(chan error, 1)
			go func() { done <- r.ServeBare(ln, func(s *Socket) { sockets <- s }) }()
			take := func() *Socket {
				t.Helper()
				select {
				case s := <-sockets:
					t.Cleanup(func() { s.fd.close() })
					if got := socketOptions(t, s.RawConn()); got != goOptions {
						t.Errorf("options %v, want %v", got, goOptions)
					}
					return s
				case <-time.After(5 * time.Second):
					t.Fatal("a connection was not accepted")
					return nil
				}
			}
			var accepted []*Socket
			for range waiting {
				accepted = append(accepted, take())
			}
			// The backlog is empty now: this one comes through ln.Accept.
			clients = append(clients, dialN(t, ln, 1)...)
			accepted = append(accepted, take())
			// Every client's byte arrives through one of the bare descriptors.
			for i, c := range clients {
				if _, err := c.Write([]byte{byte(i)}); err != nil {
					t.Fatal(err)
				}
			}
			seen := map[byte]bool{}
			for deadline := time.Now().Add(5 * time.Second); len(seen) < len(clients); {
				if time.Now().After(deadline) {
					t.Fatalf("bytes from %d of %d clients arrived", len(seen), len(clients))
				}
				for _, s := range accepted {
					_ = s.RawConn().Read(func(fd uintptr) bool {
						var b [1]byte
						if n, _ := unix.Read(int(fd), b[:]); n == 1 {
							seen[b[0]] = true
						}
						return true
					})
				}
			}
			_ = ln.Close()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("ServeBare after the listener closed: %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("ServeBare did not return when its listener closed")
			}
		})
	}
}
