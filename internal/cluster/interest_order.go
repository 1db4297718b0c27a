package cluster

import (
	"sync"
	"sync/atomic"
	"time"
)

// A node's interest reaches the others asynchronously (sendInterest): a subscription made here
// is known elsewhere a link round trip later. For plain publishing that is accepted, as with
// NATS routes. For a request it is not: a client subscribes to its response topic and then
// publishes a request that another node answers at once, and if the request overtook the
// subscription on the link, the other node would route the answer by the old interest and drop
// it; the caller would wait out its timeout. So a message with a response topic waits, before
// it goes on a link, until that link carries this node's interest as of the publish. Interest
// frames and messages share each link's one ordered stream, so the answer finds the interest.
//
// interestOrder counts interest changes (gen) and, per link, the change its last interest frame
// covered (outLink.interestGen); tick is closed after each round of sendInterest.

// interestWait bounds that wait: a request whose node cannot ship its interest within it (a
// link stalled, a huge filter set) goes anyway, as before.
const interestWait = time.Second

type interestOrder struct {
	gen  atomic.Uint64
	mu   sync.Mutex
	tick chan struct{}
	// Test hooks: before (each round of sendInterest, before it reads the interest) and waiting
	// (a request starts to wait).
	before, waiting atomic.Pointer[func()]
}

// changed records an interest change (called by the core's WatchInterest, perhaps under its
// locks: it must not block).
func (ord *interestOrder) changed() { ord.gen.Add(1) }

// ticked returns the channel the next round closes.
func (ord *interestOrder) ticked() <-chan struct{} {
	ord.mu.Lock()
	defer ord.mu.Unlock()
	if ord.tick == nil {
		ord.tick = make(chan struct{})
	}
	return ord.tick
}

// round ends a round of sendInterest: every waiter looks again.
func (ord *interestOrder) round() {
	ord.mu.Lock()
	if ord.tick != nil {
		close(ord.tick)
		ord.tick = nil
	}
	ord.mu.Unlock()
}

func (ord *interestOrder) hook(p *atomic.Pointer[func()]) {
	if f := p.Load(); f != nil {
		(*f)()
	}
}

// awaitInterest waits until o carries interest change need, its link ends, or interestWait.
func (l *links) awaitInterest(o *outLink, need uint64) {
	if o.interestGen.Load() >= need {
		return
	}
	l.order.hook(&l.order.waiting)
	l.poke() // a round covers o even if the change's own round ran before o was up
	timer := time.NewTimer(interestWait)
	defer timer.Stop()
	for o.interestGen.Load() < need {
		tick := l.order.ticked()
		if o.interestGen.Load() >= need {
			return
		}
		select {
		case <-tick:
		case <-timer.C:
			return
		case <-o.done:
			return
		case <-l.done:
			return
		}
	}
}

// poke asks sendInterest for a round.
func (l *links) poke() {
	select {
	case l.dirty <- struct{}{}:
	default:
	}
}
