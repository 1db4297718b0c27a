package broker

import (
	"errors"
	"testing"
)

func TestSessionDetailKickPurge(t *testing.T) {
	b, _ := newTestBroker(t, nil)
	sub, _, _ := connect(t, b, ConnectRequest{ClientID: "sub", Expiry: 300, Face: "mqtt"})
	subscribe(t, sub, SubscribeRequest{Filter: "a/#", QoS: 1}, SubscribeRequest{Filter: "b", QoS: 0})
	sub.Disconnect(DisconnectRequest{Graceful: true})
	pub, k, _ := connect(t, b, ConnectRequest{ClientID: "pub", Face: "websocket"})
	for range 3 {
		publish(t, pub, "a/x", "hello", 1, false)
	}

	d, err := b.SessionDetail("sub")
	if err != nil {
		t.Fatal(err)
	}
	if d.Face != "mqtt" || d.Online || d.Queued != 3 || len(d.Subscriptions) != 2 || d.Subscriptions[0].Filter != "a/#" ||
		d.Oldest == nil || d.Oldest.Topic != "a/x" || d.Disconnected.IsZero() || d.Limits.Policy != "drop_oldest" {
		t.Fatalf("detail %+v", d)
	}
	if got := b.FaceCounts(); got["websocket"] != 1 || got["mqtt"] != 0 {
		t.Fatalf("face counts %v", got)
	}

	n, err := b.PurgeQueue("sub")
	if err != nil || n != 3 {
		t.Fatalf("purge: %d, %v", n, err)
	}
	if q := b.Stats().Queued.Load(); q != 0 {
		t.Fatalf("queued after purge: %d", q)
	}
	if d, _ := b.SessionDetail("sub"); d.Queued != 0 || d.Oldest != nil {
		t.Fatalf("detail after purge %+v", d)
	}

	if err := b.Kick("sub"); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("kick offline: %v", err)
	}
	if err := b.Kick("nobody"); !errors.Is(err, ErrNoSession) {
		t.Fatalf("kick unknown: %v", err)
	}
	if _, err := b.SessionDetail("nobody"); !errors.Is(err, ErrNoSession) {
		t.Fatalf("detail unknown: %v", err)
	}
	if err := b.Kick("pub"); err != nil {
		t.Fatal(err)
	}
	k.mu.Lock()
	closed := k.closed
	k.mu.Unlock()
	if !errors.Is(closed, ErrAdministrativeAction) {
		t.Fatalf("sink closed with %v", closed)
	}
}
