package cluster

import (
	"slices"
	"sync"
	"testing"

	"github.com/ternmq/tern/internal/message"
)

// A request published right after its caller subscribed to the response topic is answered on
// another node at once; the answer must come back although the caller's node had not yet sent
// its new interest when the request was published. Here n1's interest sender is held until the
// request either waits for it (the fix) or has reached the service (the defect: the answer is
// then routed by n1's old interest and dropped).
func TestRequestFollowsItsCallersInterest(t *testing.T) {
	_, n1, n2, _ := brokerCluster(t)
	caller, service, ck, sk := callAcross(t, n1, n2)

	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	t.Cleanup(free)
	hold := func() { <-release }
	n1.links.order.before.Store(&hold)
	n1.links.order.waiting.Store(&free)

	sub(t, caller, "reply/fresh") // n1's interest changes; its sender is held
	published := make(chan error, 1)
	go func() {
		m := &message.Message{Topic: "$rpc/demo/echo", Payload: []byte("ping"), QoS: 1}
		m.Props.ResponseTopic = "reply/fresh"
		m.Props.CorrelationData = []byte("fresh")
		_, err := caller.Publish(m)
		published <- err
	}()
	eventually(t, "the service receives the request", func() bool { return len(sk.withCorr("fresh")) > 0 })
	// The service answers once, at once, as a service does.
	answer := &message.Message{Topic: "reply/fresh", Payload: []byte("pong")}
	answer.Props.CorrelationData = []byte("fresh")
	if _, err := service.Publish(answer); err != nil {
		t.Fatal(err)
	}
	free()
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	eventually(t, "the answer reaches the caller on n1", func() bool {
		return slices.ContainsFunc(ck.withCorr("fresh"), func(m *message.Message) bool { return string(m.Payload) == "pong" })
	})
}
