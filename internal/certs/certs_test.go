package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// newCA makes a CA in a fresh directory and returns the directory.
func newCA(t *testing.T, name string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ca")
	if err := CreateCA(dir, name, 0); err != nil {
		t.Fatalf("CreateCA: %v", err)
	}
	return dir
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("%s: no CERTIFICATE block", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return c
}

func caPool(t *testing.T, caDir string) *x509.CertPool {
	t.Helper()
	p := x509.NewCertPool()
	p.AddCert(readCert(t, filepath.Join(caDir, CACertFile)))
	return p
}

func checkMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	if runtime.GOOS == "windows" {
		return // no Unix permission bits
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("%s: mode %v, want %v", path, got, want)
	}
}

func TestCreateCA(t *testing.T) {
	t.Parallel()
	dir := newCA(t, "tern CA")
	ca := readCert(t, filepath.Join(dir, CACertFile))
	if !ca.IsCA || ca.Subject.CommonName != "tern CA" || ca.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("CA certificate: IsCA %v CN %q key usage %v", ca.IsCA, ca.Subject.CommonName, ca.KeyUsage)
	}
	if ca.MaxPathLen != 0 || !ca.MaxPathLenZero {
		t.Errorf("path length %d (zero %v), want 0", ca.MaxPathLen, ca.MaxPathLenZero)
	}
	pub, ok := ca.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Errorf("CA key %T, want ECDSA P-256", ca.PublicKey)
	}
	if d := time.Until(ca.NotAfter) - DefaultCAValidity; d > time.Minute || d < -time.Minute {
		t.Errorf("CA expires %v, want in %v", ca.NotAfter, DefaultCAValidity)
	}
	if _, err := ca.Verify(x509.VerifyOptions{Roots: caPool(t, dir)}); err != nil {
		t.Errorf("self-signed CA does not verify: %v", err)
	}
	checkMode(t, filepath.Join(dir, CAKeyFile), 0o600)
	checkMode(t, filepath.Join(dir, CACertFile), 0o644)
	if _, _, err := LoadCA(dir); err != nil {
		t.Errorf("LoadCA: %v", err)
	}
}

func TestCreateCARefusesToOverwrite(t *testing.T) {
	t.Parallel()
	dir := newCA(t, "first")
	before, _ := os.ReadFile(filepath.Join(dir, CAKeyFile))
	err := CreateCA(dir, "second", time.Hour)
	if !errors.Is(err, ErrCAExists) {
		t.Fatalf("second CreateCA: %v, want ErrCAExists", err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if string(before) != string(after) {
		t.Fatal("refused CreateCA changed ca.key")
	}
	if got := readCert(t, filepath.Join(dir, CACertFile)).Subject.CommonName; got != "first" {
		t.Fatalf("CN %q after a refused CreateCA", got)
	}

	// A lone ca.key (a half-copied CA, say) is protected too, and nothing is left behind.
	lone := t.TempDir()
	if err := os.WriteFile(filepath.Join(lone, CAKeyFile), []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := CreateCA(lone, "x", 0); !errors.Is(err, ErrCAExists) {
		t.Fatalf("CreateCA over a lone ca.key: %v", err)
	}
	if _, err := os.Stat(filepath.Join(lone, CACertFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("ca.crt written beside a foreign ca.key: %v", err)
	}

	if err := ReplaceCA(dir, "second", 0); err != nil {
		t.Fatalf("ReplaceCA: %v", err)
	}
	if got := readCert(t, filepath.Join(dir, CACertFile)).Subject.CommonName; got != "second" {
		t.Fatalf("CN %q after ReplaceCA", got)
	}
	checkMode(t, filepath.Join(dir, CAKeyFile), 0o600)
	if _, _, err := LoadCA(dir); err != nil {
		t.Fatalf("LoadCA after ReplaceCA: %v", err)
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".*tmp*"))
	if len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}

func TestCreateCABadArguments(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tc := range []struct {
		name     string
		validity time.Duration
	}{
		{"", 0},
		{"  ", 0},
		{strings.Repeat("x", 65), 0},
		{"ok", -time.Hour},
	} {
		if err := CreateCA(dir, tc.name, tc.validity); err == nil {
			t.Errorf("CreateCA(%q, %v) succeeded", tc.name, tc.validity)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("refused CreateCA wrote %d files", len(ents))
	}
}

func TestIssueServer(t *testing.T) {
	t.Parallel()
	caDir := newCA(t, "tern CA")
	out := t.TempDir()
	certFile, keyFile, err := Issue(caDir, out, "server", IssueOptions{Server: true})
	if err != nil {
		t.Fatal(err)
	}
	if certFile != filepath.Join(out, "server.crt") || keyFile != filepath.Join(out, "server.key") {
		t.Errorf("paths %s %s", certFile, keyFile)
	}
	checkMode(t, keyFile, 0o600)
	c := readCert(t, certFile)
	if !slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) || c.IsCA {
		t.Errorf("ext key usage %v, IsCA %v", c.ExtKeyUsage, c.IsCA)
	}
	if !slices.Equal(c.DNSNames, []string{"localhost"}) || len(c.IPAddresses) != 2 ||
		!c.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) || !c.IPAddresses[1].Equal(net.IPv6loopback) {
		t.Errorf("default SANs: DNS %v IP %v", c.DNSNames, c.IPAddresses)
	}
	for _, host := range []string{"localhost", "127.0.0.1", "::1"} {
		_, err := c.Verify(x509.VerifyOptions{Roots: caPool(t, caDir), DNSName: host})
		if err != nil {
			t.Errorf("verify for %s: %v", host, err)
		}
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: caPool(t, caDir), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Error("a server certificate verified for client authentication")
	}
	if d := time.Until(c.NotAfter) - DefaultValidity; d > time.Minute || d < -time.Minute {
		t.Errorf("expires %v, want in %v", c.NotAfter, DefaultValidity)
	}

	certFile, _, err = Issue(caDir, out, "edge", IssueOptions{Server: true, Hosts: []string{"broker.example.com", "*.mq.example.com", "10.0.0.7", "[fe80::1]"}})
	if err != nil {
		t.Fatal(err)
	}
	c = readCert(t, certFile)
	if !slices.Equal(c.DNSNames, []string{"broker.example.com", "*.mq.example.com"}) || len(c.IPAddresses) != 2 {
		t.Errorf("SANs: DNS %v IP %v", c.DNSNames, c.IPAddresses)
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: caPool(t, caDir), DNSName: "a.mq.example.com"}); err != nil {
		t.Errorf("wildcard: %v", err)
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: caPool(t, caDir), DNSName: "localhost"}); err == nil {
		t.Error("explicit hosts still carry localhost")
	}
}

