package mqtt

import (
	"context"
	"sync"
	"time"
)

// connectContext is the context of a CONNECT's call into the core (authentication, a cluster
// claim): it ends at the connect deadline. Unlike context.WithDeadline, it starts no timer until
// something asks for Done, which only a call that may wait does (an authorization URL, a claim
// over the cluster). An open broker's or a password's check never asks, and a connect storm then
// pays one small allocation per connection instead of four (the context, its timer, the cancel
// function), on the path every connection takes.
type connectContext struct {
	deadline time.Time
	mu       sync.Mutex
	done     chan struct{} // made by the first Done
	timer    *time.Timer   // started with done, while the deadline is ahead
	err      error
}

func newConnectContext(deadline time.Time) *connectContext {
	return &connectContext{deadline: deadline}
}

func (c *connectContext) Deadline() (time.Time, bool) { return c.deadline, true }

func (c *connectContext) Value(any) any { return nil }

// Done returns a channel closed at the deadline or by cancel.
func (c *connectContext) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		c.done = make(chan struct{})
		if c.err != nil {
			close(c.done)
		} else if d := time.Until(c.deadline); d <= 0 {
			c.endLocked(context.DeadlineExceeded)
		} else {
			c.timer = time.AfterFunc(d, func() { c.end(context.DeadlineExceeded) })
		}
	}
	return c.done
}

// Err is context.DeadlineExceeded once the deadline has passed (whether or not anyone asked for
// Done), context.Canceled after cancel, nil before either.
func (c *connectContext) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil && !time.Now().Before(c.deadline) {
		c.endLocked(context.DeadlineExceeded)
	}
	return c.err
}

// cancel ends the context when the call returns, releasing the timer and whatever still waits
// on Done.
func (c *connectContext) cancel() { c.end(context.Canceled) }

func (c *connectContext) end(err error) {
	c.mu.Lock()
	c.endLocked(err)
	c.mu.Unlock()
}

func (c *connectContext) endLocked(err error) {
	if c.err != nil {
		return
	}
	c.err = err
	if c.timer != nil {
		c.timer.Stop()
	}
	if c.done != nil {
		close(c.done)
	}
}
