package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fixture is a CA with a server certificate and a directory for client certificates.
type fixture struct {
	caDir            string
	certFile, keyDir string
	keyFile          string
	pool             *x509.CertPool
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{caDir: newCA(t, "tern CA"), keyDir: t.TempDir()}
	var err error
	f.certFile, f.keyFile, err = Issue(f.caDir, f.keyDir, "server", IssueOptions{Server: true})
	if err != nil {
		t.Fatal(err)
	}
	f.pool = caPool(t, f.caDir)
	return f
}

func (f *fixture) caFile() string { return filepath.Join(f.caDir, CACertFile) }

// client issues a client certificate from the fixture's CA.
func (f *fixture) client(t *testing.T, name string, hosts ...string) tls.Certificate {
	t.Helper()
	return loadPair(t, f.caDir, name, IssueOptions{Hosts: hosts})
}

func loadPair(t *testing.T, caDir, name string, opts IssueOptions) tls.Certificate {
	t.Helper()
	certFile, keyFile, err := Issue(caDir, t.TempDir(), name, opts)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return pair
}

func (f *fixture) serverTLS(t *testing.T, o ServerTLSOptions) *ServerTLS {
	t.Helper()
	o.CertFile, o.KeyFile = f.certFile, f.keyFile
	s, err := NewServerTLS(o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// clientConfig trusts the fixture's CA. The client certificate, if any, is sent whatever CAs the
// server names as acceptable — crypto/tls would otherwise quietly withhold a certificate from an
// unknown CA, and the server's own verification would go untested.
func (f *fixture) clientConfig(cert *tls.Certificate) *tls.Config {
	c := &tls.Config{RootCAs: f.pool, ServerName: "localhost"}
	if cert != nil {
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	return c
}

// outcome is one handshake seen from both ends.
type outcome struct {
	server, client       tls.ConnectionState
	serverErr, clientErr error
}

func (o outcome) ok() bool { return o.serverErr == nil && o.clientErr == nil }

// handshake runs one real TLS handshake over a loopback TCP connection.
func handshake(t *testing.T, srv, cli *tls.Config) outcome {
	t.Helper()
	o, err := tryHandshake(srv, cli)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// tryHandshake is handshake for goroutines other than the test's, which must not call t.Fatal.
// The server writes a byte once it has accepted the client, and the client reads it: under TLS
// 1.3 the client finishes its handshake before the server has judged its certificate, so only
// the read shows a refusal.
func tryHandshake(srv, cli *tls.Config) (outcome, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return outcome{}, err
	}
	defer ln.Close()
	deadline := time.Now().Add(10 * time.Second)
	type result struct {
		cs  tls.ConnectionState
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer c.Close()
		_ = c.SetDeadline(deadline)
		tc := tls.Server(c, srv)
		err = tc.Handshake()
		if err == nil {
			_, err = tc.Write([]byte{1})
		}
		done <- result{tc.ConnectionState(), err}
	}()
	c, err := net.DialTimeout("tcp", ln.Addr().String(), 10*time.Second)
	if err != nil {
		_ = ln.Close()
		<-done
		return outcome{}, err
	}
	_ = c.SetDeadline(deadline)
	tc := tls.Client(c, cli)
	cerr := tc.Handshake()
	if cerr == nil {
		var b [1]byte
		_, cerr = io.ReadFull(tc, b[:])
	}
	ccs := tc.ConnectionState()
	_ = tc.Close()
	r := <-done
	return outcome{server: r.cs, client: ccs, serverErr: r.err, clientErr: cerr}, nil
}

var versions = []struct {
	name string
	v    uint16
}{{"TLS1.2", tls.VersionTLS12}, {"TLS1.3", tls.VersionTLS13}}

// forVersions runs fn once for each TLS version, with the client limited to it.
func forVersions(t *testing.T, fn func(t *testing.T, limit func(*tls.Config) *tls.Config)) {
	for _, v := range versions {
		t.Run(v.name, func(t *testing.T) {
			fn(t, func(c *tls.Config) *tls.Config { c.MinVersion, c.MaxVersion = v.v, v.v; return c })
		})
	}
}

func TestIdentityIsLowerCasedCN(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	s := f.serverTLS(t, ServerTLSOptions{ClientCAFile: f.caFile(), RequireClientCert: true})
	alice := f.client(t, "Alice")
	forVersions(t, func(t *testing.T, limit func(*tls.Config) *tls.Config) {
		o := handshake(t, s.Config(), limit(f.clientConfig(&alice)))
		if !o.ok() {
			t.Fatalf("handshake: server %v, client %v", o.serverErr, o.clientErr)
		}
		if got := Identity(o.server, ""); got != "alice" {
			t.Errorf("Identity = %q, want alice", got)
		}
		if got := s.Identity(o.server); got != "alice" {
			t.Errorf("ServerTLS.Identity = %q, want alice", got)
		}
		if o.server.Version < tls.VersionTLS12 {
			t.Errorf("negotiated version %x", o.server.Version)
		}
	})
}

func TestIdentityFromSAN(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	s := f.serverTLS(t, ServerTLSOptions{ClientCAFile: f.caFile(), RequireClientCert: true, IdentitySAN: SANEmail})
	cert := f.client(t, "Device-7", "Ops@Example.COM", "Dev7.Example.com", "spiffe://example.com/Dev/7", "second@example.com")
	o := handshake(t, s.Config(), f.clientConfig(&cert))
	if !o.ok() {
		t.Fatalf("handshake: server %v, client %v", o.serverErr, o.clientErr)
	}
	if got := s.Identity(o.server); got != "ops@example.com" {
		t.Errorf("email identity %q", got)
	}
	for san, want := range map[string]string{
		"":       "device-7",
		SANEmail: "ops@example.com",
		SANDNS:   "dev7.example.com",
		SANURI:   "spiffe://example.com/Dev/7", // a URI's path is case-sensitive
		"other":  "",
	} {
		if got := Identity(o.server, san); got != want {
			t.Errorf("Identity(%q) = %q, want %q", san, got, want)
		}
	}

	// A certificate without the chosen kind of SAN has no identity, rather than falling back to
	// the CN: the configuration asked for a SAN.
	bare := f.client(t, "bare")
	o = handshake(t, s.Config(), f.clientConfig(&bare))
	if !o.ok() {
		t.Fatalf("handshake: server %v, client %v", o.serverErr, o.clientErr)
	}
	if got := s.Identity(o.server); got != "" {
		t.Errorf("identity without an e-mail SAN: %q", got)
	}
}

func TestClientCertRefused(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	other := newCA(t, "other CA")
	cases := []struct {
		name string
		cert tls.Certificate
	}{
		{"another CA", loadPair(t, other, "mallory", IssueOptions{})},
		{"expired", expiredPair(t, f.caDir, "old")},
		{"server certificate", loadPair(t, f.caDir, "srv", IssueOptions{Server: true})},
	}
	for _, require := range []bool{true, false} {
		s := f.serverTLS(t, ServerTLSOptions{ClientCAFile: f.caFile(), RequireClientCert: require})
		for _, tc := range cases {
			forVersions(t, func(t *testing.T, limit func(*tls.Config) *tls.Config) {
				o := handshake(t, s.Config(), limit(f.clientConfig(&tc.cert)))
				if o.serverErr == nil || o.clientErr == nil {
					t.Errorf("%s (required %v): accepted; server %v, client %v", tc.name, require, o.serverErr, o.clientErr)
				}
			})
		}
	}
}

// expiredPair issues a client certificate whose validity ended yesterday.
func expiredPair(t *testing.T, caDir, name string) tls.Certificate {
	t.Helper()
	now := time.Now()
	certFile, keyFile, err := issue(caDir, t.TempDir(), name, IssueOptions{}, now.Add(-72*time.Hour), now.Add(-24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if !pair.Leaf.NotAfter.Before(now) {
		t.Fatalf("certificate not expired: %v", pair.Leaf.NotAfter)
	}
	return pair
}

func TestRequiredCertMissingRefused(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	s := f.serverTLS(t, ServerTLSOptions{ClientCAFile: f.caFile(), RequireClientCert: true})
	forVersions(t, func(t *testing.T, limit func(*tls.Config) *tls.Config) {
		o := handshake(t, s.Config(), limit(f.clientConfig(nil)))
		if o.serverErr == nil || o.clientErr == nil {
			t.Fatalf("no certificate accepted; server %v, client %v", o.serverErr, o.clientErr)
		}
	})
}

func TestOptionalClientCert(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	s := f.serverTLS(t, ServerTLSOptions{ClientCAFile: f.caFile()})
	forVersions(t, func(t *testing.T, limit func(*tls.Config) *tls.Config) {
		o := handshake(t, s.Config(), limit(f.clientConfig(nil)))
		if !o.ok() {
			t.Fatalf("no certificate refused: server %v, client %v", o.serverErr, o.clientErr)
		}
		if got := s.Identity(o.server); got != "" {
			t.Errorf("identity without a certificate: %q", got)
		}
		bob := f.client(t, "BOB")
		o = handshake(t, s.Config(), limit(f.clientConfig(&bob)))
		if !o.ok() {
			t.Fatalf("valid certificate refused: server %v, client %v", o.serverErr, o.clientErr)
		}
		if got := s.Identity(o.server); got != "bob" {
			t.Errorf("identity %q, want bob", got)
		}
	})
}

// TestNoClientCAsIgnoresClientCerts: without client CAs nothing is verified, so a certificate a
// client sends unasked gives no identity.
func TestNoClientCAsIgnoresClientCerts(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	s := f.serverTLS(t, ServerTLSOptions{})
	alice := f.client(t, "alice")
	o := handshake(t, s.Config(), f.clientConfig(&alice))
	if !o.ok() {
		t.Fatalf("handshake: server %v, client %v", o.serverErr, o.clientErr)
	}
	if len(o.server.PeerCertificates) != 0 || s.Identity(o.server) != "" {
		t.Errorf("client certificate taken without client CAs: %d certs, identity %q", len(o.server.PeerCertificates), s.Identity(o.server))
	}
}

func TestIdentityNeedsVerifiedChain(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	alice := f.client(t, "alice")
	// Peer certificates that were never verified (RequestClientCert-style) give no identity.
	cs := tls.ConnectionState{PeerCertificates: []*x509.Certificate{alice.Leaf}}
	if got := Identity(cs, ""); got != "" {
		t.Errorf("unverified certificate gave identity %q", got)
	}
	if got := Identity(tls.ConnectionState{}, SANDNS); got != "" {
		t.Errorf("empty state gave identity %q", got)
	}
}

func TestNewServerTLSErrors(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	garbage := filepath.Join(t.TempDir(), "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not PEM"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		what string
		o    ServerTLSOptions
	}{
		{"no files", ServerTLSOptions{}},
		{"missing cert", ServerTLSOptions{CertFile: filepath.Join(f.keyDir, "nope.crt"), KeyFile: f.keyFile}},
		{"key of another cert", ServerTLSOptions{CertFile: f.caFile(), KeyFile: f.keyFile}},
		{"require without CAs", ServerTLSOptions{CertFile: f.certFile, KeyFile: f.keyFile, RequireClientCert: true}},
		{"missing CA file", ServerTLSOptions{CertFile: f.certFile, KeyFile: f.keyFile, ClientCAFile: filepath.Join(f.keyDir, "nope")}},
		{"CA file without certificates", ServerTLSOptions{CertFile: f.certFile, KeyFile: f.keyFile, ClientCAFile: garbage}},
		{"unknown SAN kind", ServerTLSOptions{CertFile: f.certFile, KeyFile: f.keyFile, IdentitySAN: "ip"}},
	} {
		if _, err := NewServerTLS(tc.o); err == nil {
			t.Errorf("%s: NewServerTLS succeeded", tc.what)
		}
	}
	s := f.serverTLS(t, ServerTLSOptions{})
	if c := s.Config(); c.MinVersion != tls.VersionTLS12 || c.GetConfigForClient == nil {
		t.Errorf("Config: MinVersion %x, GetConfigForClient set %v", c.MinVersion, c.GetConfigForClient != nil)
	}
	// A client that offers only TLS 1.1 is refused.
	cli := f.clientConfig(nil)
	cli.MinVersion, cli.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	if o := handshake(t, s.Config(), cli); o.serverErr == nil {
		t.Error("TLS 1.1 accepted")
	}
}

func serial(o outcome) *big.Int {
	if len(o.client.PeerCertificates) == 0 {
		return nil
	}
	return o.client.PeerCertificates[0].SerialNumber
}

func TestReloadSwapsServerCertificate(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	s := f.serverTLS(t, ServerTLSOptions{})
	cfg := s.Config() // one Config for the listener's whole life, as a server would hold it
	before := handshake(t, cfg, f.clientConfig(nil))
	if !before.ok() || serial(before).Cmp(s.Certificate().SerialNumber) != 0 {
		t.Fatalf("before: %v %v", before.serverErr, before.clientErr)
	}
	if _, _, err := Issue(f.caDir, f.keyDir, "server", IssueOptions{Server: true}); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	after := handshake(t, cfg, f.clientConfig(nil))
	if !after.ok() {
		t.Fatalf("after: %v %v", after.serverErr, after.clientErr)
	}
	if serial(after).Cmp(serial(before)) == 0 {
		t.Fatal("a new handshake still sees the old certificate")
	}
	if serial(after).Cmp(readCert(t, f.certFile).SerialNumber) != 0 {
		t.Fatal("a new handshake does not see the certificate on disk")
	}
	if !strings.Contains(s.String(), serial(after).Text(16)) {
		t.Errorf("String %q does not name serial %x", s.String(), serial(after))
	}
}

func TestReloadFailureKeepsOldState(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	s := f.serverTLS(t, ServerTLSOptions{ClientCAFile: f.caFile(), RequireClientCert: true})
	cfg := s.Config()
	alice := f.client(t, "alice")
	want := s.Certificate().SerialNumber
	goodCert, _ := os.ReadFile(f.certFile)
	goodCA, _ := os.ReadFile(f.caFile())

	check := func(what string) {
		t.Helper()
		o := handshake(t, cfg, f.clientConfig(&alice))
		if !o.ok() {
			t.Fatalf("%s: handshake after a failed reload: server %v, client %v", what, o.serverErr, o.clientErr)
		}
		if serial(o).Cmp(want) != 0 || s.Identity(o.server) != "alice" {
			t.Fatalf("%s: serial %x identity %q after a failed reload", what, serial(o), s.Identity(o.server))
		}
	}
	breakFile := func(path string, data []byte) {
		t.Helper()
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := s.Reload(); err == nil {
			t.Fatalf("Reload with a broken %s succeeded", filepath.Base(path))
		}
	}

	breakFile(f.certFile, []byte("-----BEGIN CERTIFICATE-----\ngarbage\n"))
	check("garbage certificate")
	// A certificate from the CA that does not match the key.
	other, _, err := Issue(f.caDir, t.TempDir(), "server", IssueOptions{Server: true})
	if err != nil {
		t.Fatal(err)
	}
	otherPEM, _ := os.ReadFile(other)
	breakFile(f.certFile, otherPEM)
	check("mismatched key")
	if err := os.WriteFile(f.certFile, goodCert, 0o644); err != nil {
		t.Fatal(err)
	}
	// A CA file cut short while being replaced must not leave tern trusting nothing (or less).
	breakFile(f.caFile(), goodCA[:len(goodCA)/2])
	check("truncated client CA file")
	if err := os.Remove(f.caFile()); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err == nil {
		t.Fatal("Reload without the client CA file succeeded")
	}
	check("missing client CA file")
}

// TestReloadSwapsClientCAs: after the client CA file is replaced, new handshakes verify against
// the new CAs — including clients holding a session ticket from before, which must not resume
// their way past the change.
func TestReloadSwapsClientCAs(t *testing.T) {
	t.Parallel()
	forVersions(t, func(t *testing.T, limit func(*tls.Config) *tls.Config) {
		f := newFixture(t)
		caFile := filepath.Join(t.TempDir(), "clients.pem")
		copyFile(t, f.caFile(), caFile)
		s := f.serverTLS(t, ServerTLSOptions{ClientCAFile: caFile, RequireClientCert: true})
		cfg := s.Config()
		alice := f.client(t, "alice")
		cli := limit(f.clientConfig(&alice))
		cli.ClientSessionCache = tls.NewLRUClientSessionCache(4)

		for i, wantResume := range []bool{false, true} {
			o := handshake(t, cfg, cli)
			if !o.ok() {
				t.Fatalf("handshake %d: server %v, client %v", i, o.serverErr, o.clientErr)
			}
			if o.server.DidResume != wantResume {
				t.Fatalf("handshake %d: resumed %v, want %v", i, o.server.DidResume, wantResume)
			}
			if got := s.Identity(o.server); got != "alice" {
				t.Fatalf("handshake %d (resumed %v): identity %q", i, o.server.DidResume, got)
			}
		}

		other := newCA(t, "other CA")
		copyFile(t, filepath.Join(other, CACertFile), caFile)
		if err := s.Reload(); err != nil {
			t.Fatal(err)
		}
		if o := handshake(t, cfg, cli); o.serverErr == nil || o.clientErr == nil {
			t.Fatalf("client of the removed CA accepted (resumed %v)", o.server.DidResume)
		}
		carol := loadPair(t, other, "carol", IssueOptions{})
		o := handshake(t, cfg, f.clientConfig(&carol))
		if !o.ok() || s.Identity(o.server) != "carol" {
			t.Fatalf("client of the new CA: server %v, client %v, identity %q", o.serverErr, o.clientErr, s.Identity(o.server))
		}
	})
}

// TestReloadDuringHandshakes reloads while clients connect; under -race this checks that the
// swap is safe and that every handshake sees one whole set of files.
func TestReloadDuringHandshakes(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	s := f.serverTLS(t, ServerTLSOptions{ClientCAFile: f.caFile(), RequireClientCert: true})
	cfg := s.Config()
	alice := f.client(t, "alice")
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for range 4 {
		wg.Go(func() {
			for range 8 {
				o, err := tryHandshake(cfg, f.clientConfig(&alice))
				if err != nil {
					errs <- err
					return
				}
				if !o.ok() {
					errs <- errors.Join(o.serverErr, o.clientErr)
					return
				}
				if s.Identity(o.server) != "alice" {
					errs <- errors.New("identity " + s.Identity(o.server))
					return
				}
			}
		})
	}
	for range 20 {
		if err := s.Reload(); err != nil {
			t.Error(err)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
