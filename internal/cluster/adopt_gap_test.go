package cluster

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/message"
)

// holdAdopt makes n stop, once, when it applies a cmdAdopt: after the directory change and
// before its core takes any session up. reached is closed when it stops; it goes on once release
// is closed (or after waitTimeout, so a failing test cannot hang the apply goroutine for ever).
func holdAdopt(n *tnode, release <-chan struct{}) (reached <-chan struct{}) {
	r := make(chan struct{})
	done := false
	h := func(c command) {
		if c.Kind != cmdAdopt || done {
			return
		}
		done = true // the apply goroutine only
		close(r)
		select {
		case <-release:
		case <-time.After(waitTimeout):
		}
	}
	n.fsm.beforeHandover.Store(&h)
	return r
}

func waitClosed(t *testing.T, what string, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(waitTimeout):
		t.Fatalf("not within %s: %s", waitTimeout, what)
	}
}

// A QoS 1 message published while a dead node's session is being adopted (the directory names
// the adopting node, its core does not hold the session yet) is acknowledged only once it is in
// the session's queue: published on another node, and on the adopting node itself.
func TestPublishDuringAdoptionIsKept(t *testing.T) {
	tc, n1, n2, n3 := brokerCluster(t)
	eventually(t, "n1 leads", n1.IsLeader)
	c3, _, _ := mustConn(t, n3, persistent("s"))
	sub(t, c3, "t/#")
	c3.Disconnect(broker.DisconnectRequest{Graceful: true})
	synced(t, n3, n1, n2)
	// The leader gives the session to one of n1 and n2 (sorted, both reachable).
	adopter, other := n1, n2
	if adoptTarget("s", []string{"n1", "n2"}) == "n2" {
		adopter, other = n2, n1
	}
	pubOther, _, _ := mustConn(t, other, broker.ConnectRequest{ClientID: "pub-other"})
	pubHere, _, _ := mustConn(t, adopter, broker.ConnectRequest{ClientID: "pub-here"})
	pubAcked(t, pubOther, "t/x", "before")
	synced(t, n1, n2, n3)

	release := make(chan struct{})
	atAdopter := holdAdopt(adopter, release)
	atOther := holdAdopt(other, release)
	tc.isolate(n3, false)
	if err := n3.Close(); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, "the adopting node applies the adoption", atAdopter)
	waitClosed(t, "the other node applies the adoption", atOther)
	if e, _ := other.fsm.dir.get("s"); e.owner != adopter.id {
		t.Fatalf("the directory names %q, want %q", e.owner, adopter.id)
	}

	// Each publish either completes (its copy was placed, or not, while the adopting node is
	// held) or is seen waiting for the adopting node to apply the adoption.
	type published struct {
		res broker.PublishResult
		err error
	}
	publish := func(name string, c *broker.Client) <-chan published {
		waiting := make(chan struct{})
		var once sync.Once
		w := func() { once.Do(func() { close(waiting) }) }
		adopter.fsm.waiting.Store(&w)
		out := make(chan published, 1)
		done := make(chan struct{})
		go func() {
			res, err := c.Publish(&message.Message{Topic: "t/x", Payload: []byte(name), QoS: 1})
			if err == nil && res.Durable != nil {
				_ = res.Durable.Wait() // read again below
			}
			out <- published{res, err}
			close(done)
		}()
		select {
		case <-done:
		case <-waiting:
		case <-time.After(waitTimeout):
			t.Fatalf("publish %s neither completed nor waited", name)
		}
		return out
	}
	// From the other node, itself applying the adoption: sent to the adopting node, which
	// must not deliver it before its core holds the session.
	fromOther := publish("other", pubOther)
	// On the adopting node: its directory names it, its core does not hold the session yet.
	fromHere := publish("here", pubHere)
	close(release)
	for name, ch := range map[string]<-chan published{"other": fromOther, "here": fromHere} {
		var p published
		select {
		case p = <-ch:
		case <-time.After(waitTimeout):
			t.Fatalf("publish %s did not complete", name)
		}
		err := p.err
		if err == nil && p.res.Durable != nil {
			err = p.res.Durable.Wait()
		}
		if err != nil {
			t.Fatalf("publish %s refused: %v", name, err)
		}
	}
	_, k, res := mustConn(t, adopter, persistent("s"))
	if !res.SessionPresent {
		t.Fatal("the adopted session is not present")
	}
	// "other" and "here" both wait for the hand-over: either may come first.
	deadline := time.Now().Add(waitTimeout)
	for len(k.payloads()) < 3 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond) // polling, as eventually does
	}
	if got := k.payloads(); !slices.Equal(got, []string{"before", "other", "here"}) && !slices.Equal(got, []string{"before", "here", "other"}) {
		t.Fatalf("the adopted session received %q", got)
	}
}
