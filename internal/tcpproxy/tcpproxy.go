// Package tcpproxy is a TCP proxy on loopback that tests and benchmarks put between routers to
// break their links the ways networks do: Cut closes every connection and refuses new ones (a
// link that is down), Blackhole keeps connections open but carries no byte (a half-open link that
// only keep alive finds), and Block refuses one source address (a partition of one node). It
// exists so that multi-process tests never touch the machine's network.
package tcpproxy

import (
	"io"
	"net"
	"sync"
)

// Proxy forwards every connection it accepts to one target.
type Proxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	state   state
	blocked map[string]bool // source IPs refused
	pairs   map[*pair]struct{}
	wg      sync.WaitGroup
}

type state int

const (
	open state = iota
	cut
	blackhole
)

// pair is one accepted connection and its connection to the target.
type pair struct {
	a, b net.Conn
	src  string // the accepted connection's source IP
	// gate is closed when the pair may carry bytes again; nil while it may.
	gate chan struct{}
}

// Listen starts a proxy listening on listen (host:port; port 0 picks one) forwarding to target.
func Listen(listen, target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, blocked: map[string]bool{}, pairs: map[*pair]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is where to connect.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Open counts the connections the proxy carries now.
func (p *Proxy) Open() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.pairs)
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		src, _, _ := net.SplitHostPort(c.RemoteAddr().String())
		p.mu.Lock()
		refused := p.state == cut || p.blocked[src]
		p.mu.Unlock()
		if refused {
			_ = c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		pr := &pair{a: c, b: up, src: src}
		p.mu.Lock()
		if p.state == blackhole {
			pr.gate = make(chan struct{})
		}
		p.pairs[pr] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(pr, pr.a, pr.b)
		go p.pipe(pr, pr.b, pr.a)
	}
}

// pipe copies from src to dst, holding each chunk while the proxy blackholes the pair.
func (p *Proxy) pipe(pr *pair, src, dst net.Conn) {
	defer p.wg.Done()
	defer p.drop(pr)
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			gate := pr.gate
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
			if err == io.EOF {
				if cw, ok := dst.(interface{ CloseWrite() error }); ok {
					_ = cw.CloseWrite()
				}
			}
			return
		}
	}
}

func (p *Proxy) drop(pr *pair) {
	_ = pr.a.Close()
	_ = pr.b.Close()
	p.mu.Lock()
	delete(p.pairs, pr)
	p.mu.Unlock()
}

// Cut closes every connection and refuses new ones until Restore.
func (p *Proxy) Cut() {
	p.mu.Lock()
	p.state = cut
	p.mu.Unlock()
	p.end(func(*pair) bool { return true })
}

// Blackhole stops carrying bytes on every connection, open or new, without closing any, until
// Restore.
func (p *Proxy) Blackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.state = blackhole
	for pr := range p.pairs {
		if pr.gate == nil {
			pr.gate = make(chan struct{})
		}
	}
}

// Restore carries connections again after Cut or Blackhole. Blackholed connections are closed
// (their bytes were lost); sources refused by Block stay refused.
func (p *Proxy) Restore() {
	p.mu.Lock()
	p.state = open
	p.mu.Unlock()
	p.end(func(pr *pair) bool { return pr.gate != nil })
}

// Block refuses connections from the source IP src and closes those it carries (on), or takes
// them again (!on).
func (p *Proxy) Block(src string, on bool) {
	p.mu.Lock()
	if !on {
		delete(p.blocked, src)
		p.mu.Unlock()
		return
	}
	p.blocked[src] = true
	p.mu.Unlock()
	p.end(func(pr *pair) bool { return pr.src == src })
}

// end closes the pairs which match: their pipes see the close, drop them and return.
func (p *Proxy) end(which func(*pair) bool) {
	p.mu.Lock()
	var ending []*pair
	for pr := range p.pairs {
		if which(pr) {
			ending = append(ending, pr)
			if pr.gate != nil {
				// The gate stays set: a pipe that reads what was written into the blackhole
				// after this must drop it too, not forward it before the close below.
				select {
				case <-pr.gate:
				default:
					close(pr.gate)
				}
			}
		}
	}
	p.mu.Unlock()
	for _, pr := range ending {
		_ = pr.a.Close()
		_ = pr.b.Close()
	}
}

// Stop closes the listener and every connection and waits for the proxy's goroutines.
func (p *Proxy) Stop() {
	_ = p.ln.Close()
	p.Cut()
	p.wg.Wait()
}
