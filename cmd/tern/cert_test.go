package main

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// runCertCmd runs "tern cert ARGS..." on a fresh command tree and returns its stdout.
func runCertCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := &cobra.Command{Use: "tern", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(newCertCmd())
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(append([]string{"cert"}, args...))
	err := root.Execute()
	return out.String(), err
}

func readPEMCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatalf("%s: no PEM block", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func certPool(t *testing.T, caFile string) *x509.CertPool {
	t.Helper()
	p := x509.NewCertPool()
	p.AddCert(readPEMCert(t, caFile))
	return p
}

// printedLines splits command output into its lines.
func printedLines(s string) []string { return strings.Split(strings.TrimSuffix(s, "\n"), "\n") }

// TestCertCommands runs ca and issue with their defaults in a fresh working directory and checks
// that what they write verifies as a chain for its purpose.
func TestCertCommands(t *testing.T) {
	t.Chdir(t.TempDir())

	out, err := runCertCmd(t, "ca")
	if err != nil {
		t.Fatalf("cert ca: %v", err)
	}
	caFile, caKey := filepath.Join("certs", "ca.crt"), filepath.Join("certs", "ca.key")
	if got := printedLines(out); !slices.Equal(got, []string{caFile, caKey}) {
		t.Fatalf("cert ca printed %q", got)
	}
	ca := readPEMCert(t, caFile)
	if !ca.IsCA || ca.Subject.CommonName != "tern CA" {
		t.Errorf("CA: IsCA %v CN %q", ca.IsCA, ca.Subject.CommonName)
	}
	if runtime.GOOS != "windows" {
		if fi, err := os.Stat(caKey); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("ca.key mode: %v %v", fi.Mode(), err)
		}
	}
	roots := certPool(t, caFile)

	out, err = runCertCmd(t, "issue", "server", "--server")
	if err != nil {
		t.Fatalf("cert issue --server: %v", err)
	}
	srvFile := filepath.Join("certs", "server.crt")
	if got := printedLines(out); !slices.Equal(got, []string{srvFile, filepath.Join("certs", "server.key")}) {
		t.Fatalf("cert issue printed %q", got)
	}
	srv := readPEMCert(t, srvFile)
	for _, host := range []string{"localhost", "127.0.0.1", "::1"} {
		if _, err := srv.Verify(x509.VerifyOptions{Roots: roots, DNSName: host}); err != nil {
			t.Errorf("server certificate for %s: %v", host, err)
		}
	}

	out, err = runCertCmd(t, "issue", "Alice", "--out", "clients", "--days", "30")
	if err != nil {
		t.Fatalf("cert issue (client): %v", err)
	}
	cliFile := filepath.Join("clients", "Alice.crt")
	if got := printedLines(out); !slices.Equal(got, []string{cliFile, filepath.Join("clients", "Alice.key")}) {
		t.Fatalf("cert issue printed %q", got)
	}
	cli := readPEMCert(t, cliFile)
	if cli.Subject.CommonName != "Alice" {
		t.Errorf("client CN %q", cli.Subject.CommonName)
	}
	if _, err := cli.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client certificate: %v", err)
	}
	if _, err := cli.Verify(x509.VerifyOptions{Roots: roots}); err == nil {
		t.Error("a client certificate verified for server authentication")
	}
	if d := cli.NotAfter.Sub(cli.NotBefore).Hours() / 24; d < 30 || d > 30.1 {
		t.Errorf("client certificate valid %.2f days, want 30", d)
	}

	if _, err := runCertCmd(t, "issue", "edge", "--server", "--host", "mq.example.com,10.0.0.7", "--host", "::1"); err != nil {
		t.Fatal(err)
	}
	edge := readPEMCert(t, filepath.Join("certs", "edge.crt"))
	if !slices.Equal(edge.DNSNames, []string{"mq.example.com"}) || len(edge.IPAddresses) != 2 ||
		!edge.IPAddresses[0].Equal(net.ParseIP("10.0.0.7")) || !edge.IPAddresses[1].Equal(net.IPv6loopback) {
		t.Errorf("--host SANs: DNS %v IP %v", edge.DNSNames, edge.IPAddresses)
	}

	// A second ca refuses and leaves the CA alone; --force replaces it, after which certificates
	// of the old CA no longer verify.
	if _, err := runCertCmd(t, "ca"); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("second cert ca: %v", err)
	}
	if !readPEMCert(t, caFile).Equal(ca) {
		t.Fatal("a refused cert ca changed the CA")
	}
	if _, err := runCertCmd(t, "ca", "--force", "--name", "tern CA 2", "--days", "10"); err != nil {
		t.Fatalf("cert ca --force: %v", err)
	}
	ca2 := readPEMCert(t, caFile)
	if ca2.Subject.CommonName != "tern CA 2" || ca2.Equal(ca) {
		t.Fatalf("cert ca --force: CN %q", ca2.Subject.CommonName)
	}
	if _, err := srv.Verify(x509.VerifyOptions{Roots: certPool(t, caFile), DNSName: "localhost"}); err == nil {
		t.Error("a certificate of the replaced CA still verifies")
	}
}

// TestCertCommandsElsewhere: --dir points ca and issue at any directory.
func TestCertCommandsElsewhere(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "pki")
	if _, err := runCertCmd(t, "ca", "--dir", dir, "--name", "Site CA"); err != nil {
		t.Fatal(err)
	}
	out, err := runCertCmd(t, "issue", "bob", "--dir", dir)
	if err != nil {
		t.Fatal(err)
	}
	certFile := printedLines(out)[0]
	if certFile != filepath.Join(dir, "bob.crt") {
		t.Fatalf("printed %q", out)
	}
	if _, err := readPEMCert(t, certFile).Verify(x509.VerifyOptions{
		Roots: certPool(t, filepath.Join(dir, "ca.crt")), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		t.Error(err)
	}
}

func TestCertCommandErrors(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "certs")
	if _, err := runCertCmd(t, "ca", "--dir", dir); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"ca", "--dir", t.TempDir(), "--days", "0"}, "--days"},
		{[]string{"ca", "--dir", t.TempDir(), "--days", "100000"}, "--days"},
		{[]string{"ca", "--dir", t.TempDir(), "--name", ""}, "CA name"},
		{[]string{"issue", "--dir", dir}, "arg"},
		{[]string{"issue", "a", "b", "--dir", dir}, "arg"},
		{[]string{"issue", "x", "--dir", dir, "--days", "-1"}, "--days"},
		{[]string{"issue", "x", "--dir", dir, "--server", "--host", "bad host"}, "bad host"},
		{[]string{"issue", "../x", "--dir", dir}, "certificate name"},
		{[]string{"issue", "x", "--dir", t.TempDir()}, "CA certificate"},
	} {
		_, err := runCertCmd(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("cert %v: %v, want an error mentioning %q", tc.args, err, tc.want)
		}
	}
}
