package store

import "sync"

// Ticket completes when the writes it stands for are durable, or have failed to become so. A nil
// *Ticket is already complete with no error. Stores hand one ticket to every caller of Sync
// between two fsyncs, so a ticket costs nothing per write.
type Ticket struct {
	mu   sync.Mutex
	done bool
	// running: Complete is still calling functions; later ones queue behind them to keep order.
	running bool
	err     error
	fns     []func(error)
	ch      chan struct{}
}

// NewTicket returns an incomplete ticket.
func NewTicket() *Ticket { return &Ticket{ch: make(chan struct{})} }

// Then calls fn with the outcome once the ticket completes: at once if it has, otherwise from the
// goroutine that completes it, after the functions registered before it. fn must not block.
func (t *Ticket) Then(fn func(error)) {
	if t == nil {
		fn(nil)
		return
	}
	t.mu.Lock()
	if t.done && !t.running {
		err := t.err
		t.mu.Unlock()
		fn(err)
		return
	}
	t.fns = append(t.fns, fn)
	t.mu.Unlock()
}

// Wait blocks until the ticket completes and returns its outcome.
func (t *Ticket) Wait() error {
	if t == nil {
		return nil
	}
	<-t.ch
	return t.err
}

// Done reports whether the ticket has completed.
func (t *Ticket) Done() bool {
	if t == nil {
		return true
	}
	select {
	case <-t.ch:
		return true
	default:
		return false
	}
}

// Complete records the outcome and runs the registered functions in order. Only the store that
// made the ticket calls it, once.
func (t *Ticket) Complete(err error) {
	t.mu.Lock()
	t.done = true
	t.running = true
	t.err = err
	close(t.ch)
	for len(t.fns) > 0 {
		fns := t.fns
		t.fns = nil
		t.mu.Unlock()
		for _, fn := range fns {
			fn(err)
		}
		t.mu.Lock()
	}
	t.running = false
	t.mu.Unlock()
}
