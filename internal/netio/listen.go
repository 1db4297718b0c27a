package netio

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"
)

// Identify names the client of a TLS connection from its verified certificate ("" when it has
// none). Each TLS listener has its own, since each may trust its own CA.
type Identify func(tls.ConnectionState) string

// TLSState returns the TLS state of a connection: nc's own when it is a TLS connection (a
// *tls.Conn or a tlsrec.Conn), else cs, the state of TLS the face cannot see (a WebSocket on an
// HTTPS request).
func TLSState(nc net.Conn, cs *tls.ConnectionState) (tls.ConnectionState, bool) {
	if tc, ok := nc.(interface{ ConnectionState() tls.ConnectionState }); ok {
		return tc.ConnectionState(), true
	}
	if cs != nil {
		return *cs, true
	}
	return tls.ConnectionState{}, false
}

// CertIdentity is the identity the client certificate of a connection gives, "" without one (or
// without identify: a listener that takes no client certificates).
func CertIdentity(nc net.Conn, cs *tls.ConnectionState, identify Identify) string {
	if identify == nil {
		return ""
	}
	if st, ok := TLSState(nc, cs); ok {
		return identify(st)
	}
	return ""
}

// Registry keeps a face's listeners and open connections, so that it can stop accepting and end
// every connection when it closes. C is the face's connection type.
type Registry[C comparable] struct {
	log *slog.Logger

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     connSet[C]
	closed    bool
	wg        sync.WaitGroup
}

// NewRegistry returns an empty registry that logs accept failures to log.
func NewRegistry[C comparable](log *slog.Logger) *Registry[C] {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Registry[C]{log: log, listeners: map[net.Listener]struct{}{}}
}

// Serve accepts connections on ln and hands each to serve on a goroutine of its own, until ln or
// the registry closes. Failures to accept (out of file descriptors and the like) are logged and
// retried after a growing pause rather than in a tight loop.
func (r *Registry[C]) Serve(ln net.Listener, serve func(net.Conn)) error {
	return serveLoop(r, ln, ln.Accept, serve)
}

// serveLoop registers ln, then hands what accept returns to serve on a goroutine of its own until
// ln or the registry closes, pausing after a failure.
func serveLoop[C comparable, T any](r *Registry[C], ln net.Listener, accept func() (T, error), serve func(T)) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return net.ErrClosed
	}
	r.listeners[ln] = struct{}{}
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.listeners, ln)
		r.mu.Unlock()
	}()
	var backoff time.Duration
	for {
		conn, err := accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			r.log.Warn("accept failed", "addr", ln.Addr().String(), "err", err, "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		go serve(conn)
	}
}

// Add registers an open connection; false when the registry is closed (the caller closes it).
// Every Add that succeeds needs one Remove.
func (r *Registry[C]) Add(c C) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	if r.conns.add(c) {
		r.wg.Add(1)
	}
	return true
}

// Remove forgets a connection that has ended.
func (r *Registry[C]) Remove(c C) {
	r.mu.Lock()
	ok := r.conns.remove(c)
	r.mu.Unlock()
	if ok {
		r.wg.Done()
	}
}

// All lists the open connections.
func (r *Registry[C]) All() []C {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.conns.appendTo(make([]C, 0, r.conns.len()))
}

// Len is the number of open connections.
func (r *Registry[C]) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.conns.len()
}

// Close stops the listeners, asks every connection to end (goodbye), and waits for them to be
// removed; those still open after grace are ended at once (kill) and waited for.
func (r *Registry[C]) Close(goodbye, kill func(C), grace time.Duration) {
	r.mu.Lock()
	r.closed = true
	for ln := range r.listeners {
		_ = ln.Close()
	}
	r.mu.Unlock()
	conns := r.All()
	for _, c := range conns {
		goodbye(c)
	}
	done := make(chan struct{})
	go func() {
		r.wg.Wait()
		close(done)
	}()
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		// Clients that do not take their goodbye are cut off.
		for _, c := range r.All() {
			kill(c)
		}
		<-done
	}
}
