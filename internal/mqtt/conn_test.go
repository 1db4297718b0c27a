package mqtt

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/mqtt/packet"
)

// startServer runs an MQTT face on a loopback port (see startFace).
func startServer(t *testing.T, mod func(*Config)) string {
	t.Helper()
	_, addr := startFace(t, mod)
	return addr
}

// rawClient speaks MQTT with the codec, so a test controls every byte and acknowledgement.
type rawClient struct {
	t  *testing.T
	nc net.Conn
	rd *packet.Reader
	v  packet.Version
}

func dial(t *testing.T, addr string, v packet.Version) *rawClient {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	return &rawClient{t: t, nc: nc, rd: packet.NewReader(nc, 0, 0), v: v}
}

func (c *rawClient) send(p packet.Packet) {
	c.t.Helper()
	b, err := p.Append(nil, c.v)
	if err != nil {
		c.t.Fatal(err)
	}
	if _, err := c.nc.Write(b); err != nil {
		c.t.Fatal(err)
	}
}

// recv reads the next packet within d.
func (c *rawClient) recv(d time.Duration) (packet.Packet, error) {
	_ = c.nc.SetReadDeadline(time.Now().Add(d))
	typ, flags, body, err := c.rd.Next()
	if err != nil {
		return nil, err
	}
	p := packet.New(typ)
	if err := p.Decode(flags, body, c.v); err != nil {
		return nil, err
	}
	return p, nil
}

func (c *rawClient) must(d time.Duration) packet.Packet {
	c.t.Helper()
	p, err := c.recv(d)
	if err != nil {
		c.t.Fatal(err)
	}
	return p
}

// subscribe subscribes to filter at QoS 0 and waits for the SUBACK.
func (c *rawClient) subscribe(filter string) {
	c.t.Helper()
	c.send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: []byte(filter)}}})
	if _, ok := c.must(2 * time.Second).(*packet.Suback); !ok {
		c.t.Fatal("no SUBACK")
	}
}

func (c *rawClient) connect(id string, keepAlive uint16) *packet.Connack {
	c.t.Helper()
	c.send(&packet.Connect{Version: c.v, ClientID: []byte(id), CleanStart: true, KeepAlive: keepAlive})
	ack, ok := c.must(2 * time.Second).(*packet.Connack)
	if !ok || ack.Reason != packet.Success {
		c.t.Fatalf("connect: %+v", ack)
	}
	return ack
}

func TestKeepAliveZeroOutlivesConnectTimeout(t *testing.T) {
	addr := startServer(t, func(c *Config) { c.ConnectTimeout = 100 * time.Millisecond })
	c := dial(t, addr, packet.V311)
	c.connect("idle", 0)
	// Let several connect timeouts pass; the connection must not be closed by the CONNECT deadline.
	time.Sleep(400 * time.Millisecond)
	c.send(&packet.Pingreq{})
	if _, ok := c.must(2 * time.Second).(*packet.Pingresp); !ok {
		t.Fatal("no PINGRESP")
	}
}

func TestKeepAliveEnforced(t *testing.T) {
	addr := startServer(t, nil)
	c := dial(t, addr, packet.V5)
	start := time.Now()
	c.connect("lazy", 1)
	p := c.must(5 * time.Second)
	d, ok := p.(*packet.Disconnect)
	if !ok || d.Reason != packet.KeepAliveTimeout {
		t.Fatalf("got %#v, want DISCONNECT keep alive timeout", p)
	}
	// Not before one and a half keep alives (that the hand-off between goroutines does not
	// restart the wait is TestReadDeadline's).
	if waited := time.Since(start); waited < 1500*time.Millisecond {
		t.Fatalf("disconnected after %v, want 1.5 s", waited)
	}
	if _, err := c.recv(2 * time.Second); !errors.Is(err, io.EOF) {
		t.Fatalf("connection not closed after DISCONNECT: %v", err)
	}
}

