package server_test

import (
	"context"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/ternmq/tern/internal/config"
	"github.com/ternmq/tern/internal/mqtt/packet"
	"github.com/ternmq/tern/internal/server"
)

// stalledSubscriber connects over TCP with a small receive buffer, subscribes to filter at QoS 0
// and then never reads again.
func stalledSubscriber(t *testing.T, srv *server.Server, filter string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: waitTimeout, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		}); err != nil {
			return err
		}
		return serr
	}}
	nc, err := d.Dial("tcp", srv.Addr("mqtt"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(waitTimeout))
	var buf []byte
	buf, _ = (&packet.Connect{Version: packet.V5, ClientID: []byte(uniqueID("stalled")), CleanStart: true, KeepAlive: 0}).Append(buf, packet.V5)
	buf, _ = (&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: []byte(filter), QoS: 0}}}).Append(buf, packet.V5)
	if _, err := nc.Write(buf); err != nil {
		t.Fatal(err)
	}
	rd := packet.NewReader(nc, 0, 0)
	for _, want := range []byte{packet.CONNACK, packet.SUBACK} {
		typ, _, _, err := rd.Next()
		if err != nil || typ != want {
			t.Fatalf("stalled subscriber: got %s, %v; want %s", packet.TypeName(typ), err, packet.TypeName(want))
		}
	}
	_ = nc.SetDeadline(time.Time{})
	return nc
}

// flood publishes QoS 1 messages (delivered at QoS 0 to the stalled subscriber) until done
// reports true, checking that every publish is acknowledged promptly. It returns how many it sent.
func flood(t *testing.T, pub *v5Client, topic string, max int, done func() bool) int {
	t.Helper()
	payload := []byte(strings.Repeat("s", 1024))
	deadline := time.Now().Add(15 * time.Second)
	for i := 0; i < max; i++ {
		if done() {
			return i
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not reached after %d messages", i)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		resp, err := pub.c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: payload})
		cancel()
		if err != nil {
			t.Fatalf("publish %d while a subscriber stalls: %v (the publisher must not be held up)", i, err)
		}
		if resp.ReasonCode != 0 {
			t.Fatalf("publish %d: PUBACK reason %#x", i, resp.ReasonCode)
		}
	}
	t.Fatalf("condition not reached after %d messages", max)
	return max
}

// TestSlowConsumerDropsQoS0: QoS 0 messages to a subscriber that stopped reading are dropped and
// counted in tern_messages_dropped_slow_total, while the publisher keeps being acknowledged and a
// healthy subscriber gets every message.
func TestSlowConsumerDropsQoS0(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *config.Config) {
		c.MQTT.OutboundBuffer = 16 << 10
		c.MQTT.SlowConsumerTimeout = 0 // never disconnect: this test is about dropping
	})
	stalledSubscriber(t, srv, "slow/t")
	healthy := v5(t, srv, uniqueID("healthy"))
	healthy.sub("slow/t", 1)
	pub := v5(t, srv, uniqueID("flooder"))
	stats := srv.Broker.Stats()
	n := flood(t, pub, "slow/t", 50000, func() bool { return stats.DroppedSlow.Load() >= 10 })
	for i := 0; i < n; i++ {
		m := healthy.next()
		if m.Topic != "slow/t" {
			t.Fatalf("healthy subscriber got %s", m.Topic)
		}
	}
	if v := metric(t, srv, "tern_messages_dropped_slow_total"); v < 10 {
		t.Errorf("tern_messages_dropped_slow_total = %v, want >= 10", v)
	}
	if v := metric(t, srv, "tern_mqtt_slow_consumers_total"); v != 0 {
		t.Errorf("tern_mqtt_slow_consumers_total = %v with the timeout off", v)
	}
	t.Logf("%d messages published, %d dropped for the stalled subscriber", n, stats.DroppedSlow.Load())
}

// TestSlowConsumerDisconnected: with mqtt.slow_consumer_timeout 500ms a subscriber whose buffer
// stays full is disconnected and counted in tern_mqtt_slow_consumers_total; the publisher goes on.
func TestSlowConsumerDisconnected(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *config.Config) {
		c.MQTT.OutboundBuffer = 16 << 10
		c.MQTT.SlowConsumerTimeout = 500 * time.Millisecond
		c.MQTT.WriteTimeout = time.Minute // the slow-consumer rule, not the write timeout, must act
	})
	stalled := stalledSubscriber(t, srv, "slow/t")
	pub := v5(t, srv, uniqueID("flooder"))
	mqttStats := srv.MQTT.Stats()
	start := time.Now()
	flood(t, pub, "slow/t", 200000, func() bool { return mqttStats.SlowConsumers.Load() > 0 })
	if waited := time.Since(start); waited < 500*time.Millisecond {
		t.Errorf("slow consumer disconnected after %v, before the 500ms timeout", waited)
	}
	if v := metric(t, srv, "tern_mqtt_slow_consumers_total"); v != 1 {
		t.Errorf("tern_mqtt_slow_consumers_total = %v, want 1", v)
	}
	// The stalled client's connection is closed: reading drains what was buffered, then ends.
	_ = stalled.SetReadDeadline(time.Now().Add(waitTimeout))
	if _, err := io.Copy(io.Discard, stalled); err != nil && !isReset(err) {
		t.Errorf("stalled connection not closed by the server: %v", err)
	}
	// The publisher is still connected and served.
	sub := v5(t, srv, uniqueID("after"))
	sub.sub("after/t", 1)
	pub.pub("after/t", 1, "still here")
	sub.expect("after/t", "still here")
}

func isReset(err error) bool {
	return strings.Contains(err.Error(), "connection reset")
}

// TestWriteTimeoutCountsAsSlowConsumer: a subscriber that takes no bytes for mqtt.write_timeout is
// disconnected by the write deadline, and that counts in tern_mqtt_slow_consumers_total like the
// slow-consumer rule's disconnects.
func TestWriteTimeoutCountsAsSlowConsumer(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *config.Config) {
		c.MQTT.OutboundBuffer = 16 << 10
		c.MQTT.SlowConsumerTimeout = 0 // only the write timeout may act
		c.MQTT.WriteTimeout = 300 * time.Millisecond
	})
	stalled := stalledSubscriber(t, srv, "wt/t")
	pub := v5(t, srv, uniqueID("flooder"))
	mqttStats := srv.MQTT.Stats()
	payload := []byte(strings.Repeat("w", 1024))
	deadline := time.Now().Add(15 * time.Second)
	// Publish until the stalled subscriber is gone: its last message then matches nobody (0x10).
	for gone := false; !gone; {
		if time.Now().After(deadline) {
			t.Fatal("the stalled subscriber was never disconnected")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		resp, err := pub.c.Publish(ctx, &paho.Publish{Topic: "wt/t", QoS: 1, Payload: payload})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		gone = resp.ReasonCode == 0x10
	}
	eventually(t, waitTimeout, "the write-timeout disconnect counted as a slow consumer", func() bool {
		return mqttStats.SlowConsumers.Load() > 0
	})
	if v := metric(t, srv, "tern_mqtt_slow_consumers_total"); v != 1 {
		t.Errorf("tern_mqtt_slow_consumers_total = %v, want 1", v)
	}
	_ = stalled.SetReadDeadline(time.Now().Add(waitTimeout))
	if _, err := io.Copy(io.Discard, stalled); err != nil && !isReset(err) {
		t.Errorf("stalled connection not closed by the server: %v", err)
	}
}
