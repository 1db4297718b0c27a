package server_test

import (
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/ternmq/tern/internal/mqtt/packet"
	"github.com/ternmq/tern/internal/server"
)

// willConnect is a raw MQTT 5 CONNECT carrying a will on topic.
func willConnect(id, topic, payload string, delay, expiry uint32) *packet.Connect {
	c := &packet.Connect{
		ClientID: []byte(id), CleanStart: true, KeepAlive: 30,
		Will: true, WillQoS: 1, WillTopic: []byte(topic), WillPayload: []byte(payload),
	}
	if delay > 0 {
		c.WillProps.WillDelay = delay
		c.WillProps.Set(packet.PropWillDelay)
	}
	if expiry > 0 {
		c.Props.SessionExpiry = expiry
		c.Props.Set(packet.PropSessionExpiry)
	}
	return c
}

// watcher subscribes to every will topic and to its own marker topic.
func willWatcher(t *testing.T, srv *server.Server) *v5Client {
	w := v5(t, srv, uniqueID("watcher"))
	w.sub("will/#", 1)
	w.sub("$m", 1)
	return w
}

// TestWillOnAbnormalDisconnect: closing the socket without DISCONNECT publishes the will, with
// its properties, for MQTT 5 (paho.golang) and 3.1.1 (paho.mqtt.golang) clients.
func TestWillOnAbnormalDisconnect(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	watcher := willWatcher(t, srv)

	c := connectV5(t, dialTCP(t, srv.Addr("mqtt")), &paho.Connect{
		ClientID: uniqueID("dies"), CleanStart: true,
		WillMessage: &paho.WillMessage{Topic: "will/v5", Payload: []byte("v5 gone"), QoS: 1},
		// paho.golang writes only the CONNECT-level will properties (it drops content type,
		// response topic and the like), so those are checked with the raw client below.
		WillProperties: &paho.WillProperties{User: paho.UserProperties{{Key: "k", Value: "v"}}},
	})
	c.drop()
	m := watcher.expect("will/v5", "v5 gone")
	if m.Properties == nil || m.Properties.User.Get("k") != "v" {
		t.Errorf("will lost its user property: %+v", m.Properties)
	}

	wc := willConnect(uniqueID("dies-raw"), "will/raw", "raw gone", 0, 0)
	wc.WillProps.ContentType = []byte("text/plain")
	wc.WillProps.ResponseTopic = []byte("will/replies")
	wc.WillProps.CorrelationData = []byte{1, 2, 3}
	wc.WillProps.PayloadFormat = 1
	wc.WillProps.Set(packet.PropContentType)
	wc.WillProps.Set(packet.PropResponseTopic)
	wc.WillProps.Set(packet.PropCorrelationData)
	wc.WillProps.Set(packet.PropPayloadFormat)
	wc.WillProps.AddUser([]byte("a"), []byte("1"))
	wc.WillProps.AddUser([]byte("a"), []byte("2"))
	raw, _ := rawV5(t, srv, wc)
	_ = raw.conn.Close()
	m = watcher.expect("will/raw", "raw gone")
	if p := m.Properties; p == nil || p.ContentType != "text/plain" || p.ResponseTopic != "will/replies" ||
		string(p.CorrelationData) != "\x01\x02\x03" || p.PayloadFormat == nil || *p.PayloadFormat != 1 ||
		len(p.User) != 2 || p.User[0] != (paho.UserProperty{Key: "a", Value: "1"}) || p.User[1] != (paho.UserProperty{Key: "a", Value: "2"}) {
		t.Errorf("will properties not kept: %+v", m.Properties)
	}

	var mu sync.Mutex
	var nc net.Conn
	v3 := connectV3(t, "tcp://"+srv.Addr("mqtt"), uniqueID("dies3"), func(o *mqtt3.ClientOptions) {
		o.SetWill("will/v3", "v3 gone", 1, false)
		o.SetCustomOpenConnectionFn(func(_ *url.URL, _ mqtt3.ClientOptions) (net.Conn, error) {
			conn, err := net.DialTimeout("tcp", srv.Addr("mqtt"), waitTimeout)
			mu.Lock()
			nc = conn
			mu.Unlock()
			return conn, err
		})
	})
	_ = v3
	mu.Lock()
	_ = nc.Close()
	mu.Unlock()
	watcher.expect("will/v3", "v3 gone")
}

// TestWillNotOnNormalDisconnect: DISCONNECT with reason 0x00 (and a 3.1.1 DISCONNECT) discards
// the will.
func TestWillNotOnNormalDisconnect(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	watcher := willWatcher(t, srv)

	r, _ := rawV5(t, srv, willConnect(uniqueID("polite"), "will/polite", "must not appear", 0, 0))
	r.send(&packet.Disconnect{Reason: packet.NormalDisconnection})
	// The server closes once it has handled the DISCONNECT, will decision included.
	r.expectClosed()

	v3 := connectV3(t, "tcp://"+srv.Addr("mqtt"), uniqueID("polite3"), func(o *mqtt3.ClientOptions) {
		o.SetWill("will/polite3", "must not appear", 1, false)
	})
	before := srv.Broker.Stats().Connected.Load()
	v3.c.Disconnect(100)
	waitConnected(t, srv, before-1)

	watcher.pub("$m", 1, "marker")
	if got := watcher.until("$m"); len(got) != 0 {
		t.Errorf("will published after a normal DISCONNECT: %s", describe(got))
	}
}

// TestWillOnDisconnectWithWill: DISCONNECT with reason 0x04 publishes the will.
func TestWillOnDisconnectWithWill(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	watcher := willWatcher(t, srv)
	r, _ := rawV5(t, srv, willConnect(uniqueID("with-will"), "will/asked", "as asked", 0, 0))
	r.send(&packet.Disconnect{Reason: packet.DisconnectWithWill})
	r.expectClosed()
	watcher.expect("will/asked", "as asked")
}

// TestWillDelay: with a will delay of 2 s, a client that reconnects within the delay cancels its
// will; one that does not has it published no earlier than the delay.
func TestWillDelay(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	watcher := willWatcher(t, srv)
	const delay = 2

	// back drops and comes back at once: its will must never appear.
	backID := uniqueID("back")
	back, _ := rawV5(t, srv, willConnect(backID, "will/back", "cancelled", delay, 60))
	before := srv.Broker.Stats().Connected.Load()
	_ = back.conn.Close()
	waitConnected(t, srv, before-1)
	resume := willConnect(backID, "will/back", "cancelled", delay, 60)
	resume.CleanStart = false
	_, ack := rawV5(t, srv, resume)
	if !ack.SessionPresent {
		t.Fatal("reconnect within the will delay: Session Present = false")
	}

	// gone drops after back did and stays away: its will comes after the delay.
	gone, _ := rawV5(t, srv, willConnect(uniqueID("gone"), "will/gone", "delayed", delay, 60))
	_ = gone.conn.Close()
	dropped := time.Now()
	m := watcher.next()
	if m.Topic != "will/gone" || string(m.Payload) != "delayed" {
		t.Fatalf("first will to arrive: %s %q, want will/gone (back's will must be cancelled)", m.Topic, m.Payload)
	}
	if waited := time.Since(dropped); waited < delay*time.Second-100*time.Millisecond {
		t.Errorf("delayed will published after %v, want at least %ds", waited, delay)
	}
	// back's timer, had it not been cancelled, was due before gone's.
	watcher.pub("$m", 1, "marker")
	if got := watcher.until("$m"); len(got) != 0 {
		t.Errorf("cancelled will published: %s", describe(got))
	}
}