// The reader's waits: keep alive counts from the read that completed the last packet, a lazy wait
// ends after handoffAfter of quiet when that comes first, and the fresh goroutine that takes over
// waits for the same keep-alive deadline, not a new one.
func TestReadDeadline(t *testing.T) {
	t0 := time.Unix(1000, 0)
	for _, c := range []struct {
		name      string
		readAt    time.Time
		keepAlive time.Duration
		canLazy   bool
		wantAt    time.Time
		wantLazy  bool
	}{
		{"no keep alive, fresh", t0, 0, false, time.Time{}, false},
		{"no keep alive, lazy", t0, 0, true, t0.Add(handoffAfter), true},
		{"long keep alive, lazy", t0, time.Minute, true, t0.Add(handoffAfter), true},
		{"long keep alive, fresh", t0.Add(5 * time.Second), time.Minute, false, t0.Add(90 * time.Second), false},
		{"keep alive due before the hand-off", t0, 500 * time.Millisecond, true, t0.Add(750 * time.Millisecond), false},
		// Bytes of an incomplete packet arrived later: they move the hand-off, not the keep alive.
		{"trickle", t0.Add(1400 * time.Millisecond), time.Second, true, t0.Add(1500 * time.Millisecond), false},
	} {
		at, lazy := readDeadline(t0, c.readAt, c.keepAlive, c.canLazy)
		if !at.Equal(c.wantAt) || lazy != c.wantLazy {
			t.Errorf("%s: deadline %v lazy %v, want %v %v", c.name, at, lazy, c.wantAt, c.wantLazy)
		}
	}
}

// Each PUBLISH waits for its acknowledgement, so the reader goes idle and hands off between every
// message; nothing may be lost or reordered across the hand-offs.
func TestIdleHandOffKeepsOrder(t *testing.T) {
	addr := startServer(t, nil)
	sub := dial(t, addr, packet.V311)
	sub.connect("sub", 0)
	sub.send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: []byte("h/#"), QoS: 1}}})
	if _, ok := sub.must(2 * time.Second).(*packet.Suback); !ok {
		t.Fatal("no SUBACK")
	}
	pub := dial(t, addr, packet.V311)
	pub.connect("pub", 0)
	const n = 300
	for i := 1; i <= n; i++ {
		pub.send(&packet.Publish{Topic: []byte("h/x"), QoS: 1, PacketID: uint16(i), Payload: []byte(fmt.Sprint(i))})
		if a, ok := pub.must(2 * time.Second).(*packet.Puback); !ok || a.PacketID != uint16(i) {
			t.Fatalf("publish %d: no PUBACK", i)
		}
	}
	for i := 1; i <= n; i++ {
		p, ok := sub.must(2 * time.Second).(*packet.Publish)
		if !ok || string(p.Payload) != fmt.Sprint(i) {
			t.Fatalf("delivery %d: %+v", i, p)
		}
		sub.send(&packet.Puback{PacketID: p.PacketID})
	}
}

// A packet larger than the pooled read buffer, written in small pieces, arrives whole, and the
// connection carries on normally afterwards.
func TestPacketLargerThanReadBuffer(t *testing.T) {
	addr := startServer(t, nil)
	sub := dial(t, addr, packet.V5)
	sub.connect("sub", 0)
	sub.send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: []byte("big")}}})
	sub.must(2 * time.Second)
	pub := dial(t, addr, packet.V5)
	pub.connect("pub", 0)
	payload := bytes.Repeat([]byte("0123456789"), 10_000)
	frame, err := (&packet.Publish{Topic: []byte("big"), Payload: payload}).Append(nil, packet.V5)
	if err != nil {
		t.Fatal(err)
	}
	small, _ := (&packet.Publish{Topic: []byte("big"), Payload: []byte("after")}).Append(nil, packet.V5)
	frame = append(frame, small...)
	for len(frame) > 0 {
		n := min(len(frame), 7000)
		if _, err := pub.nc.Write(frame[:n]); err != nil {
			t.Fatal(err)
		}
		frame = frame[n:]
	}
	got, ok := sub.must(5 * time.Second).(*packet.Publish)
	if !ok || !bytes.Equal(got.Payload, payload) {
		t.Fatalf("large payload damaged (%d bytes)", len(got.Payload))
	}
	if got, ok := sub.must(2 * time.Second).(*packet.Publish); !ok || string(got.Payload) != "after" {
		t.Fatalf("message after the large one: %+v", got)
	}
}

