package main

import (
	"testing"

	"github.com/ternmq/tern/internal/tcpproxy"
)

// proxy forwards TCP connections to one node's cluster listener. The nodes advertise their
// proxies' addresses, so every raft and link connection to a node passes its proxy; and each
// node dials from its own loopback address (127.0.0.N), so proxies can tell where a connection
// comes from. Partitioning a node closes and refuses everything to it and everything from it.
type proxy struct{ *tcpproxy.Proxy }

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	p, err := tcpproxy.Listen("127.0.0.1:0", target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return &proxy{p}
}

func (p *proxy) addr() string { return p.Addr() }

// block refuses connections from src ("*": from everybody) and closes those it has, or takes
// them again.
func (p *proxy) block(src string, on bool) {
	switch {
	case src != "*":
		p.Block(src, on)
	case on:
		p.Cut()
	default:
		p.Restore()
	}
}
