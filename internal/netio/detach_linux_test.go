package netio

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openFDs counts this process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count descriptors: %v", err)
	}
	return len(es)
}

// detachWhenIdle detaches c, waiting while a writer is still at work.
func detachWhenIdle(t *testing.T, c *Conn, w *Watch) syscall.RawConn {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; {
		if raw := c.Detach(w); raw != nil {
			return raw
		}
		if time.Now().After(deadline) {
			t.Fatal("the connection did not become idle")
		}
		time.Sleep(time.Millisecond)
	}
}

// A detached connection: its watch wakes on the kept descriptor, its reads and the writes the
// socket takes at once go through that descriptor without attaching, a write that must wait
// attaches it, a reader's Attach leaves it one descriptor, and it still ends gracefully.
func TestDetachedConnReadsWritesAndAttachesToWait(t *testing.T) {
	c, _, client, stats := pair(t, Limits{Soft: 16 << 20, Hard: 64 << 20, WriteTimeout: 5 * time.Second, Linger: time.Second}, 4096)
	p := testPoller(t, 4)
	woke := make(chan struct{}, 1)
	w, err := p.Watch(rawOf(t, c.NetConn().(*net.TCPConn)), handlerFunc(func() { woke <- struct{}{} }))
	if err != nil {
		t.Fatal(err)
	}
	raw := c.Detach(w)
	if raw == nil || c.NetConn() != nil {
		t.Fatal("an idle connection did not detach")
	}
	if stats.Detached.Load() != 1 {
		t.Fatalf("Detached = %d, want 1", stats.Detached.Load())
	}

	// The watch is on the kept descriptor, which reads without waiting.
	if err := w.Arm(time.Time{}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	wait(t, woke, "readable detached socket")
	buf := make([]byte, 16)
	var n int
	if err := raw.Read(func(fd uintptr) bool { n, _ = syscall.Read(int(fd), buf); return true }); err != nil || string(buf[:max(n, 0)]) != "ping" {
		t.Fatalf("read %q, %v", buf[:max(n, 0)], err)
	}
	if err := raw.Read(func(uintptr) bool { return false }); !errors.Is(err, ErrWouldBlock) {
		t.Fatalf("a read that would wait: %v, want ErrWouldBlock", err)
	}

	// What the socket takes at once needs no net.Conn.
	queue(c, []byte("hello"), nil)
	if got := readN(t, client, 5); string(got) != "hello" {
		t.Fatalf("got %q", got)
	}
	if stats.Attaches.Load() != 0 {
		t.Fatal("a small write attached the connection")
	}

	// More than the socket holds: the writer attaches to wait, and everything arrives in order.
	big := make([]byte, 4<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	queue(c, big, nil)
	if got := readN(t, client, len(big)); !bytes.Equal(got, big) {
		t.Fatal("a write that had to wait arrived damaged")
	}
	if stats.Attaches.Load() != 1 || stats.Detached.Load() != 0 {
		t.Fatalf("Attaches %d, Detached %d; want 1 and 0", stats.Attaches.Load(), stats.Detached.Load())
	}

	// Detached again, then attached by its reader: one descriptor, the net.Conn's.
	detachWhenIdle(t, c, w)
	before := openFDs(t)
	nc, err := c.Attach(w)
	if err != nil || nc == nil {
		t.Fatalf("attach: %v", err)
	}
	if after := openFDs(t); after != before {
		t.Fatalf("%d descriptors after the reader's attach, %d before: the kept one stayed", after, before)
	}
	if err := w.Arm(time.Time{}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	wait(t, woke, "readable socket after the reader's attach")

	// Detached once more, it ends gracefully: the last bytes, then the end of the stream.
	detachWhenIdle(t, c, w)
	queue(c, []byte("bye"), nil)
	c.End(errors.New("done"))
	if got := readN(t, client, 3); string(got) != "bye" {
		t.Fatalf("got %q", got)
	}
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := client.Read(buf); !errors.Is(err, io.EOF) {
		t.Fatalf("after End: %v, want EOF", err)
	}
	w.Close()
	_ = client.Close()
	c.Finish()
	if stats.Detached.Load() != 0 {
		t.Fatalf("Detached = %d after the end", stats.Detached.Load())
	}
}

// detachedPair is pair's connection, detached with a watch that does nothing, and its kept
// descriptor.
func detachedPair(t *testing.T, lim Limits) (*Conn, net.Conn, *Stats, syscall.RawConn) {
	t.Helper()
	c, _, client, stats := pair(t, lim, 0)
	w, err := testPoller(t, 1).Watch(rawOf(t, c.NetConn().(*net.TCPConn)), handlerFunc(func() {}))
	if err != nil {
		t.Fatal(err)
	}
	raw := c.Detach(w)
	if raw == nil {
		t.Fatal("did not detach")
	}
	return c, client, stats, raw
}

// CloseNow closes a detached connection's socket at once.
func TestDetachedConnCloseNow(t *testing.T) {
	c, client, stats, raw := detachedPair(t, Limits{Linger: time.Second})
	c.CloseNow(errors.New("bye"))
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := client.Read(make([]byte, 1)); err == nil {
		t.Fatal("the client could still read")
	}
	if err := raw.Read(func(uintptr) bool { return true }); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after close: %v, want net.ErrClosed", err)
	}
	if stats.Detached.Load() != 0 {
		t.Fatalf("Detached = %d after CloseNow", stats.Detached.Load())
	}
}

// A bareFD is never used after its close: a close waits for the call in progress, and later
// calls fail, so a descriptor number the kernel hands to a new socket is never written to.
func TestBareFDCloseWaitsForCallers(t *testing.T) {
	server, _ := tcpPair(t)
	b, err := dupBare(rawOf(t, server))
	if err != nil {
		t.Fatal(err)
	}
	entered, release := make(chan struct{}), make(chan struct{})
	callErr := make(chan error, 1)
	go func() {
		var ferr error
		err := b.Write(func(fd uintptr) bool {
			close(entered)
			<-release
			_, ferr = unix.FcntlInt(fd, unix.F_GETFD, 0)
			return true
		})
		callErr <- errors.Join(err, ferr)
	}()
	<-entered
	closed := make(chan bool, 1)
	go func() { closed <- b.close() }()
	select {
	case <-closed:
		t.Fatal("close returned while a call was using the descriptor")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if err := <-callErr; err != nil {
		t.Fatalf("the call in progress lost its descriptor: %v", err)
	}
	if !<-closed {
		t.Fatal("first close did not close")
	}
	if err := b.Write(func(uintptr) bool { t.Error("a call ran after the close"); return true }); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after close: %v, want net.ErrClosed", err)
	}
	if b.close() {
		t.Fatal("second close closed again")
	}
}

// Finish closes a detached connection whose client has closed its side without attaching it
// (nothing to drain); one whose client is still there is attached for the drain, which ends
// when the client closes.
func TestDetachedFinish(t *testing.T) {
	for _, clientClosed := range []bool{true, false} {
		c, client, stats, raw := detachedPair(t, Limits{Linger: 5 * time.Second})
		if _, err := client.Write([]byte("last words")); err != nil {
			t.Fatal(err)
		}
		if clientClosed {
			_ = client.Close()
			// Finish may run before the client's end arrives; wait until the socket has it.
			for deadline := time.Now().Add(5 * time.Second); ; {
				var fin bool
				_ = raw.Read(func(fd uintptr) bool {
					pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLRDHUP}}
					n, _ := unix.Poll(pfd, 0)
					fin = n == 1 && pfd[0].Revents&unix.POLLRDHUP != 0
					return true
				})
				if fin {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the client's end did not arrive")
				}
				time.Sleep(time.Millisecond)
			}
		} else {
			go func() {
				// The client reads to the server's end of stream, then closes: the drain ends.
				_, _ = io.Copy(io.Discard, client)
				_ = client.Close()
			}()
		}
		c.Finish()
		if got := stats.Attaches.Load(); clientClosed && got != 0 || !clientClosed && got != 1 {
			t.Errorf("client closed %v: %d attaches", clientClosed, got)
		}
		if err := raw.Read(func(uintptr) bool { return true }); !errors.Is(err, net.ErrClosed) {
			t.Errorf("client closed %v: read after Finish: %v, want net.ErrClosed", clientClosed, err)
		}
		if stats.Detached.Load() != 0 {
			t.Errorf("client closed %v: Detached = %d after Finish", clientClosed, stats.Detached.Load())
		}
	}
}
