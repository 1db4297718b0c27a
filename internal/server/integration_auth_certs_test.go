package server_test

// Client certificates beyond integration_certauth_test.go: another CA on an optional-certificate
// listener, a certificate outweighing a wrong password and back-off, the default grants of a
// certificate identity without a user record, and a 3.1.1 client identified by its certificate.

import (
	"crypto/tls"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/ternmq/tern/internal/auth"
	"github.com/ternmq/tern/internal/certs"
	"github.com/ternmq/tern/internal/clock"
	"github.com/ternmq/tern/internal/config"
	"github.com/ternmq/tern/internal/message"
	"github.com/ternmq/tern/internal/mqtt/packet"
	"github.com/ternmq/tern/internal/server"
)

func TestCertificateRefusalsAndPrecedence(t *testing.T) {
	p, other := newPKI(t), newPKI(t)
	// On a fake clock the back-off lasts however long the test takes.
	srv := securedServerOn(t, []server.Option{server.WithClock(clock.NewFake(time.Now()))}, func(c *config.Config) {
		c.Listen.MQTTTLS = "127.0.0.1:0"
		c.TLS = config.TLS{CertFile: p.srvCert, KeyFile: p.srvKey, ClientCAFile: filepath.Join(p.ca, certs.CACertFile)}
		c.Auth.DefaultGrants = []string{"publish:dev/%u/#"}
		c.Auth.BackoffFailures, c.Auth.BackoffMax = 2, time.Minute
	})
	must(t, srv.Auth.PutUser(auth.User{Name: "watcher", Grants: grants(t, "subscribe:dev/#", "subscribe:users/#")}, []byte("pw")))
	watcher := loginV5(t, srv, "watcher", "watcher", "pw")
	watcher.sub("dev/#", 1)
	watcher.sub("users/#", 1)
	dialTLS := func(cfg *tls.Config) (net.Conn, error) {
		return tls.DialWithDialer(&net.Dialer{Timeout: waitTimeout}, "tcp", srv.Addr("mqtt_tls"), cfg)
	}

	// A certificate another CA signed: the handshake fails (in TLS 1.3 the client may learn it
	// only at its first read, so the CONNECT must fail then).
	if conn, err := dialTLS(p.tlsConfig(other.client(t, "dev-9"))); err == nil {
		if ack, err := newV5(t, conn).connect(&paho.Connect{ClientID: "x1", CleanStart: true}); err == nil {
			t.Fatalf("a certificate of another CA was accepted: %+v", ack)
		}
	}

	// Back-off for the address: passwords are refused unchecked, certificates are not.
	for i := 0; i < 2; i++ {
		if got := rawConnack(t, srv, packet.V5, uniqueID("g"), "alice", "guess", nil); got != packet.BadUsernameOrPassword {
			t.Fatalf("guess %d: %v", i, got)
		}
	}
	if got := rawConnack(t, srv, packet.V5, uniqueID("g"), "alice", "alicepw", nil); got != packet.ConnectionRateExceeded {
		t.Fatalf("password during back-off: %v", got)
	}

	// A certificate is enough on its own: the wrong password that comes with it is not looked at,
	// and the identity is the CN, not the user name. Without a user record, only the default
	// grants apply (%u being the CN).
	conn, err := dialTLS(p.tlsConfig(p.client(t, "Dev-9")))
	if err != nil {
		t.Fatal(err)
	}
	dev := connectV5(t, conn, &paho.Connect{ClientID: "dev-9", CleanStart: true, Username: "alice", UsernameFlag: true,
		Password: []byte("wrong"), PasswordFlag: true})
	if r := pubCode(t, dev, &paho.Publish{Topic: "dev/dev-9/t", QoS: 1, Payload: []byte("own")}); r >= 0x80 {
		t.Fatalf("default grant for the certificate identity: %#x", r)
	}
	if r := pubCode(t, dev, &paho.Publish{Topic: "dev/dev-8/t", QoS: 1, Payload: []byte("other")}); r != notAuthorized {
		t.Fatalf("outside the default grants: %#x", r)
	}
	if r := pubCode(t, dev, &paho.Publish{Topic: "users/alice/x", QoS: 1, Payload: []byte("as alice")}); r != notAuthorized {
		t.Fatalf("the user name lent alice's grants to a certificate: %#x", r)
	}
	if m := watcher.expect("dev/dev-9/t", "own"); m.Properties.User.Get(message.SenderProperty) != "dev-9" {
		t.Fatalf("sender %q, want dev-9", m.Properties.User.Get(message.SenderProperty))
	}

	// 3.1.1 over TLS with a certificate: the same identity.
	v3 := connectV3(t, "ssl://"+srv.Addr("mqtt_tls"), "dev-9-v3", func(o *mqtt3.ClientOptions) {
		o.SetTLSConfig(p.tlsConfig(p.client(t, "dev-9")))
	})
	v3.pub("dev/dev-9/v3", 1, false, "from 3.1.1")
	if m := watcher.expect("dev/dev-9/v3", "from 3.1.1"); m.Properties.User.Get(message.SenderProperty) != "dev-9" {
		t.Fatalf("3.1.1 sender %q, want dev-9", m.Properties.User.Get(message.SenderProperty))
	}
	if n := srv.Auth.Stats().Backoff.Load(); n != 1 {
		t.Fatalf("back-off refusals %d, want 1 (certificates are not refused by it)", n)
	}
}