// Too many unreleased QoS 2 publishes end the connection with 0x93, and the client reads that
// reason even though it had written more after it: the server closes without resetting.
func TestReasonSurvivesClose(t *testing.T) {
	addr := startServer(t, func(c *Config) { c.ReceiveMax = 3 })
	c := dial(t, addr, packet.V5)
	c.connect("greedy", 0)
	var burst []byte
	for i := 1; i <= 10; i++ {
		burst, _ = (&packet.Publish{Topic: []byte("q"), QoS: 2, PacketID: uint16(i)}).Append(burst, packet.V5)
	}
	if _, err := c.nc.Write(burst); err != nil {
		t.Fatal(err)
	}
	for {
		p := c.must(3 * time.Second)
		if d, ok := p.(*packet.Disconnect); ok {
			if d.Reason != packet.ReceiveMaximumExceeded {
				t.Fatalf("disconnect reason %v", d.Reason)
			}
			return
		}
		if _, ok := p.(*packet.Pubrec); !ok {
			t.Fatalf("unexpected %T", p)
		}
	}
}

func TestOversizedPacketRefused(t *testing.T) {
	addr := startServer(t, func(c *Config) { c.MaxPacketSize = 1024 })
	c := dial(t, addr, packet.V5)
	ack := c.connect("big", 0)
	if ack.Props.MaxPacketSize != 1024 {
		t.Fatalf("CONNACK maximum packet size %d", ack.Props.MaxPacketSize)
	}
	c.send(&packet.Publish{Topic: []byte("t"), Payload: make([]byte, 2000)})
	d, ok := c.must(2 * time.Second).(*packet.Disconnect)
	if !ok || d.Reason != packet.PacketTooLarge {
		t.Fatalf("got %+v, want DISCONNECT packet too large", d)
	}
}

// A receiver that falls behind pauses the publisher (its reader stops reading) instead of losing
// messages, and the pause ends as soon as the receiver catches up.
func TestBackpressurePausesPublisherInsteadOfDropping(t *testing.T) {
	srv, addr := startFace(t, func(c *Config) {
		c.OutboundBuffer = 64 << 10
		c.PublishStall = time.Minute // the pause lasts until the receiver catches up
		c.SlowConsumerTimeout = 0
		c.WriteTimeout = time.Minute
	})
	sub := dial(t, addr, packet.V311)
	sub.connect("slow", 0)
	sub.send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: []byte("s/#")}}})
	sub.must(2 * time.Second)

	pub := dial(t, addr, packet.V311)
	pub.connect("fast", 0)
	frame, _ := (&packet.Publish{Topic: []byte("s/x"), Payload: make([]byte, 4096)}).Append(nil, packet.V311)
	// The subscriber reads nothing, so kernel buffers fill first, then tern's; at half of
	// OutboundBuffer tern stops reading the publisher, and counts the stall. The publisher writes
	// on a goroutine of its own, since its writes block once tern stops reading, and stops at
	// its first write after the stall was counted.
	sent := make(chan int, 1)
	go func() {
		n := 0
		_ = pub.nc.SetWriteDeadline(time.Now().Add(40 * time.Second))
		for srv.Stats().PublishStalls.Load() == 0 {
			if _, err := pub.nc.Write(frame); err != nil {
				break
			}
			n++
		}
		sent <- n
	}()
	eventually(t, 20*time.Second, "the publisher paused", func() bool { return srv.Stats().PublishStalls.Load() > 0 })

	// The receiver catches up: everything arrives, then the marker published after it.
	received := make(chan int, 1)
	go func() {
		n := 0
		for {
			p, err := sub.recv(10 * time.Second)
			if pp, ok := p.(*packet.Publish); err != nil || ok && string(pp.Payload) == "end" {
				break
			}
			n++
		}
		received <- n
	}()
	var n int
	select {
	case n = <-sent:
	case <-time.After(20 * time.Second):
		t.Fatal("the publisher stayed paused while the receiver read")
	}
	// The pause is over: the publisher is answered again.
	pub.send(&packet.Pingreq{})
	if _, err := pub.recv(10 * time.Second); err != nil {
		t.Fatalf("publisher still paused after the receiver caught up: %v", err)
	}
	pub.send(&packet.Publish{Topic: []byte("s/x"), Payload: []byte("end")})
	if got := <-received; got != n {
		t.Fatalf("receiver got %d of %d", got, n)
	}
	if d := srv.broker.Stats().DroppedSlow.Load(); d != 0 {
		t.Fatalf("%d messages dropped", d)
	}
}

