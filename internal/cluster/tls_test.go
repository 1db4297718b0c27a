package cluster

import (
	"crypto/tls"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/certs"
)

// Node links over mutual TLS: two node certificates link up, and the identity of the
// certificate is the node id. A user's client certificate from the same CA is refused, and so is
// a node that claims another node's id.
func TestMutualTLSBetweenNodes(t *testing.T) {
	dir := t.TempDir()
	if err := certs.CreateCA(dir, "test CA", 0); err != nil {
		t.Fatal(err)
	}
	issue := func(name string, o certs.IssueOptions) (string, string) {
		c, k, err := certs.Issue(dir, dir, name, o)
		if err != nil {
			t.Fatal(err)
		}
		return c, k
	}
	ca := filepath.Join(dir, certs.CACertFile)
	c1, k1 := issue("n1", certs.IssueOptions{Node: true})
	c2, k2 := issue("n2", certs.IssueOptions{Node: true})
	cu, ku := issue("alice", certs.IssueOptions{})
	if _, _, err := TLSConfigs(cu, ku, ca); err == nil {
		t.Fatal("a user's certificate accepted as a node's")
	}
	s1, cl1, err := TLSConfigs(c1, k1, ca)
	if err != nil {
		t.Fatal(err)
	}
	_, cl2, err := TLSConfigs(c2, k2, ca)
	if err != nil {
		t.Fatal(err)
	}
	identity := func(cs tls.ConnectionState) string { return certs.Identity(cs, "") }
	n := &Node{cfg: Config{NodeID: "n1", Listen: "127.0.0.1:0", ServerTLS: s1, ClientTLS: cl1, Identity: identity}}
	n.cfg.defaults()
	n.log = n.cfg.Log
	got := make(chan string, 4)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				tc := tls.Server(c, s1)
				if err := tc.Handshake(); err != nil || !nodeCertificate(tc.ConnectionState()) {
					got <- "refused"
					_ = c.Close()
					return
				}
				got <- identity(tc.ConnectionState())
				_ = c.Close()
			}()
		}
	}()
	dialer := &Node{cfg: Config{Listen: "127.0.0.1:0", ClientTLS: cl2}}
	c, err := dialer.dial(ln.Addr().String(), connLink, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	if id := <-got; id != "n2" {
		t.Fatalf("node identity %q", id)
	}
	// A user's client certificate does not make a node.
	ucert, _ := tls.LoadX509KeyPair(cu, ku)
	ucfg := cl2.Clone()
	ucfg.Certificates = []tls.Certificate{ucert}
	user := &Node{cfg: Config{Listen: "127.0.0.1:0", ClientTLS: ucfg}}
	if c, err := user.dial(ln.Addr().String(), connLink, 5*time.Second); err == nil {
		_ = c.Close()
	}
	if r := <-got; r != "refused" {
		t.Fatalf("user certificate: %q", r)
	}
}
