package broker

import (
	"github.com/ternmq/tern/internal/store"
	"github.com/ternmq/tern/internal/topic"
)

// Subscribe adds or replaces subscriptions and reports, per filter, the granted QoS or why not.
// Retained messages are not sent here: the face acknowledges the subscribe first and then calls
// SendRetained with these results.
func (c *Client) Subscribe(reqs []SubscribeRequest) []SubscribeResult {
	return c.SubscribeInto(make([]SubscribeResult, len(reqs)), reqs)
}

// SubscribeInto is Subscribe writing the results into out, which has room for one per request;
// a face that subscribes a device at every connect passes an array on its stack, so the results
// leave no garbage among the connection's long-lived objects. It returns out[:len(reqs)].
func (c *Client) SubscribeInto(out []SubscribeResult, reqs []SubscribeRequest) []SubscribeResult {
	out = out[:len(reqs)]
	clear(out)
	if !c.lock() {
		for i := range out {
			out[i].Err = ErrSessionTakenOver
		}
		return out
	}
	s, b := c.s, c.s.b
	cfg := &b.cfg
	// Only a session on disk stores its subscriptions; a memory one skips collecting them.
	var changed []store.Subscription
	stored := s.durable() && !s.deleted
	for i, r := range reqs {
		f, err := topic.ParseFilter(r.Filter)
		if err != nil {
			out[i].Err = ErrFilterInvalid
			continue
		}
		if !c.mayReceive(r.Filter) {
			out[i].Err = ErrNotAuthorized
			b.stats.NotAuthorized.Add(1)
			if b.warn.due("subscribe not authorized") {
				b.log.Warn("subscribe not authorized", "identity", c.Identity(), "client", c.ClientID(), "filter", r.Filter)
			}
			continue
		}
		old := s.subs.get(r.Filter)
		if old == nil && cfg.MaxSubscriptions > 0 && s.subs.len() >= cfg.MaxSubscriptions {
			out[i].Err = ErrQuotaExceeded
			continue
		}
		sub := newSubscription(store.Subscription{
			Filter: r.Filter, QoS: min(r.QoS, cfg.MaxQoS), NoLocal: r.NoLocal,
			RetainAsPublished: r.RetainAsPublished, RetainHandling: r.RetainHandling, ID: r.ID,
		})
		s.subs.put(sub)
		b.indexAdd(f, s, sub, old == nil)
		if old == nil {
			b.stats.Subscriptions.Add(1)
		}
		out[i] = SubscribeResult{QoS: sub.QoS, Existed: old != nil, sub: sub}
		if stored {
			changed = append(changed, sub.Subscription)
		}
	}
	s.storeSubsLocked(changed, nil)
	c.syncAndUnlock()
	for i, r := range out {
		if r.Err == nil && !r.Existed {
			c.announceSubscription(reqs[i].Filter, true)
		}
	}
	return out
}

// mayReceive reports whether the client may subscribe to filter (see the function mayReceive).
func (c *Client) mayReceive(filter string) bool {
	return mayReceive(c.principal, c.ClientID(), filter, c.peer)
}

// syncAndUnlock waits, for a session that outlives its connection, until what was just stored
// of its subscriptions is on disk, so a subscription that was acknowledged survives a crash.
// Caller holds the session lock.
func (c *Client) syncAndUnlock() {
	s := c.s
	durable := s.durable() && s.expiry > 0
	s.mu.Unlock()
	if durable {
		if err := c.s.b.store.Sync().Wait(); err != nil {
			c.s.b.storeFailed("syncing a session", err)
		}
	}
}

// SendRetained delivers the retained messages the given subscribe results ask for: for each new
// non-shared subscription (retain handling 0, or 1 when it did not exist before), every retained
// message matching its filter, flagged retained.
func (c *Client) SendRetained(results []SubscribeResult) {
	for _, r := range results {
		sub := r.sub
		if r.Err != nil || sub == nil {
			continue
		}
		f := sub.filter()
		if f.Group != "" || sub.RetainHandling == 2 || (sub.RetainHandling == 1 && r.Existed) {
			continue
		}
		t := c.s.b.now()
		for _, m := range c.s.b.retained.match(f.Path) {
			if m.Expired(t) {
				continue
			}
			p := publication{msg: m, owned: m, at: t, many: true}
			c.s.deliver(&p, min(m.QoS, sub.QoS), true, sub.ids())
		}
	}
}

// Unsubscribe removes subscriptions and reports, per filter, whether it existed.
func (c *Client) Unsubscribe(filters []string) []bool {
	out := make([]bool, len(filters))
	if !c.lock() {
		return out
	}
	s, b := c.s, c.s.b
	var removed []string
	for i, f := range filters {
		sub := s.subs.remove(f)
		if sub == nil {
			continue
		}
		b.indexRemove(sub.filter(), s)
		b.stats.Subscriptions.Add(-1)
		out[i] = true
		removed = append(removed, f)
	}
	s.storeSubsLocked(nil, removed)
	c.syncAndUnlock()
	for i, ok := range out {
		if ok {
			c.announceSubscription(filters[i], false)
		}
	}
	return out
}
