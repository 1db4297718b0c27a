package certs

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseCertPool: the client CA file decoder never panics, and whatever it accepts holds at
// least one certificate. Seeds are a real CA file, a truncated one and two concatenated.
func FuzzParseCertPool(f *testing.F) {
	dir := filepath.Join(f.TempDir(), "ca")
	if err := CreateCA(dir, "fuzz CA", 0); err != nil {
		f.Fatal(err)
	}
	ca, err := os.ReadFile(filepath.Join(dir, CACertFile))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(ca)
	f.Add(ca[:len(ca)/2])
	f.Add(append(append([]byte{}, ca...), ca...))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		pool, err := parseCertPool(data)
		if err == nil && (pool == nil || pool.Equal(nil)) {
			t.Fatal("accepted without a pool")
		}
	})
}

// FuzzParseCA: decoding a CA certificate and key never panics, and an accepted pair is a CA
// whose key matches it.
func FuzzParseCA(f *testing.F) {
	dir := filepath.Join(f.TempDir(), "ca")
	if err := CreateCA(dir, "fuzz CA", 0); err != nil {
		f.Fatal(err)
	}
	cert, _ := os.ReadFile(filepath.Join(dir, CACertFile))
	key, _ := os.ReadFile(filepath.Join(dir, CAKeyFile))
	f.Add(cert, key)
	f.Add(cert, []byte("-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"))
	f.Add(key, cert)
	f.Fuzz(func(t *testing.T, certPEM, keyPEM []byte) {
		c, k, err := parseCA(certPEM, keyPEM)
		if err != nil {
			return
		}
		if !c.IsCA || k == nil {
			t.Fatalf("accepted a non-CA (IsCA %v) or no key", c.IsCA)
		}
	})
}
