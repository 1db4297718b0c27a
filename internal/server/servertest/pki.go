package servertest

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/certs"
)

// PKI is a test certificate authority in a temporary directory, with a server certificate for
// 127.0.0.1 ("server.crt", "server.key") and client certificates made on demand.
type PKI struct {
	t   testing.TB
	Dir string
}

// NewPKI makes the CA and the server certificate.
func NewPKI(t testing.TB) *PKI {
	t.Helper()
	p := &PKI{t: t, Dir: t.TempDir()}
	if err := certs.CreateCA(p.Dir, "test CA", 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, _, err := certs.Issue(p.Dir, p.Dir, "server", certs.IssueOptions{Server: true, Hosts: []string{"127.0.0.1"}}); err != nil {
		t.Fatal(err)
	}
	return p
}

// CA is the CA certificate's file.
func (p *PKI) CA() string { return filepath.Join(p.Dir, certs.CACertFile) }

// Server returns the server certificate and key files.
func (p *PKI) Server() (certFile, keyFile string) {
	return filepath.Join(p.Dir, "server.crt"), filepath.Join(p.Dir, "server.key")
}

// Client issues a client certificate whose CN is name and returns its files.
func (p *PKI) Client(name string) (certFile, keyFile string) {
	p.t.Helper()
	certFile, keyFile = filepath.Join(p.Dir, name+".crt"), filepath.Join(p.Dir, name+".key")
	if _, _, err := certs.Issue(p.Dir, p.Dir, name, certs.IssueOptions{}); err != nil {
		p.t.Fatal(err)
	}
	return certFile, keyFile
}
