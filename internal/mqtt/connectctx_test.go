package mqtt

import (
	"context"
	"errors"
	"testing"
	"time"
)

// waitDone waits for ctx to end, failing after 5 s.
func waitDone(t *testing.T, ctx context.Context) {
	t.Helper()
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the context did not end")
	}
}

// A CONNECT's context starts no timer unless something waits on it, and still ends as
// context.WithDeadline's does: at the deadline, for a waiter and for a child context, or when
// cancelled.
func TestConnectContext(t *testing.T) {
	t.Run("nobody waits", func(t *testing.T) {
		ctx := newConnectContext(time.Now().Add(time.Hour))
		if d, ok := ctx.Deadline(); !ok || d != ctx.deadline {
			t.Errorf("Deadline %v %v", d, ok)
		}
		if err := ctx.Err(); err != nil {
			t.Errorf("Err before the deadline: %v", err)
		}
		ctx.cancel()
		if ctx.timer != nil || ctx.done != nil {
			t.Error("a timer or channel was made though nothing waited")
		}
		if err := ctx.Err(); !errors.Is(err, context.Canceled) {
			t.Errorf("Err after cancel: %v", err)
		}
		waitDone(t, ctx) // Done after the end is closed at once
	})
	t.Run("deadline passes unwatched", func(t *testing.T) {
		ctx := newConnectContext(time.Now().Add(-time.Millisecond))
		if err := ctx.Err(); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Err after the deadline: %v", err)
		}
		waitDone(t, ctx)
		ctx.cancel()
		if err := ctx.Err(); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("cancel after the deadline changed Err to %v", err)
		}
	})
	t.Run("a waiter and a child see the deadline", func(t *testing.T) {
		ctx := newConnectContext(time.Now().Add(30 * time.Millisecond))
		child, stop := context.WithCancel(ctx)
		defer stop()
		waitDone(t, ctx)
		waitDone(t, child)
		if err := ctx.Err(); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Err: %v", err)
		}
		if err := child.Err(); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("child's Err: %v", err)
		}
	})
	t.Run("cancel releases a waiter", func(t *testing.T) {
		ctx := newConnectContext(time.Now().Add(time.Hour))
		done := ctx.Done()
		ctx.cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("cancel did not close Done")
		}
		if ctx.timer.Stop() {
			t.Error("the timer was still running after cancel")
		}
	})
}
