package broker

import "time"

// sweepLoop removes expired messages from queues in the background, a bounded amount per tick,
// so a client that never comes back does not keep its expired backlog on disk forever.
func (b *Broker) sweepLoop() {
	defer close(b.sweepDone)
	if b.cfg.SweepInterval <= 0 {
		<-b.stopSweep
		return
	}
	tick := time.NewTicker(b.cfg.SweepInterval)
	defer tick.Stop()
	for {
		select {
		case <-b.stopSweep:
			return
		case <-tick.C:
			b.sweep(b.cfg.SweepBudget)
		}
	}
}

// sweep drops expired messages from the heads of offline sessions' queues, at most budget in all,
// and returns how many it dropped. Connected sessions skip expired messages as they deliver. It
// also saves records whose drop counters changed.
func (b *Broker) sweep(budget int) int {
	b.mu.Lock()
	sessions := make([]*Session, 0, len(b.sessions))
	for _, s := range b.sessions {
		sessions = append(sessions, s)
	}
	b.mu.Unlock()
	t := now()
	n := 0
	for _, s := range sessions {
		s.mu.Lock()
		if s.sink == nil && !s.deleted && n < budget {
			n += s.dropExpired(t, budget-n)
		}
		if s.dirty {
			s.saveLocked()
		}
		s.mu.Unlock()
	}
	return n
}
