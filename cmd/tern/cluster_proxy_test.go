package main

import (
	"io"
	"net"
	"sync"
	"testing"
)

// proxy forwards TCP connections to one node's cluster listener. The nodes advertise their
// proxies' addresses, so every raft and link connection to a node passes its proxy; and each
// node dials from its own loopback address (127.0.0.N), so proxies can tell where a connection
// comes from. Partitioning a node closes and refuses everything to it and everything from it.
type proxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	blocked map[string]bool // source IPs refused; "*" refuses everybody
	conns   map[net.Conn]string
	wg      sync.WaitGroup
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, blocked: map[string]bool{}, conns: map[net.Conn]string{}}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(p.close)
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		src, _, _ := net.SplitHostPort(c.RemoteAddr().String())
		p.mu.Lock()
		if p.blocked["*"] || p.blocked[src] {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		p.conns[c], p.conns[up] = src, src
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(c, up)
		go p.pipe(up, c)
	}
}

func (p *proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	_, _ = io.Copy(dst, src)
	_ = dst.Close()
	_ = src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}

// block refuses connections from src ("*": from everybody) and closes those it has.
func (p *proxy) block(src string, on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !on {
		delete(p.blocked, src)
		return
	}
	p.blocked[src] = true
	for c, from := range p.conns {
		if src == "*" || from == src {
			_ = c.Close()
		}
	}
}

func (p *proxy) close() {
	_ = p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
