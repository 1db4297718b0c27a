package netio

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// failingListener fails its first accepts with err, then reports closed.
type failingListener struct {
	net.Listener
	fails int
	err   error
}

func (l *failingListener) Accept() (net.Conn, error) {
	if l.fails > 0 {
		l.fails--
		return nil, l.err
	}
	return nil, net.ErrClosed
}

func (l *failingListener) Close() error   { return nil }
func (l *failingListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// Accept failures are logged and retried, not spun on.
func TestServeLogsAcceptFailures(t *testing.T) {
	var logs syncBuffer
	r := NewRegistry[*int](slog.New(slog.NewTextHandler(&logs, nil)))
	ln := &failingListener{fails: 3, err: errors.New("too many open files")}
	if err := r.Serve(ln, func(net.Conn) { t.Error("served a connection") }); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(logs.String(), "too many open files"); n != 3 {
		t.Fatalf("%d accept failures logged, want 3:\n%s", n, logs.String())
	}
}

// Close stops accepting, says goodbye to each connection, and ends those that do not go within the
// grace period; Add after Close is refused.
func TestRegistryClose(t *testing.T) {
	r := NewRegistry[*int](nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan net.Conn, 1)
	go func() { _ = r.Serve(ln, func(nc net.Conn) { served <- nc }) }()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	(<-served).Close()

	polite, stubborn := new(int), new(int)
	for _, c := range []*int{polite, stubborn} {
		if !r.Add(c) {
			t.Fatal("Add refused")
		}
	}
	if r.Len() != 2 {
		t.Fatalf("Len %d", r.Len())
	}
	var killed []*int
	r.Close(func(c *int) {
		if c == polite {
			go r.Remove(c)
		}
	}, func(c *int) {
		killed = append(killed, c)
		r.Remove(c)
	}, 100*time.Millisecond)
	if len(killed) != 1 || killed[0] != stubborn {
		t.Fatalf("killed %v, want only the stubborn one", killed)
	}
	if r.Add(new(int)) {
		t.Fatal("Add after Close")
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Fatal("the listener still accepts after Close")
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
