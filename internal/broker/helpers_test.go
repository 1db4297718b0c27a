package broker

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/clock"
	"github.com/ternmq/tern/internal/message"
)

// sink records what the core sends to one fake connection.
type sink struct {
	mu       sync.Mutex
	got      []Delivery
	releases []uint16
	closed   error
	// result is what Send answers (Sent by default).
	result  SendResult
	drained chan struct{}
	// remote is what the connection would name as its client's address (RemoteNamer).
	remote string
}

func (k *sink) RemoteAddr() string { return k.remote }

func (k *sink) Send(d Delivery) SendResult {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.result != Sent && k.result != Congested {
		return k.result
	}
	// QoS 0 messages are only valid during the call: keep a copy, as a face would encode one.
	d.Msg = d.Msg.Clone()
	d.SubIDs = slices.Clone(d.SubIDs)
	k.got = append(k.got, d)
	return k.result
}

func (k *sink) Release(pid uint16) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.releases = append(k.releases, pid)
}

func (k *sink) Close(reason error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.closed = reason
}

func (k *sink) Drained() <-chan struct{} {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.drained == nil {
		k.drained = make(chan struct{})
	}
	return k.drained
}

func (k *sink) setResult(r SendResult) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.result = r
}

// payloads lists the payloads received so far, in order.
func (k *sink) payloads() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []string
	for _, d := range k.got {
		out = append(out, string(d.Msg.Payload))
	}
	return out
}

func (k *sink) deliveries() []Delivery {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.got)
}

func (k *sink) reset() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.got, k.releases = nil, nil
}

// testEpoch is where every test broker's fake clock starts. Brokers restarted on one store in a
// test start at the same instant, as if the restart took no time; a test moves time by hand.
var testEpoch = time.Unix(1_800_000_000, 0)

func newTestBroker(t *testing.T, mod func(*Config)) (*Broker, *clock.Fake) {
	t.Helper()
	cfg := DefaultConfig()
	fake := clock.NewFake(testEpoch)
	cfg.Clock = fake
	if mod != nil {
		mod(&cfg)
	}
	b, err := New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b, fake
}

// connect opens a started client with a recording sink.
func connect(t *testing.T, b *Broker, req ConnectRequest) (*Client, *sink, ConnectResult) {
	t.Helper()
	k := &sink{remote: req.RemoteAddr}
	req.Sink = k
	c, res, err := b.Connect(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	c.Start()
	return c, k, res
}

func subscribe(t *testing.T, c *Client, reqs ...SubscribeRequest) []SubscribeResult {
	t.Helper()
	res := c.Subscribe(reqs)
	for i, r := range res {
		if r.Err != nil {
			t.Fatalf("subscribe %q: %v", reqs[i].Filter, r.Err)
		}
	}
	c.SendRetained(res)
	return res
}

func publish(t *testing.T, c *Client, topic, payload string, qos byte, retain bool) PublishResult {
	t.Helper()
	res, err := c.Publish(&message.Message{Topic: topic, Payload: []byte(payload), QoS: qos, Retain: retain})
	if err != nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
	return res
}

func wantPayloads(t *testing.T, k *sink, want ...string) {
	t.Helper()
	got := k.payloads()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("payloads %q, want %q", got, want)
	}
}
