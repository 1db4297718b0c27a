package cluster

import (
	"errors"
	"net"
	"testing"

	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/message"
)

// A QoS 1 message for a persistent session on a node whose link is ending (up when the route
// looked, closed when the message was to be sent: what a dead node behind a proxy looks like
// after each dial) is refused, not acknowledged with no copy made.
func TestDurableCopyRefusedOnAnEndingLink(t *testing.T) {
	_, n1, _, n3 := brokerCluster(t)
	c3, _, _ := mustConn(t, n3, persistent("s"))
	sub(t, c3, "t/#")
	c3.Disconnect(broker.DisconnectRequest{Graceful: true})
	synced(t, n3, n1)
	pub, _, _ := mustConn(t, n1, broker.ConnectRequest{ClientID: "pub"})
	pubAcked(t, pub, "t/x", "before")

	l := n1.links
	l.mu.Lock()
	p := l.peers["n3"]
	l.mu.Unlock()
	a, b := net.Pipe()
	defer b.Close()
	ending := &outLink{l: l, p: p, pending: map[uint64]*acceptance{}, reqs: map[uint64]chan frame{}, done: make(chan struct{})}
	ending.Init(a, &l.out, ending)
	ending.CloseNow(errors.New("test: the link ends"))
	real := p.out.Swap(ending)
	defer p.out.CompareAndSwap(ending, real)

	res, err := pub.Publish(&message.Message{Topic: "t/x", Payload: []byte("lost?"), QoS: 1})
	if err == nil {
		err = res.Durable.Wait()
	}
	if !errors.Is(err, errUnreachable) {
		t.Fatalf("a message for a session on a node whose link was ending: %v, want %v", err, errUnreachable)
	}
}