// A publisher's reader writes for its receivers itself (broker.Batch), but never waits on them: a
// receiver whose socket is full gets the rest from its own writer, whole and in order, while the
// publisher carries on being served.
func TestDeferredWriteToFullSocket(t *testing.T) {
	addr := startServer(t, func(c *Config) {
		c.OutboundBuffer = 64 << 20 // nothing is dropped; the socket, not the buffer, fills
		c.PublishStall = 0
		// The receiver reading nothing is not cut off while a loaded machine works through the
		// publishes (it would be after the default 10 s).
		c.WriteTimeout = 5 * time.Minute
	})
	sub := dial(t, addr, packet.V311)
	if err := sub.nc.(*net.TCPConn).SetReadBuffer(64 << 10); err != nil {
		t.Fatal(err)
	}
	sub.connect("sub", 0)
	sub.subscribe("full")
	pub := dial(t, addr, packet.V311)
	pub.connect("pub", 0)
	const n, size = 160, 64 << 10 // 10 MiB: more than the kernel buffers of a reader that reads nothing
	for i := range n {
		payload := bytes.Repeat([]byte{byte(i)}, size)
		pub.send(&packet.Publish{Topic: []byte("full"), Payload: payload})
	}
	// The PINGRESP comes once the server has read the publishes still in the kernel's buffers,
	// megabytes that take seconds under -race on a busy machine. A publisher held up by its
	// receiver would never get it (the receiver reads nothing until then), so the deadline is
	// generous: it bounds a failure, it does not measure speed.
	pub.send(&packet.Pingreq{})
	if _, ok := pub.must(2 * time.Minute).(*packet.Pingresp); !ok {
		t.Fatal("the publisher was not served while its receiver's socket was full")
	}
	for i := range n {
		p, ok := sub.must(30 * time.Second).(*packet.Publish)
		if !ok || len(p.Payload) != size || p.Payload[0] != byte(i) || p.Payload[size-1] != byte(i) {
			t.Fatalf("delivery %d damaged or out of order", i)
		}
	}
}

// A receiver's write deadline, armed by its own writer goroutine earlier (here for the CONNACK),
// has long passed when a publisher's reader writes for it: the write still goes out, and the
// receiver stays connected.
func TestDeferredWriteAfterAnExpiredWriteDeadline(t *testing.T) {
	addr := startServer(t, func(c *Config) { c.WriteTimeout = 20 * time.Millisecond })
	sub := dial(t, addr, packet.V311)
	sub.connect("sub", 0)
	sub.subscribe("late")
	pub := dial(t, addr, packet.V311)
	pub.connect("pub", 0)
	// What is tested is time passing beyond the deadline, not waiting for an event.
	time.Sleep(60 * time.Millisecond)
	for i := range 3 {
		pub.send(&packet.Publish{Topic: []byte("late"), Payload: []byte(fmt.Sprint(i))})
		p, ok := sub.must(2 * time.Second).(*packet.Publish)
		if !ok || string(p.Payload) != fmt.Sprint(i) {
			t.Fatalf("delivery %d: %+v", i, p)
		}
	}
}
