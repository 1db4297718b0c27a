package mqttclient

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"
)

// selfSigned is a throwaway server certificate for 127.0.0.1.
func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestDialTLSResumesWithASessionCache: the second mqtts:// dial sharing Options.SessionCache
// resumes the first one's session (the TLS storm of tern bench --tls-resume depends on it), and
// a dial without a cache does a full handshake.
func TestDialTLSResumesWithASessionCache(t *testing.T) {
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}})
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
			// The ticket goes out with the first write after the handshake.
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			_, _ = c.Write([]byte("hi"))
			_ = c.Close()
		}
	}()
	dial := func(o Options) bool {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		o.Insecure, o.Timeout = true, 5*time.Second
		c, err := Dial(ctx, "mqtts://"+ln.Addr().String(), o)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 2)
		if _, err := c.Read(buf); err != nil || string(buf) != "hi" {
			t.Fatalf("read %q %v", buf, err)
		}
		return c.(*tls.Conn).ConnectionState().DidResume
	}
	cache := tls.NewLRUClientSessionCache(4)
	if dial(Options{SessionCache: cache}) {
		t.Fatal("the first dial resumed with an empty cache")
	}
	if !dial(Options{SessionCache: cache}) {
		t.Fatal("the second dial with the shared cache did not resume")
	}
	if dial(Options{}) {
		t.Fatal("a dial without a cache resumed")
	}
}
