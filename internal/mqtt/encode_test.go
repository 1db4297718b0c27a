package mqtt

import (
	"bytes"
	"testing"

	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/message"
	"github.com/ternmq/tern/internal/mqtt/packet"
	"github.com/ternmq/tern/internal/netio"
)

func testConn(v packet.Version) *conn {
	srv := &Server{cfg: DefaultConfig()}
	srv.out = netio.Shared{Lim: srv.cfg.limits(), Stats: &srv.stats.Stats, Pool: writeBufs}
	c := &conn{srv: srv, version: v}
	c.out.Init(nil, &srv.out, c)
	return c
}

// A message going to many connections is encoded once per wire variant; each connection's copy
// carries its own packet id, QoS and DUP flag, and decodes to the same message as a fresh encode.
func TestSharedEncodingIsPatchedPerDelivery(t *testing.T) {
	m := &message.Message{Topic: "fan/out", Payload: []byte("payload"),
		Props: message.Properties{ContentType: "text/plain", User: []message.UserProperty{{Key: "k", Value: "v"}}}}
	for _, v := range []packet.Version{packet.V311, packet.V5} {
		deliveries := []broker.Delivery{
			{Msg: m, QoS: 1, PacketID: 7, Many: true},
			{Msg: m, QoS: 2, PacketID: 513, Dup: true, Many: true},
			{Msg: m, QoS: 1, PacketID: 9, Retain: true, Many: true},
			{Msg: m, QoS: 0, Many: true},
		}
		for _, d := range deliveries {
			c := testConn(v)
			c.out.Lock()
			got, err := c.appendPublish(nil, d)
			want, err2 := c.encodePublish(nil, d, false)
			c.out.Unlock()
			if err != nil || err2 != nil {
				t.Fatal(err, err2)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("v%d %+v:\nshared % x\nfresh  % x", v, d, got, want)
			}
		}
	}
	// Two v5 QoS > 0 deliveries above share slot 6, the v3.1.1 ones slot 2: filled once each.
	if m.Frames.Load(6) == nil || m.Frames.Load(2) == nil {
		t.Fatal("shared encodings were not cached")
	}
	cached := &m.Frames.Load(6)[0]
	c := testConn(packet.V5)
	c.out.Lock()
	_, _ = c.appendPublish(nil, broker.Delivery{Msg: m, QoS: 1, PacketID: 3, Many: true})
	c.out.Unlock()
	if &m.Frames.Load(6)[0] != cached {
		t.Fatal("a cached encoding was replaced")
	}
}
