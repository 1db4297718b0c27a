package server_test

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/config"
	"github.com/ternmq/tern/internal/mqtt/packet"
	"github.com/ternmq/tern/internal/server"
)

// wire builds a packet by hand: first byte, remaining length, body. It can express what the
// codec refuses to encode.
func wire(first byte, body ...[]byte) []byte {
	var b []byte
	for _, part := range body {
		b = append(b, part...)
	}
	out := []byte{first}
	n := len(b)
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		out = append(out, d)
		if n == 0 {
			break
		}
	}
	return append(out, b...)
}

// str is an MQTT length-prefixed string.
func str(s string) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(len(s)))
	return append(b, s...)
}

func u16b(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }

// TestBadInput sends malformed and illegal packets over raw TCP: an MQTT 5 client gets a
// DISCONNECT with the right reason code (and a reason string) before the server closes; a 3.1.1
// client is closed. Afterwards the server still serves a normal client and its goroutines return
// to the baseline. Not parallel: it counts goroutines.
func TestBadInput(t *testing.T) {
	srv := startServer(t, func(c *config.Config) {
		c.MQTT.MaxPacketSize = 1024
		c.MQTT.ConnectTimeout = 300 * time.Millisecond
	})
	baseline := runtime.NumGoroutine()

	v5Cases := []struct {
		name string
		send []byte
		want packet.ReasonCode
	}{
		{"PUBLISH with QoS 3", wire(0x36, str("a/b"), u16b(1), []byte{0}, []byte("x")), packet.MalformedPacket},
		{"remaining length longer than 4 bytes", []byte{0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F}, packet.MalformedPacket},
		{"invalid UTF-8 topic", wire(0x30, str("a/\xc3\x28"), []byte{0}, []byte("x")), packet.MalformedPacket},
		{"U+0000 in topic", wire(0x30, str("a/\x00"), []byte{0}, []byte("x")), packet.MalformedPacket},
		{"wildcard + in topic", wire(0x30, str("a/+"), []byte{0}, []byte("x")), packet.TopicNameInvalid},
		{"wildcard # in topic", wire(0x32, str("a/#"), u16b(1), []byte{0}, []byte("x")), packet.TopicNameInvalid},
		{"empty topic without alias", wire(0x30, str(""), []byte{0}, []byte("x")), packet.ProtocolError},
		{"QoS 1 with packet id 0", wire(0x32, str("a/b"), u16b(0), []byte{0}, []byte("x")), packet.ProtocolError},
		{"DUP on QoS 0", wire(0x38, str("a/b"), []byte{0}, []byte("x")), packet.MalformedPacket},
		{"topic alias 0", wire(0x30, str("a/b"), []byte{3, 0x23, 0, 0}, []byte("x")), packet.TopicAliasInvalid},
		{"topic alias above the maximum", wire(0x30, str("a/b"), []byte{3, 0x23, 0xff, 0xff}, []byte("x")), packet.TopicAliasInvalid},
		{"topic alias used before it was set", wire(0x30, str(""), []byte{3, 0x23, 0, 1}, []byte("x")), packet.ProtocolError},
		{"second CONNECT", mustAppend(&packet.Connect{Version: packet.V5, ClientID: []byte("again"), CleanStart: true}), packet.ProtocolError},
		{"SUBSCRIBE with reserved flags 0", wire(0x80, u16b(1), []byte{0}, str("a/b"), []byte{1}), packet.MalformedPacket},
		{"SUBSCRIBE without filters", wire(0x82, u16b(1), []byte{0}), packet.ProtocolError},
		{"packet type 0", []byte{0x00, 0x00}, packet.MalformedPacket},
		{"CONNACK from a client", []byte{0x20, 0x03, 0, 0, 0}, packet.ProtocolError},
		{"over the maximum packet size", wire(0x30, str("big"), []byte{0}, []byte(strings.Repeat("x", 2000))), packet.PacketTooLarge},
		{"length announcing more than the maximum", []byte{0x30, 0xFF, 0xFF, 0x7F}, packet.PacketTooLarge},
	}
	for _, tc := range v5Cases {
		t.Run("v5 "+tc.name, func(t *testing.T) {
			r, _ := rawV5(t, srv, &packet.Connect{ClientID: []byte(uniqueID("bad")), CleanStart: true, KeepAlive: 30})
			r.write(tc.send)
			seen := r.expectClosed()
			if len(seen) != 1 {
				t.Fatalf("got %d packets before the close (%v), want one DISCONNECT", len(seen), seen)
			}
			d, ok := seen[0].(*packet.Disconnect)
			if !ok {
				t.Fatalf("got %s, want DISCONNECT", packet.TypeName(seen[0].Type()))
			}
			if d.Reason != tc.want {
				t.Errorf("DISCONNECT reason %v (%s), want %v", d.Reason, d.Props.ReasonString, tc.want)
			}
			if len(d.Props.ReasonString) == 0 {
				t.Error("DISCONNECT carries no reason string")
			}
		})
	}

	v3Cases := []struct {
		name string
		send []byte
	}{
		{"PUBLISH with QoS 3", wire(0x36, str("a/b"), u16b(1), []byte("x"))},
		{"wildcard in topic", wire(0x30, str("a/#"), []byte("x"))},
		{"invalid UTF-8 topic", wire(0x30, str("\xff"), []byte("x"))},
		{"AUTH in 3.1.1", []byte{0xF0, 0x00}},
		{"over the maximum packet size", wire(0x30, str("big"), []byte(strings.Repeat("x", 2000)))},
	}
	for _, tc := range v3Cases {
		t.Run("3.1.1 "+tc.name, func(t *testing.T) {
			r, _ := connectRaw(t, dialTCP(t, srv.Addr("mqtt")), &packet.Connect{Version: packet.V311, ClientID: []byte(uniqueID("bad3")), CleanStart: true, KeepAlive: 30})
			r.write(tc.send)
			if seen := r.expectClosed(); len(seen) != 0 {
				t.Errorf("3.1.1 client got %d packets before the close, want none (3.1.1 has no server DISCONNECT)", len(seen))
			}
		})
	}

	t.Run("first packet not CONNECT", func(t *testing.T) {
		r := newRaw(t, dialTCP(t, srv.Addr("mqtt")), packet.V5)
		r.write([]byte{0xC0, 0x00}) // PINGREQ
		if seen := r.expectClosed(); len(seen) != 0 {
			t.Errorf("got %v before the close, want nothing", seen)
		}
	})
	t.Run("HTTP request on the MQTT port", func(t *testing.T) {
		r := newRaw(t, dialTCP(t, srv.Addr("mqtt")), packet.V5)
		r.write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		r.expectClosed()
	})
	t.Run("no CONNECT within the connect timeout", func(t *testing.T) {
		start := time.Now()
		r := newRaw(t, dialTCP(t, srv.Addr("mqtt")), packet.V5)
		if seen := r.expectClosed(); len(seen) != 0 {
			t.Errorf("got %v before the close, want nothing", seen)
		}
		if waited := time.Since(start); waited < 250*time.Millisecond {
			t.Errorf("closed after %v, before the 300ms connect timeout", waited)
		}
	})
	t.Run("partial CONNECT then silence", func(t *testing.T) {
		r := newRaw(t, dialTCP(t, srv.Addr("mqtt")), packet.V5)
		full := mustAppend(&packet.Connect{Version: packet.V5, ClientID: []byte("slowloris"), CleanStart: true})
		r.write(full[:len(full)/2])
		r.expectClosed()
	})
	t.Run("unsupported protocol version", func(t *testing.T) {
		r := newRaw(t, dialTCP(t, srv.Addr("mqtt")), packet.V311)
		r.write(wire(0x10, str("MQTT"), []byte{6, 0x02}, u16b(30), str("v6")))
		seen := r.expectClosed()
		if len(seen) != 1 {
			t.Fatalf("got %d packets, want one CONNACK", len(seen))
		}
		if ack, ok := seen[0].(*packet.Connack); !ok || ack.Reason != packet.V3RefusedProtocolVersion {
			t.Errorf("got %+v, want CONNACK 0x01 (unacceptable protocol version)", seen[0])
		}
	})
	t.Run("malformed v5 CONNECT", func(t *testing.T) {
		r := newRaw(t, dialTCP(t, srv.Addr("mqtt")), packet.V5)
		// Reserved connect flag set.
		r.write(wire(0x10, str("MQTT"), []byte{5, 0x03}, u16b(30), []byte{0}, str("x")))
		seen := r.expectClosed()
		if len(seen) != 1 {
			t.Fatalf("got %d packets, want one CONNACK", len(seen))
		}
		if ack, ok := seen[0].(*packet.Connack); !ok || ack.Reason != packet.MalformedPacket {
			t.Errorf("got %+v, want CONNACK 0x81", seen[0])
		}
	})
	t.Run("garbage after CONNECT", func(t *testing.T) {
		r, _ := rawV5(t, srv, &packet.Connect{ClientID: []byte(uniqueID("garbage")), CleanStart: true, KeepAlive: 30})
		junk := make([]byte, 4096)
		for i := range junk {
			junk[i] = byte(i*131 + 7)
		}
		r.write(junk)
		r.expectClosed()
	})

	// The server survived all of it: a normal client works.
	t.Run("server still serves", func(t *testing.T) {
		c := v5(t, srv, uniqueID("normal"))
		c.sub("ok/t", 2)
		for qos := byte(0); qos <= 2; qos++ {
			c.pub("ok/t", qos, fmt.Sprint(qos))
			c.expect("ok/t", fmt.Sprint(qos))
		}
		c.disconnect(0, nil)
	})
	if n := metric(t, srv, "tern_mqtt_protocol_errors_total"); n < float64(len(v5Cases)+len(v3Cases)) {
		t.Errorf("tern_mqtt_protocol_errors_total = %v, want at least %d", n, len(v5Cases)+len(v3Cases))
	}
	waitNoLeak(t, srv, baseline)
}

func mustAppend(p packet.Packet) []byte {
	b, err := p.Append(nil, packet.V5)
	if err != nil {
		panic(err)
	}
	return b
}

// waitNoLeak waits until the server has no open MQTT connection and the process is back near
// the goroutine count it had before the connections.
func waitNoLeak(t *testing.T, srv *server.Server, baseline int) {
	t.Helper()
	eventually(t, 5*time.Second, "no open MQTT connections", func() bool {
		return srv.MQTT.Stats().Open.Load() == 0
	})
	const slack = 3
	deadline := time.Now().Add(5 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for runtime.NumGoroutine() > baseline+slack {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Fatalf("goroutines: %d, baseline %d: leak?\n%s", runtime.NumGoroutine(), baseline, buf[:n])
		}
		<-tick.C
	}
}
