package server_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/certs"
	"github.com/ternmq/tern/internal/config"
	"github.com/ternmq/tern/internal/message"
)

// pki is a CA in a temp dir with a server certificate for 127.0.0.1.
type pki struct {
	dir, ca, srvCert, srvKey string
	pool                     *x509.CertPool
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir()}
	p.ca = filepath.Join(p.dir, "ca")
	if err := certs.CreateCA(p.ca, "test CA", 0); err != nil {
		t.Fatal(err)
	}
	var err error
	if p.srvCert, p.srvKey, err = certs.Issue(p.ca, p.dir, "server", certs.IssueOptions{Server: true, Hosts: []string{"127.0.0.1"}}); err != nil {
		t.Fatal(err)
	}
	pem, _ := os.ReadFile(filepath.Join(p.ca, certs.CACertFile))
	p.pool = x509.NewCertPool()
	p.pool.AppendCertsFromPEM(pem)
	return p
}

// client issues a client certificate for name.
func (p *pki) client(t *testing.T, name string) tls.Certificate {
	t.Helper()
	c, k, err := certs.Issue(p.ca, filepath.Join(p.dir, "c-"+name), name, certs.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	kp, err := tls.LoadX509KeyPair(c, k)
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

// expired signs a client certificate for name that expired an hour ago.
func (p *pki) expired(t *testing.T, name string) tls.Certificate {
	t.Helper()
	caCert, caKey, err := certs.LoadCA(p.ca)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-48 * time.Hour),
		NotAfter:     time.Now().Add(-time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func (p *pki) tlsConfig(certs ...tls.Certificate) *tls.Config {
	c := tlsClientConfig(p.pool)
	c.Certificates = certs
	return c
}

// TestCertificateIdentityGrants: on a listener with a client CA, the certificate's CN is the
// identity and that user's grants apply without a password; an expired certificate is refused;
// over secure WebSocket the certificate identifies the client too.
func TestCertificateIdentityGrants(t *testing.T) {
	p := newPKI(t)
	srv := startServer(t, func(c *config.Config) {
		c.Listen.MQTTTLS, c.Listen.HTTPS = "127.0.0.1:0", "127.0.0.1:0"
		c.TLS = config.TLS{CertFile: p.srvCert, KeyFile: p.srvKey, ClientCAFile: filepath.Join(p.ca, certs.CACertFile)}
	})
	if err := srv.Auth.PutUser(auth.User{Name: "sensor-1", Grants: grants(t, "publish:sensors/%u/#")}, nil); err != nil {
		t.Fatal(err)
	}
	if err := srv.Auth.PutUser(auth.User{Name: "watcher", Grants: grants(t, "subscribe:sensors/#")}, []byte("pw")); err != nil {
		t.Fatal(err)
	}
	watcher := loginV5(t, srv, "watcher", "watcher", "pw")
	watcher.sub("sensors/#", 1)

	dialTLS := func(cfg *tls.Config) (net.Conn, error) {
		return tls.DialWithDialer(&net.Dialer{Timeout: waitTimeout}, "tcp", srv.Addr("mqtt_tls"), cfg)
	}
	conn, err := dialTLS(p.tlsConfig(p.client(t, "Sensor-1")))
	if err != nil {
		t.Fatal(err)
	}
	s := connectV5(t, conn, &paho.Connect{ClientID: "s1", CleanStart: true})
	if r := pubCode(t, s, &paho.Publish{Topic: "sensors/sensor-1/t", QoS: 1, Payload: []byte("21.5")}); r >= 0x80 {
		t.Fatalf("certificate user publishing in its grants: %#x", r)
	}
	if r := pubCode(t, s, &paho.Publish{Topic: "sensors/sensor-2/t", QoS: 1, Payload: []byte("x")}); r != 0x87 {
		t.Fatalf("certificate user outside its grants: %#x", r)
	}
	if m := watcher.expect("sensors/sensor-1/t", "21.5"); m.Properties.User.Get(message.SenderProperty) != "sensor-1" {
		t.Fatalf("sender %q, want the certificate's CN lower-cased", m.Properties.User.Get(message.SenderProperty))
	}

	// Expired: the handshake (or the first read after it, in TLS 1.3) fails.
	if conn, err := dialTLS(p.tlsConfig(p.expired(t, "sensor-1"))); err == nil {
		if _, err := newV5(t, conn).connect(&paho.Connect{ClientID: "s2", CleanStart: true}); err == nil {
			t.Fatal("an expired certificate was accepted")
		}
	}
	// No certificate on a listener that does not require one: a password is needed then.
	conn, err = dialTLS(p.tlsConfig())
	if err != nil {
		t.Fatal(err)
	}
	if ack, _ := newV5(t, conn).connect(&paho.Connect{ClientID: "s3", CleanStart: true}); ack == nil || ack.ReasonCode != 0x87 {
		t.Fatalf("no certificate and no password: %+v", ack)
	}

	// MQTT over secure WebSocket: the HTTPS request's certificate names the client.
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: p.tlsConfig(p.client(t, "sensor-1"))}}
	ws := connectV5(t, dialWS(t, "wss://"+srv.Addr("https")+"/mqtt", hc), &paho.Connect{ClientID: "s4", CleanStart: true})
	ws.publish(&paho.Publish{Topic: "sensors/sensor-1/w", QoS: 1, Payload: []byte("ws")})
	if m := watcher.expect("sensors/sensor-1/w", "ws"); m.Properties.User.Get(message.SenderProperty) != "sensor-1" {
		t.Fatalf("wss sender %q", m.Properties.User.Get(message.SenderProperty))
	}
}

// TestTLSPerListener: the HTTPS listener trusts another CA than the MQTT TLS listener, and only
// the MQTT one requires a certificate.
func TestTLSPerListener(t *testing.T) {
	devices, people := newPKI(t), newPKI(t)
	no := false
	srv := startServer(t, func(c *config.Config) {
		c.Listen.MQTTTLS, c.Listen.HTTPS = "127.0.0.1:0", "127.0.0.1:0"
		c.TLS = config.TLS{CertFile: devices.srvCert, KeyFile: devices.srvKey,
			ClientCAFile: filepath.Join(devices.ca, certs.CACertFile), RequireClientCert: true,
			Listeners: map[string]config.TLSOverride{"https": {ClientCAFile: filepath.Join(people.ca, certs.CACertFile), RequireClientCert: &no}}}
	})
	mqttConnect := func(cfg *tls.Config) error {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: waitTimeout}, "tcp", srv.Addr("mqtt_tls"), cfg)
		if err != nil {
			return err
		}
		_, err = newV5(t, conn).connect(&paho.Connect{ClientID: "d", CleanStart: true})
		return err
	}
	if err := mqttConnect(devices.tlsConfig(devices.client(t, "dev"))); err != nil {
		t.Fatalf("device certificate on mqtt_tls: %v", err)
	}
	if err := mqttConnect(devices.tlsConfig(people.client(t, "pat"))); err == nil {
		t.Fatal("a certificate of the people CA was accepted on mqtt_tls")
	}
	if err := mqttConnect(devices.tlsConfig()); err == nil {
		t.Fatal("no certificate on mqtt_tls, which requires one")
	}
	// HTTPS: people's CA, certificate optional.
	get := func(cfg *tls.Config) error {
		hc := &http.Client{Timeout: waitTimeout, Transport: &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}}
		resp, err := hc.Get("https://" + srv.Addr("https") + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.ProtoMajor != 2 {
				t.Errorf("HTTPS spoke %s, want HTTP/2", resp.Proto)
			}
		}
		return err
	}
	if err := get(devices.tlsConfig()); err != nil {
		t.Fatalf("https without a certificate: %v", err)
	}
	if err := get(devices.tlsConfig(people.client(t, "pat"))); err != nil {
		t.Fatalf("https with a people certificate: %v", err)
	}
	if err := get(devices.tlsConfig(devices.client(t, "dev2"))); err == nil {
		t.Fatal("https accepted a device certificate, which its CA does not sign")
	}
}
