package cluster

import (
	"crypto/tls"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/certs"
)

// Node link TLS read again: after the node's files are replaced by a new certificate from the
// same CA and ReloadTLS, a new link presents the new certificate; a broken file on a later
// reload is an error and the certificate in use stays.
func TestNodeTLSReload(t *testing.T) {
	dir, out := t.TempDir(), t.TempDir()
	if err := certs.CreateCA(dir, "test CA", 0); err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(dir, certs.CACertFile)
	issue := func(name, outDir string) (string, string) {
		c, k, err := certs.Issue(dir, outDir, name, certs.IssueOptions{Node: true})
		if err != nil {
			t.Fatal(err)
		}
		return c, k
	}
	c1, k1 := issue("n1", out)
	c2, k2 := issue("n2", dir)
	s2, _, err := TLSConfigs(c2, k2, ca)
	if err != nil {
		t.Fatal(err)
	}
	nt, err := NewNodeTLS(c1, k1, ca)
	if err != nil {
		t.Fatal(err)
	}
	n := &Node{cfg: Config{NodeID: "n1", Listen: "127.0.0.1:0", TLS: nt}}
	n.cfg.defaults()
	n.log = n.cfg.Log

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	serials := make(chan *big.Int, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			tc := tls.Server(c, s2)
			if err := tc.Handshake(); err != nil {
				serials <- nil
			} else {
				serials <- tc.ConnectionState().PeerCertificates[0].SerialNumber
			}
			_ = c.Close()
		}
	}()
	presented := func() *big.Int {
		t.Helper()
		c, err := n.dial(ln.Addr().String(), connLink, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.Close()
		select {
		case s := <-serials:
			if s == nil {
				t.Fatal("handshake failed")
			}
			return s
		case <-time.After(10 * time.Second):
			t.Fatal("no link within 10 s")
			return nil
		}
	}
	first := presented()
	if c, k := issue("n1", out); c != c1 || k != k1 {
		t.Fatalf("issued again into other files: %s %s", c, k)
	}
	if err := n.ReloadTLS(); err != nil {
		t.Fatal(err)
	}
	second := presented()
	if second.Cmp(first) == 0 {
		t.Fatalf("after the reload the link still presents serial %s", first)
	}
	if err := os.WriteFile(c1, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := n.ReloadTLS(); err == nil {
		t.Fatal("a broken certificate file reloaded without an error")
	}
	if third := presented(); third.Cmp(second) != 0 {
		t.Fatalf("after a failed reload the link presents serial %s, want %s", third, second)
	}
}
