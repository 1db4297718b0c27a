package server_test

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/ternmq/tern/internal/certs"
	"github.com/ternmq/tern/internal/config"
)

// TestMutualTLSIdentityAndRequiredCertificate: with a client CA, a client certificate's CN
// (lower-cased) becomes the session's identity; with require_client_cert, a client without one
// cannot complete the handshake; a certificate from another CA is refused.
func TestMutualTLSIdentityAndRequiredCertificate(t *testing.T) {
	dir := t.TempDir()
	ca, other := filepath.Join(dir, "ca"), filepath.Join(dir, "other")
	for _, d := range []string{ca, other} {
		if err := certs.CreateCA(d, "test CA "+filepath.Base(d), 0); err != nil {
			t.Fatal(err)
		}
	}
	srvCert, srvKey, err := certs.Issue(ca, dir, "server", certs.IssueOptions{Server: true, Hosts: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	aliceCert, aliceKey, _ := certs.Issue(ca, dir, "Alice", certs.IssueOptions{})
	malloryCert, malloryKey, _ := certs.Issue(other, filepath.Join(dir, "m"), "mallory", certs.IssueOptions{})
	srv := startServer(t, func(c *config.Config) {
		c.Listen.MQTTTLS = "127.0.0.1:0"
		c.TLS = config.TLS{CertFile: srvCert, KeyFile: srvKey, ClientCAFile: filepath.Join(ca, certs.CACertFile),
			RequireClientCert: true}
	})
	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(filepath.Join(ca, certs.CACertFile))
	pool.AppendCertsFromPEM(pem)
	// connectAs completes TLS and an MQTT CONNECT with the given client certificate ("" for
	// none); TLS 1.3 reports a refused client certificate only on the first read, so the CONNECT
	// is what shows whether the server took it.
	connectAs := func(id, certFile, keyFile string) error {
		cfg := tlsClientConfig(pool)
		if certFile != "" {
			kp, err := tls.LoadX509KeyPair(certFile, keyFile)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Certificates = []tls.Certificate{kp}
		}
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", srv.Addr("mqtt_tls"), cfg)
		if err != nil {
			return err
		}
		_, err = newV5(t, conn).connect(&paho.Connect{ClientID: id, CleanStart: true})
		return err
	}
	if err := connectAs("anon", "", ""); err == nil {
		t.Fatal("a client without a certificate got through a listener that requires one")
	}
	if err := connectAs("mallory", malloryCert, malloryKey); err == nil {
		t.Fatal("a certificate from another CA was accepted")
	}
	if err := connectAs("alice-device", aliceCert, aliceKey); err != nil {
		t.Fatalf("alice: %v", err)
	}
	st := fetchStats(t, srv)
	found := false
	for _, s := range st.TopSessions {
		if s.ClientID == "alice-device" {
			found = true
			if s.Identity != "alice" {
				t.Fatalf("identity %q, want the certificate's CN lower-cased", s.Identity)
			}
		}
	}
	if !found {
		t.Fatalf("session not listed: %+v", st.TopSessions)
	}
}
