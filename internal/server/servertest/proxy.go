package servertest

import (
	"testing"

	"github.com/ternmq/tern/internal/tcpproxy"
)

// StartProxy starts a TCP proxy on 127.0.0.1 forwarding to target, which a test cuts (Cut),
// blackholes (Blackhole) and restores (Restore) to break a link between routers; it stops when
// the test ends.
func StartProxy(t testing.TB, target string) *tcpproxy.Proxy {
	t.Helper()
	p, err := tcpproxy.Listen("127.0.0.1:0", target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return p
}
