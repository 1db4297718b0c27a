package netio

import (
	"math/rand/v2"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// handlerFunc adapts a function to Handler.
type handlerFunc func()

func (f handlerFunc) Ready() { f() }

// countedHandler is a Handler whose parked watch counts in n (a ParkCounter).
type countedHandler struct {
	f func()
	n *atomic.Int64
}

func (h countedHandler) Ready()                     { h.f() }
func (h countedHandler) ParkedCount() *atomic.Int64 { return h.n }

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (server, client *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	var s net.Conn
	select {
	case s = <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("no accept")
	}
	if s == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { _ = s.Close(); _ = c.Close() })
	return s.(*net.TCPConn), c.(*net.TCPConn)
}

func rawOf(t *testing.T, c *net.TCPConn) syscall.RawConn {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	return rc
}

func testPoller(t *testing.T, workers int) *Poller {
	t.Helper()
	p, err := NewPoller(workers)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// wait fails the test unless ch delivers within 5 s.
func wait[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: nothing within 5 s", what)
	}
	var zero T
	return zero
}

// A parked socket's handler runs when bytes arrive, once per arming, and reads them without any
// goroutine having waited for them.
func TestPollerRunsTheHandlerWhenReadable(t *testing.T) {
	p := testPoller(t, 4)
	srv, cli := tcpPair(t)
	got := make(chan string, 4)
	var w *Watch
	w, err := p.Watch(rawOf(t, srv), handlerFunc(func() {
		var b [16]byte
		n, _ := srv.Read(b[:])
		got <- string(b[:n])
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for _, msg := range []string{"one", "two"} {
		if err := w.Arm(time.Time{}); err != nil {
			t.Fatal(err)
		}
		if _, err := cli.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		if s := wait(t, got, "handler for "+msg); s != msg {
			t.Fatalf("handler read %q, want %q", s, msg)
		}
	}
}

// A deadline wakes a parked socket that stays silent; Wake wakes it at once; neither runs the
// handler of a socket its owner holds.
func TestPollerDeadlineAndWake(t *testing.T) {
	p := testPoller(t, 4)
	srv, _ := tcpPair(t)
	ran := make(chan struct{}, 4)
	var runs atomic.Int32
	w, err := p.Watch(rawOf(t, srv), handlerFunc(func() {
		runs.Add(1)
		ran <- struct{}{}
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Arm(time.Now().Add(20 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	wait(t, ran, "deadline")
	// Owned now: a wake-up is the owner's to see, not a second handler's.
	w.Wake()
	if err := w.Arm(time.Time{}); err != nil {
		t.Fatal(err)
	}
	w.Wake()
	wait(t, ran, "wake")
	if n := runs.Load(); n != 2 {
		t.Fatalf("handler ran %d times, want 2", n)
	}
	// A deadline already past wakes at once.
	if err := w.Arm(time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	wait(t, ran, "past deadline")
}

// A ParkCounter handler counts its watch while it is armed, and not after it is taken back by an event,
// a wake-up, its deadline or its close; the count is already 0 when the handler runs.
func TestWatchCountsWhileParked(t *testing.T) {
	p := testPoller(t, 4)
	srv, cli := tcpPair(t)
	var parked atomic.Int64
	seen := make(chan int64, 4)
	w, err := p.Watch(rawOf(t, srv), countedHandler{f: func() {
		var b [16]byte
		_ = srv.SetReadDeadline(time.Now().Add(time.Millisecond))
		_, _ = srv.Read(b[:])
		seen <- parked.Load()
	}, n: &parked})
	if err != nil {
		t.Fatal(err)
	}
	wake := map[string]func(){
		"event":    func() { _, _ = cli.Write([]byte("x")) },
		"wake":     w.Wake,
		"deadline": func() {},
	}
	for _, how := range []string{"event", "wake", "deadline"} {
		deadline := time.Time{}
		if how == "deadline" {
			deadline = time.Now().Add(10 * time.Millisecond)
		}
		if err := w.Arm(deadline); err != nil {
			t.Fatal(err)
		}
		if n := parked.Load(); n != 1 {
			t.Fatalf("before the %s: %d parked, want 1", how, n)
		}
		wake[how]()
		if n := wait(t, seen, how); n != 0 {
			t.Fatalf("in the handler after the %s: %d parked, want 0", how, n)
		}
	}
	if err := w.Arm(time.Time{}); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if n := parked.Load(); n != 0 {
		t.Fatalf("after Close of an armed watch: %d parked, want 0", n)
	}
	if err := w.Arm(time.Time{}); err == nil || parked.Load() != 0 {
		t.Fatalf("Arm after Close: %v, %d parked", err, parked.Load())
	}
}

// Handlers run on at most the poller's workers at once.
func TestPollerBoundsItsWorkers(t *testing.T) {
	const workers, socks = 2, 8
	p := testPoller(t, workers)
	release := make(chan struct{})
	var running, most atomic.Int32
	done := make(chan struct{}, socks)
	for range socks {
		srv, _ := tcpPair(t)
		w, err := p.Watch(rawOf(t, srv), handlerFunc(func() {
			n := running.Add(1)
			for {
				m := most.Load()
				if n <= m || most.CompareAndSwap(m, n) {
					break
				}
			}
			<-release
			running.Add(-1)
			done <- struct{}{}
		}))
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		if err := w.Arm(time.Time{}); err != nil {
			t.Fatal(err)
		}
		w.Wake()
	}
	// Every worker busy: the bound is reached before the handlers go on.
	for deadline := time.Now().Add(5 * time.Second); running.Load() < workers; {
		if time.Now().After(deadline) {
			t.Fatalf("%d handlers running, want %d", running.Load(), workers)
		}
		runtime.Gosched()
	}
	close(release)
	for range socks {
		wait(t, done, "handlers")
	}
	if m := most.Load(); m != workers {
		t.Fatalf("at most %d handlers ran at once, want the bound %d", m, workers)
	}
}

// Handlers start in the order their sockets were woken.
func TestPollerKeepsOrder(t *testing.T) {
	const socks = 8
	p := testPoller(t, 1)
	var mu sync.Mutex
	var order []int
	done := make(chan struct{}, socks)
	block := make(chan struct{})
	ws := make([]*Watch, socks)
	for i := range ws {
		srv, _ := tcpPair(t)
		w, err := p.Watch(rawOf(t, srv), handlerFunc(func() {
			if i == 0 {
				<-block // holds the only worker while the others queue
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			done <- struct{}{}
		}))
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		if err := w.Arm(time.Time{}); err != nil {
			t.Fatal(err)
		}
		ws[i] = w
	}
	for _, w := range ws {
		w.Wake()
	}
	close(block)
	for range socks {
		wait(t, done, "handlers")
	}
	for i, v := range order {
		if v != i {
			t.Fatalf("handlers ran in order %v", order)
		}
	}
}

// An event for a descriptor that a newer Watch now holds (the old socket was closed and its
// number reused) is not handed to the newer Watch's handler.
func TestPollerIgnoresEventsOfAnEarlierOwnerOfTheDescriptor(t *testing.T) {
	p := testPoller(t, 4)
	srv, _ := tcpPair(t)
	old, err := p.Watch(rawOf(t, srv), handlerFunc(func() {}))
	if err != nil {
		t.Fatal(err)
	}
	// A second Watch on the same descriptor stands for its next owner.
	ran := make(chan struct{}, 1)
	cur, err := p.Watch(rawOf(t, srv), handlerFunc(func() { ran <- struct{}{} }))
	if err != nil {
		t.Fatal(err)
	}
	cur.state.Store(watchArmed)
	if w := p.take(old.fd, old.gen); w != nil {
		t.Fatal("an event of the earlier Watch was taken by the current one")
	}
	if w := p.take(cur.fd, cur.gen); w != cur {
		t.Fatal("the current Watch's event was not taken")
	}
	// Closing the earlier Watch leaves the current one registered.
	old.Close()
	cur.state.Store(watchArmed)
	if w := p.take(cur.fd, cur.gen); w != cur {
		t.Fatal("closing the earlier Watch removed the current one")
	}
	cur.Close()
}

// Deadlines of many parked sockets wake each of them; a socket closed before its deadline
// leaves nothing behind in the poller.
func TestPollerDeadlines(t *testing.T) {
	p := testPoller(t, 4)
	ran := make(chan int, 8)
	ws := make([]*Watch, 4)
	for i := range ws {
		srv, _ := tcpPair(t)
		w, err := p.Watch(rawOf(t, srv), handlerFunc(func() { ran <- i }))
		if err != nil {
			t.Fatal(err)
		}
		ws[i] = w
	}
	now := time.Now()
	for i, d := range []time.Duration{30, 10, 20} {
		if err := ws[i].Arm(now.Add(d * time.Millisecond)); err != nil {
			t.Fatal(err)
		}
	}
	// The last one waits an hour, and is closed first.
	if err := ws[3].Arm(now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	ws[3].Close()
	seen := map[int]bool{}
	for range 3 {
		seen[wait(t, ran, "deadlines")] = true
	}
	if len(seen) != 3 || seen[3] {
		t.Fatalf("woken: %v", seen)
	}
	for _, w := range ws[:3] {
		w.Close()
	}
	p.deadlines.mu.Lock()
	defer p.deadlines.mu.Unlock()
	if n := len(p.deadlines.heap); n != 0 {
		t.Fatalf("%d deadlines left after every watch closed", n)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for fd, w := range p.watches {
		if w != nil {
			t.Fatalf("descriptor %d still watched", fd)
		}
	}
}

// Every parked connection holds a Watch: it stays within the allocator's 48-byte size class.
func TestWatchSize(t *testing.T) {
	if n := unsafe.Sizeof(Watch{}); n > 48 {
		t.Errorf("Watch is %d bytes, past the 48-byte size class", n)
	}
}

// The deadline heap keeps its order and every watch's index through pushes, changed deadlines
// and removals anywhere, and gives the deadlines back in order.
func TestDueHeap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var h dueHeap
	live := map[*Watch]int64{}
	check := func(step int) {
		t.Helper()
		for i, e := range h {
			if e.w.hidx != int32(i+1) {
				t.Fatalf("step %d: entry %d has hidx %d", step, i, e.w.hidx)
			}
			if i > 0 && h[(i-1)/2].due > e.due {
				t.Fatalf("step %d: entry %d (%d) before its parent (%d)", step, i, e.due, h[(i-1)/2].due)
			}
			if live[e.w] != e.due {
				t.Fatalf("step %d: entry %d has deadline %d, want %d", step, i, e.due, live[e.w])
			}
		}
		if len(h) != len(live) {
			t.Fatalf("step %d: %d entries for %d watches", step, len(h), len(live))
		}
	}
	for step := range 5000 {
		switch op := rng.IntN(4); {
		case op <= 1 || len(h) == 0:
			w := &Watch{}
			due := rng.Int64N(1000) + 1
			live[w] = due
			h.push(dueWatch{due, w})
		case op == 2:
			i := rng.IntN(len(h))
			due := rng.Int64N(1000) + 1
			live[h[i].w] = due
			h[i].due = due
			h.fix(i)
		default:
			i := rng.IntN(len(h))
			w := h[i].w
			h.remove(i)
			delete(live, w)
			if w.hidx != 0 {
				t.Fatalf("step %d: a removed watch keeps hidx %d", step, w.hidx)
			}
		}
		check(step)
	}
	var last int64
	for len(h) > 0 {
		if h[0].due < last {
			t.Fatalf("deadline %d after %d", h[0].due, last)
		}
		last = h[0].due
		h.remove(0)
	}
}
