package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// One listener serves raft and the node links. Whoever dials writes one byte first, after the
// TLS handshake when there is TLS: connRaft hands the connection to raft's NetworkTransport,
// connLink to the links. A connection that says nothing within handshakeTimeout is closed.
const (
	connRaft = 'R'
	connLink = 'L'

	handshakeTimeout = 10 * time.Second
	dialTimeout      = 5 * time.Second
)

// mux accepts on the cluster listener and sorts connections.
type mux struct {
	n    *Node
	ln   net.Listener
	raft *streamLayer // nil when raft has a transport of its own (tests)
	wg   sync.WaitGroup
	// ready is closed once raft exists: connections that arrive earlier (a restarted node's
	// peers reconnect at once) wait for it, since sorting them asks raft for the membership.
	ready     chan struct{}
	done      chan struct{}
	readyOnce sync.Once
	doneOnce  sync.Once
}

// open lets accepted connections through (see ready).
func (m *mux) open() { m.readyOnce.Do(func() { close(m.ready) }) }

// listen opens the cluster listener; layer, when not nil, gets raft's stream layer over it.
func listen(n *Node, layer **streamLayer) (*mux, error) {
	ln := n.cfg.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", n.cfg.Listen); err != nil {
			return nil, fmt.Errorf("cluster: listen on %s: %w", n.cfg.Listen, err)
		}
	}
	m := &mux{n: n, ln: ln, ready: make(chan struct{}), done: make(chan struct{})}
	if _, port, _ := net.SplitHostPort(n.cfg.Advertise); port == "0" {
		n.cfg.Advertise = ln.Addr().String()
	}
	if layer != nil {
		m.raft = &streamLayer{n: n, addr: ln.Addr(), conns: make(chan net.Conn, 16), done: make(chan struct{})}
		*layer = m.raft
	}
	m.wg.Add(1)
	go m.accept()
	return m, nil
}

// Addr is the bound address (a port 0 in the configuration is chosen here).
func (m *mux) Addr() string { return m.ln.Addr().String() }

func (m *mux) accept() {
	defer m.wg.Done()
	var backoff time.Duration
	for {
		c, err := m.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			m.n.log.Warn("cluster: accept failed", "err", err)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		go m.sort(c)
	}
}

// sort finishes the handshake of one accepted connection and hands it on.
func (m *mux) sort(c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(handshakeTimeout))
	peer := ""
	if stls, _ := m.n.tlsConfigs(); stls != nil {
		tc := tls.Server(c, stls)
		if err := tc.Handshake(); err != nil {
			m.n.log.Warn("cluster: TLS handshake refused", "remote", c.RemoteAddr().String(), "err", err)
			_ = c.Close()
			return
		}
		cs := tc.ConnectionState()
		if !nodeCertificate(cs) {
			m.n.log.Warn("cluster: refused a certificate that is not a node certificate", "remote", c.RemoteAddr().String())
			_ = c.Close()
			return
		}
		peer = m.n.cfg.Identity(cs)
		c = tc
	}
	var kind [1]byte
	if _, err := io.ReadFull(c, kind[:]); err != nil {
		_ = c.Close()
		return
	}
	select {
	case <-m.ready:
	case <-m.done:
		_ = c.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})
	switch {
	case kind[0] == connRaft && m.raft != nil:
		// Raft's peers are members; a node not yet a member itself (joining) has no list to
		// check against and takes any node certificate.
		if peer != "" && m.n.isMember(m.n.cfg.NodeID) && !m.n.isMember(peer) {
			m.n.log.Warn("cluster: refused raft from a node that is not a member", "identity", peer)
			_ = c.Close()
			return
		}
		select {
		case m.raft.conns <- c:
		case <-m.raft.done:
			_ = c.Close()
		}
	case kind[0] == connLink:
		m.n.links.serveInbound(c, peer)
	default:
		_ = c.Close()
	}
}

func (m *mux) close() {
	m.doneOnce.Do(func() { close(m.done) })
	_ = m.ln.Close()
	if m.raft != nil {
		m.raft.closeOnce.Do(func() { close(m.raft.done) })
	}
	m.wg.Wait()
}

// dial connects to a node's cluster address for kind, with TLS when configured. It dials from
// the listener's address when that names one interface, so a node's connections come from the
// address its peers know it by.
func (n *Node) dial(addr string, kind byte, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	if host, _, err := net.SplitHostPort(n.cfg.Listen); err == nil {
		if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
			d.LocalAddr = &net.TCPAddr{IP: ip}
		}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, ctls := n.tlsConfigs(); ctls != nil {
		host, _, _ := net.SplitHostPort(addr)
		cfg := ctls.Clone()
		cfg.ServerName = host
		tc := tls.Client(c, cfg)
		if err := tc.Handshake(); err != nil {
			_ = c.Close()
			return nil, err
		}
		if !nodeCertificate(tc.ConnectionState()) {
			_ = c.Close()
			return nil, fmt.Errorf("cluster: %s presented a certificate that is not a node certificate", addr)
		}
		c = tc
	}
	if _, err := c.Write([]byte{kind}); err != nil {
		_ = c.Close()
		return nil, err
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

// nodeCertificate reports whether a verified peer certificate is a node's: good for both
// serving and dialing (`tern cert issue NAME --node`). A client certificate of a user from the
// same CA is not, so it cannot pose as a node.
func nodeCertificate(cs tls.ConnectionState) bool {
	if len(cs.VerifiedChains) == 0 || len(cs.PeerCertificates) == 0 {
		return false
	}
	eku := cs.PeerCertificates[0].ExtKeyUsage
	return slices.Contains(eku, x509.ExtKeyUsageServerAuth) && slices.Contains(eku, x509.ExtKeyUsageClientAuth)
}

// streamLayer is raft.StreamLayer over the shared listener.
type streamLayer struct {
	n         *Node
	addr      net.Addr
	conns     chan net.Conn
	done      chan struct{}
	closeOnce sync.Once
}

func (s *streamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-s.conns:
		return c, nil
	case <-s.done:
		return nil, net.ErrClosed
	}
}

// Close is raft's: the listener itself closes with the node.
func (s *streamLayer) Close() error {
	s.closeOnce.Do(func() { close(s.done) })
	return nil
}

func (s *streamLayer) Addr() net.Addr { return advertised{s.n.cfg.Advertise} }

func (s *streamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return s.n.dial(string(addr), connRaft, timeout)
}

// advertised is the address raft gives its peers for this node.
type advertised struct{ s string }

func (a advertised) Network() string { return "tcp" }
func (a advertised) String() string  { return a.s }
