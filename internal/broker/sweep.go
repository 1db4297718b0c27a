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
//
// It visits only the sessions on the sweep list, which a session joins when it queues something
// or its record needs saving, and leaves once its queue is empty and its record saved: walking
// every session each second cost 23-35 ms at 100,000 sessions (BenchmarkSweep), and would cost a
// third of a core at a million. Those it visits go to the back of the list, so a budget spent on
// the first does not starve the rest.
func (b *Broker) sweep(budget int) int {
	b.sweepMu.Lock()
	sessions := b.sweepList
	b.sweepList = nil
	b.sweepMu.Unlock()
	t := b.now()
	n := 0
	keep := sessions[:0]
	for _, s := range sessions {
		s.mu.Lock()
		if s.sink == nil && !s.deleted && n < budget {
			n += s.dropExpired(t, budget-n)
		}
		if s.dirty {
			s.saveLocked()
		}
		// A record that cannot be saved (a memory-only session, or expiry 0) keeps dirty set
		// until it can; it is written whole when that changes, so it need not keep its place.
		if s.deleted || s.queue.Len() == 0 && !(s.dirty && s.savable()) {
			s.sweepListed = false
		} else {
			keep = append(keep, s)
		}
		s.mu.Unlock()
	}
	// Sessions listed while this sweep ran come first next time; the ones kept follow them.
	b.sweepMu.Lock()
	b.sweepList = append(b.sweepList, keep...)
	b.sweepMu.Unlock()
	return n
}

// listForSweepLocked puts s on the sweep list unless it is there. Caller holds s.mu.
func (s *Session) listForSweepLocked() {
	if s.sweepListed {
		return
	}
	s.sweepListed = true
	b := s.b
	b.sweepMu.Lock()
	b.sweepList = append(b.sweepList, s)
	b.sweepMu.Unlock()
}
