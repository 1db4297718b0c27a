// Package certstest gives tests a server certificate made the way `tern cert` makes one, so no
// test hand-rolls x509 templates of its own.
package certstest

import (
	"crypto/tls"
	"testing"

	"github.com/ternmq/tern/internal/certs"
)

// ServerPair creates a CA in a temporary directory and returns a server certificate it issued
// for hosts (127.0.0.1 when none are given).
func ServerPair(t testing.TB, hosts ...string) tls.Certificate {
	t.Helper()
	if len(hosts) == 0 {
		hosts = []string{"127.0.0.1"}
	}
	dir := t.TempDir()
	if err := certs.CreateCA(dir, "test CA", 0); err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err := certs.Issue(dir, dir, "server", certs.IssueOptions{Server: true, Hosts: hosts})
	if err != nil {
		t.Fatal(err)
	}
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
