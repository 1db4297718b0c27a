package broker

// scheduleSweep arranges the next sweep of expired messages, a bounded amount each
// SweepInterval, so a client that never comes back does not keep its expired backlog on disk
// forever.
func (b *Broker) scheduleSweep() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || b.cfg.SweepInterval <= 0 {
		return
	}
	b.sweepTimer = b.clock.AfterFunc(b.cfg.SweepInterval, func() {
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			return
		}
		b.sweeping.Add(1)
		b.mu.Unlock()
		b.sweep(b.cfg.SweepBudget)
		b.sweeping.Done()
		b.scheduleSweep()
	})
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
	t := b.now()
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
