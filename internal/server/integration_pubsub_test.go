package server_test

import (
	"fmt"
	"testing"

	"github.com/eclipse/paho.golang/paho"
)

// TestPubSubV5Transports runs the core publish/subscribe exchange with paho.golang over TCP,
// WebSocket and the Unix socket, each message at QoS 0, 1 and 2, and checks that a subscriber on
// another transport gets the same messages.
func TestPubSubV5Transports(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	watcher := v5(t, srv, uniqueID("watch"))
	watcher.sub("core/#", 2)
	for _, tr := range allTransports {
		t.Run(string(tr), func(t *testing.T) {
			topic := "core/" + string(tr)
			sub := connectV5(t, dial(t, srv, tr), &paho.Connect{ClientID: uniqueID("sub-" + string(tr)), CleanStart: true})
			sub.sub(topic, 2)
			pub := connectV5(t, dial(t, srv, tr), &paho.Connect{ClientID: uniqueID("pub-" + string(tr)), CleanStart: true})
			for qos := byte(0); qos <= 2; qos++ {
				payload := fmt.Sprintf("%s qos %d", tr, qos)
				resp := pub.pub(topic, qos, payload)
				if qos > 0 && resp.ReasonCode != 0 {
					t.Fatalf("QoS %d publish acknowledged with reason %#x", qos, resp.ReasonCode)
				}
				m := sub.expect(topic, payload)
				if m.QoS != qos {
					t.Errorf("QoS %d message delivered at QoS %d", qos, m.QoS)
				}
				if m.Retain {
					t.Errorf("live message delivered with the retain flag")
				}
				if w := watcher.expect(topic, payload); w.QoS != qos {
					t.Errorf("TCP watcher got QoS %d, want %d", w.QoS, qos)
				}
			}
		})
	}
}

// TestPubSubV311Transports drives tern with paho.mqtt.golang (MQTT 3.1.1) over TCP, WebSocket and
// the Unix socket, and checks that 3.1.1 and 5 clients see each other's messages.
func TestPubSubV311Transports(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	v5sub := v5(t, srv, uniqueID("v5watch"))
	v5sub.sub("v3/#", 2)
	brokers := map[transport]string{
		tcpTransport:  "tcp://" + srv.Addr("mqtt"),
		wsTransport:   "ws://" + srv.Addr("http") + "/mqtt",
		unixTransport: "unix://" + srv.Addr("unix"),
	}
	for _, tr := range allTransports {
		t.Run(string(tr), func(t *testing.T) {
			topic := "v3/" + string(tr)
			sub := connectV3(t, brokers[tr], uniqueID("v3sub"))
			sub.sub(topic, 2)
			pub := connectV3(t, brokers[tr], uniqueID("v3pub"))
			for qos := byte(0); qos <= 2; qos++ {
				payload := fmt.Sprintf("3.1.1 %s qos %d", tr, qos)
				pub.pub(topic, qos, false, payload)
				sub.expect(topic, payload, qos)
				if m := v5sub.expect(topic, payload); m.QoS != qos {
					t.Errorf("MQTT 5 subscriber got QoS %d, want %d", m.QoS, qos)
				}
			}
			// And the other way: an MQTT 5 publisher reaches the 3.1.1 subscriber.
			v5pub := v5(t, srv, uniqueID("v5pub"))
			v5pub.pub(topic, 1, "from v5")
			sub.expect(topic, "from v5", 1)
			v5sub.expect(topic, "from v5")
		})
	}
}
