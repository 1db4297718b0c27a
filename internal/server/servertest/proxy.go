package servertest

import (
	"io"
	"net"
	"sync"
	"testing"
)

// Proxy is a TCP proxy on loopback between two routers, which a test can cut: Close drops every
// connection and refuses new ones until Restore; Blackhole keeps connections open but carries no
// byte either way (a half-open link only keep alive finds), and new connections are accepted and
// carry nothing either, until Restore.
type Proxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	state proxyState
	pairs map[*proxyPair]struct{}
	wg    sync.WaitGroup
}

type proxyState int

const (
	proxyOpen proxyState = iota
	proxyClosed
	proxyBlackhole
)

type proxyPair struct {
	a, b net.Conn
	// gate is closed when the pair may carry bytes again; nil while it may.
	gate chan struct{}
}

// StartProxy listens on 127.0.0.1 and forwards to target; it stops when the test ends.
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{ln: ln, target: target, pairs: map[*proxyPair]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Stop)
	return p
}

// Addr is where to connect.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		state := p.state
		p.mu.Unlock()
		if state == proxyClosed {
			_ = c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		pair := &proxyPair{a: c, b: up}
		p.mu.Lock()
		if p.state == proxyBlackhole {
			pair.gate = make(chan struct{})
		}
		p.pairs[pair] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(pair, pair.a, pair.b)
		go p.pipe(pair, pair.b, pair.a)
	}
}

// pipe copies from src to dst, holding each chunk while the proxy blackholes.
func (p *Proxy) pipe(pair *proxyPair, src, dst net.Conn) {
	defer p.wg.Done()
	defer p.drop(pair)
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			gate := pair.gate
			p.mu.Unlock()
			if gate != nil {
				// Blackholed: what was read is lost, as on a dead path; the pair ends at Restore.
				<-gate
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if err != io.EOF {
				return
			}
			if cw, ok := dst.(interface{ CloseWrite() error }); ok {
				_ = cw.CloseWrite()
			}
			return
		}
	}
}

func (p *Proxy) drop(pair *proxyPair) {
	_ = pair.a.Close()
	_ = pair.b.Close()
	p.mu.Lock()
	delete(p.pairs, pair)
	p.mu.Unlock()
}

// Close drops every connection and refuses new ones.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.state = proxyClosed
	pairs := p.takePairs()
	p.mu.Unlock()
	for _, pair := range pairs {
		p.dropNow(pair)
	}
}

// Blackhole stops carrying bytes on every connection, open or new, without closing any.
func (p *Proxy) Blackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.state = proxyBlackhole
	for pair := range p.pairs {
		if pair.gate == nil {
			pair.gate = make(chan struct{})
		}
	}
}

// Restore carries connections again. Blackholed ones are dropped (their bytes were lost).
func (p *Proxy) Restore() {
	p.mu.Lock()
	p.state = proxyOpen
	var dead []*proxyPair
	for pair := range p.pairs {
		if pair.gate != nil {
			dead = append(dead, pair)
		}
	}
	p.mu.Unlock()
	for _, pair := range dead {
		p.dropNow(pair)
	}
}

// takePairs empties the set. The caller holds p.mu.
func (p *Proxy) takePairs() []*proxyPair {
	out := make([]*proxyPair, 0, len(p.pairs))
	for pair := range p.pairs {
		out = append(out, pair)
	}
	return out
}

func (p *Proxy) dropNow(pair *proxyPair) {
	p.mu.Lock()
	if pair.gate != nil {
		select {
		case <-pair.gate:
		default:
			close(pair.gate)
		}
	}
	p.mu.Unlock()
	_ = pair.a.Close()
	_ = pair.b.Close()
}

// Stop closes the proxy and waits for its goroutines.
func (p *Proxy) Stop() {
	_ = p.ln.Close()
	p.Close()
	p.wg.Wait()
}
