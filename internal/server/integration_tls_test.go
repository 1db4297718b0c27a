package server_test

import (
	"crypto/tls"
	"net"
	"net/http"
	"testing"

	"github.com/eclipse/paho.golang/paho"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/ternmq/tern/internal/config"
	"github.com/ternmq/tern/internal/mqtt/packet"
)

// TestTLSListeners: with a self-signed certificate, MQTT over TLS (paho.golang and
// paho.mqtt.golang), WebSocket over HTTPS (wss) and the HTTPS metrics endpoint all work, and
// subscribers on the plain listeners see what TLS clients publish.
func TestTLSListeners(t *testing.T) {
	t.Parallel()
	certFile, keyFile, pool := selfSignedCert(t, t.TempDir())
	srv := startServer(t, func(c *config.Config) {
		c.Listen.MQTTTLS = "127.0.0.1:0"
		c.Listen.HTTPS = "127.0.0.1:0"
		c.TLS = config.TLS{CertFile: certFile, KeyFile: keyFile}
	})
	if srv.Addr("mqtt_tls") == "" || srv.Addr("https") == "" {
		t.Fatal("TLS listeners not started")
	}
	plain := v5(t, srv, uniqueID("plain"))
	plain.sub("tls/#", 2)

	dialTLS := func(t *testing.T) net.Conn {
		t.Helper()
		d := &net.Dialer{Timeout: waitTimeout}
		c, err := tls.DialWithDialer(d, "tcp", srv.Addr("mqtt_tls"), tlsClientConfig(pool))
		if err != nil {
			t.Fatalf("TLS dial: %v", err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}

	t.Run("paho.golang over TLS", func(t *testing.T) {
		sub := connectV5(t, dialTLS(t), &paho.Connect{ClientID: uniqueID("tlssub"), CleanStart: true})
		sub.sub("tls/v5", 2)
		pub := connectV5(t, dialTLS(t), &paho.Connect{ClientID: uniqueID("tlspub"), CleanStart: true})
		for qos := byte(0); qos <= 2; qos++ {
			pub.pub("tls/v5", qos, "secret")
			if m := sub.expect("tls/v5", "secret"); m.QoS != qos {
				t.Errorf("QoS %d delivered at %d", qos, m.QoS)
			}
			plain.expect("tls/v5", "secret")
		}
	})

	t.Run("paho.mqtt.golang over TLS", func(t *testing.T) {
		c := connectV3(t, "tls://"+srv.Addr("mqtt_tls"), uniqueID("tls3"), func(o *mqtt3.ClientOptions) {
			o.SetTLSConfig(tlsClientConfig(pool))
		})
		c.sub("tls/v3", 1)
		c.pub("tls/v3", 1, false, "3.1.1 secret")
		c.expect("tls/v3", "3.1.1 secret", 1)
		plain.expect("tls/v3", "3.1.1 secret")
	})

	hc := &http.Client{Timeout: waitTimeout, Transport: &http.Transport{TLSClientConfig: tlsClientConfig(pool)}}
	t.Run("wss with paho.golang", func(t *testing.T) {
		conn := dialWS(t, "wss://"+srv.Addr("https")+"/mqtt", hc)
		c := connectV5(t, conn, &paho.Connect{ClientID: uniqueID("wss"), CleanStart: true})
		c.sub("tls/wss", 1)
		c.pub("tls/wss", 1, "over wss")
		c.expect("tls/wss", "over wss")
		plain.expect("tls/wss", "over wss")
	})

	t.Run("wss with paho.mqtt.golang", func(t *testing.T) {
		c := connectV3(t, "wss://"+srv.Addr("https")+"/mqtt", uniqueID("wss3"), func(o *mqtt3.ClientOptions) {
			o.SetTLSConfig(tlsClientConfig(pool))
		})
		c.sub("tls/wss3", 1)
		c.pub("tls/wss3", 1, false, "3.1.1 over wss")
		c.expect("tls/wss3", "3.1.1 over wss", 1)
		plain.expect("tls/wss3", "3.1.1 over wss")
	})

	t.Run("https metrics and health", func(t *testing.T) {
		for _, path := range []string{"/metrics", "/healthz"} {
			resp, err := hc.Get("https://" + srv.Addr("https") + path)
			if err != nil {
				t.Fatalf("GET %s: %v", path, err)
			}
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("GET %s: %s", path, resp.Status)
			}
		}
	})

	t.Run("untrusted client is refused by its own verification", func(t *testing.T) {
		_, err := tls.Dial("tcp", srv.Addr("mqtt_tls"), &tls.Config{ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12})
		if err == nil {
			t.Error("TLS handshake succeeded without trusting the test CA")
		}
	})

	t.Run("plain MQTT on the TLS port is closed", func(t *testing.T) {
		r := newRaw(t, dialTCP(t, srv.Addr("mqtt_tls")), packet.V5)
		r.write(mustAppend(connectPacket("plain-on-tls")))
		r.expectClosed()
	})
}

func connectPacket(id string) *packet.Connect {
	return &packet.Connect{Version: packet.V5, ClientID: []byte(id), CleanStart: true, KeepAlive: 30}
}
