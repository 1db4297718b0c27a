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

// A socket taken with accept4 names its peer from the address accept4 returns, as Go's net
// package names an accepted connection's remote address (IPv4, IPv6, and an IPv4 client of a
// dual-stack listener, which Go names in IPv4 form); a Unix socket's unnamed peer is "@", as
// x/sys/unix names it.
func TestAcceptWaitingNamesThePeer(t *testing.T) {
	for _, tc := range []struct{ network, listen, dial string }{
		{"tcp", "127.0.0.1:0", "127.0.0.1"},
		{"tcp6", "[::1]:0", "::1"},
		{"tcp", "[::]:0", "127.0.0.1"},
	} {
		t.Run(tc.listen, func(t *testing.T) {
			ln, err := Listen(tc.network, tc.listen)
			if err != nil {
				t.Skipf("no %s listener here: %v", tc.listen, err)
			}
			defer ln.Close()
			_, port, _ := net.SplitHostPort(ln.Addr().String())
			c, err := net.Dial("tcp", net.JoinHostPort(tc.dial, port))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			s := takeWaiting(t, ln)
			defer s.fd.close()
			if got, want := s.fd.remoteAddr(), c.LocalAddr().String(); got != want {
				t.Errorf("peer %q, want %q", got, want)
			}
		})
	}
	t.Run("unix", func(t *testing.T) {
		ln, err := Listen("unix", t.TempDir()+"/s")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		c, err := net.Dial("unix", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		s := takeWaiting(t, ln)
		defer s.fd.close()
		if got := s.fd.remoteAddr(); got != "@" || s.fd.peer != got {
			t.Errorf("unnamed Unix peer named %q (at the accept: %q), want @", got, s.fd.peer)
		}
	})
}

// takeWaiting takes the connection waiting in ln's backlog with accept4, waiting up to 5 s for it
// to get there.
func takeWaiting(t *testing.T, ln net.Listener) *Socket {
	t.Helper()
	rc, err := ln.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; {
		if s := acceptWaiting(rc); s != nil {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatal("no connection was taken from the backlog")
		}
	}
}

// The calls made on every connection (the poller's registration, a park's epoll_ctl, accept4)
// allocate nothing but what they keep: a closure passed to RawConn.Control would cost three
// allocations a call.
func TestFDOpsAllocateNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop objects")
	}
	ln, err := Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	rc, _ := ln.(*net.TCPListener).SyscallConn()
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(epfd)
	if n := testing.AllocsPerRun(100, func() {
		if _, err := fdNumber(rc); err != nil {
			t.Fatal(err)
		}
		if err := epollCtl(rc, epfd, unix.EPOLL_CTL_ADD, unix.EpollEvent{Events: unix.EPOLLIN}); err != nil {
			t.Fatal(err)
		}
		if err := epollCtl(rc, epfd, unix.EPOLL_CTL_DEL, unix.EpollEvent{}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := accept4(rc); err != unix.EAGAIN {
			t.Fatalf("accept4 on an empty backlog: %v", err)
		}
	}); n != 0 {
		t.Errorf("%.1f allocations a round, want 0", n)
	}
}