func TestIssueClient(t *testing.T) {
	t.Parallel()
	caDir := newCA(t, "tern CA")
	certFile, _, err := Issue(caDir, caDir, "Alice", IssueOptions{
		Hosts:    []string{"alice@example.com", "spiffe://example.com/alice"},
		Validity: 48 * time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	c := readCert(t, certFile)
	if c.Subject.CommonName != "Alice" || !slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
		t.Errorf("CN %q ext key usage %v", c.Subject.CommonName, c.ExtKeyUsage)
	}
	if !slices.Equal(c.EmailAddresses, []string{"alice@example.com"}) || len(c.URIs) != 1 || c.URIs[0].String() != "spiffe://example.com/alice" {
		t.Errorf("SANs: email %v URI %v", c.EmailAddresses, c.URIs)
	}
	if len(c.DNSNames)+len(c.IPAddresses) != 0 {
		t.Errorf("a client certificate got host SANs: %v %v", c.DNSNames, c.IPAddresses)
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: caPool(t, caDir), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("verify: %v", err)
	}
	if d := time.Until(c.NotAfter) - 48*time.Hour; d > time.Minute || d < -time.Minute {
		t.Errorf("expires %v, want in 48h", c.NotAfter)
	}
}

func TestIssueSerialsAreRandom128Bit(t *testing.T) {
	t.Parallel()
	caDir := newCA(t, "tern CA")
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	seen := map[string]bool{}
	for i := range 8 {
		certFile, _, err := Issue(caDir, caDir, fmt.Sprintf("client-%d", i), IssueOptions{})
		if err != nil {
			t.Fatal(err)
		}
		s := readCert(t, certFile).SerialNumber
		if s.Sign() <= 0 || s.Cmp(limit) >= 0 || seen[s.String()] {
			t.Fatalf("serial %v: not a fresh positive 128-bit number", s)
		}
		seen[s.String()] = true
	}
}

func TestIssueClampsToCAExpiry(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "ca")
	if err := CreateCA(dir, "short", 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	certFile, _, err := Issue(dir, dir, "long", IssueOptions{Validity: 1000 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ca, c := readCert(t, filepath.Join(dir, CACertFile)), readCert(t, certFile)
	if !c.NotAfter.Equal(ca.NotAfter) {
		t.Errorf("leaf expires %v, CA %v: want the CA's expiry", c.NotAfter, ca.NotAfter)
	}
}

func TestIssueRenewReplacesFiles(t *testing.T) {
	t.Parallel()
	caDir := newCA(t, "tern CA")
	first, _, err := Issue(caDir, caDir, "svc", IssueOptions{Server: true})
	if err != nil {
		t.Fatal(err)
	}
	s1 := readCert(t, first).SerialNumber
	second, keyFile, err := Issue(caDir, caDir, "svc", IssueOptions{Server: true})
	if err != nil {
		t.Fatal(err)
	}
	if second != first || readCert(t, second).SerialNumber.Cmp(s1) == 0 {
		t.Error("re-issuing did not replace the certificate")
	}
	checkMode(t, keyFile, 0o600)
}

func TestIssueErrors(t *testing.T) {
	t.Parallel()
	caDir := newCA(t, "tern CA")
	out := t.TempDir()
	for _, tc := range []struct {
		what string
		name string
		opts IssueOptions
	}{
		{"empty name", "", IssueOptions{}},
		{"path separator", "../evil", IssueOptions{}},
		{"backslash", `a\b`, IssueOptions{}},
		{"dot file", ".hidden", IssueOptions{}},
		{"long name", strings.Repeat("n", 65), IssueOptions{}},
		{"negative validity", "x", IssueOptions{Validity: -time.Second}},
		{"bad DNS name", "x", IssueOptions{Server: true, Hosts: []string{"bad host"}}},
		{"bad label", "x", IssueOptions{Server: true, Hosts: []string{"-a.example"}}},
		{"inner wildcard", "x", IssueOptions{Server: true, Hosts: []string{"a.*.example"}}},
		{"empty host", "x", IssueOptions{Server: true, Hosts: []string{""}}},
		{"bad e-mail", "x", IssueOptions{Hosts: []string{"@example.com"}}},
		{"bad URI", "x", IssueOptions{Hosts: []string{"://nothing"}}},
	} {
		if _, _, err := Issue(caDir, out, tc.name, tc.opts); err == nil {
			t.Errorf("%s: Issue succeeded", tc.what)
		}
	}
	if ents, _ := os.ReadDir(out); len(ents) != 0 {
		t.Errorf("refused Issue calls wrote %d files", len(ents))
	}
	if _, _, err := Issue(caDir, caDir, "CA", IssueOptions{}); err == nil {
		t.Error(`name "CA" in the CA directory was allowed`)
	}
	if _, _, err := Issue(t.TempDir(), out, "x", IssueOptions{}); err == nil {
		t.Error("Issue without a CA succeeded")
	}
}

func TestLoadCAChecks(t *testing.T) {
	t.Parallel()
	a, b := newCA(t, "a"), newCA(t, "b")
	mixed := t.TempDir()
	copyFile(t, filepath.Join(a, CACertFile), filepath.Join(mixed, CACertFile))
	copyFile(t, filepath.Join(b, CAKeyFile), filepath.Join(mixed, CAKeyFile))
	if _, _, err := LoadCA(mixed); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("mismatched CA key: %v", err)
	}

	// A leaf certificate cannot act as the CA.
	leafDir := t.TempDir()
	certFile, keyFile, err := Issue(a, a, "leaf", IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	copyFile(t, certFile, filepath.Join(leafDir, CACertFile))
	copyFile(t, keyFile, filepath.Join(leafDir, CAKeyFile))
	if _, _, err := Issue(leafDir, t.TempDir(), "x", IssueOptions{}); err == nil || !strings.Contains(err.Error(), "not a CA") {
		t.Errorf("leaf as CA: %v", err)
	}
}

// TestLoadCASEC1Key: a CA whose key openssl wrote as "EC PARAMETERS" + "EC PRIVATE KEY" signs.
func TestLoadCASEC1Key(t *testing.T) {
	t.Parallel()
	dir := newCA(t, "openssl-style")
	_, key, err := LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(key.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	params := "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"
	sec1 := params + string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
	if err := os.WriteFile(filepath.Join(dir, CAKeyFile), []byte(sec1), 0o600); err != nil {
		t.Fatal(err)
	}
	certFile, _, err := Issue(dir, dir, "bob", IssueOptions{})
	if err != nil {
		t.Fatalf("Issue with a SEC 1 CA key: %v", err)
	}
	if _, err := readCert(t, certFile).Verify(x509.VerifyOptions{Roots: caPool(t, dir), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Error(err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
