package pebblestore

import (
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Pebble reports a failed write-ahead-log write or sync by calling Logger.Fatalf from inside
// DB.Apply (db.go: "pebble: fatal commit error"), and its default logger then exits the process.
// A broker that cannot write should stop accepting what it cannot keep, not vanish: our logger's
// Fatalf panics with fatalError instead, every Apply and LogData recovers it, and the store enters
// the failed state (writes refused with ErrFailed, reads still served).
//
// Two limits remain, both Pebble's: a Fatalf on one of Pebble's own goroutines (a MANIFEST write
// during a background flush or compaction) cannot be recovered by us and still ends the process,
// after the cause is logged; and a failure while Pebble rotates its log unlocks a mutex twice,
// which Go treats as fatal. A restart then resumes from what was synced.

// fatalError is what pebbleLogger.Fatalf panics with, so that our recover tells Pebble's fatal
// report from any other panic. It unwraps to the error Pebble formatted into the message, so a
// caller can still tell a full disk (ENOSPC) from a broken one.
type fatalError struct {
	msg   string
	cause error
}

func (e *fatalError) Error() string { return e.msg }

func (e *fatalError) Unwrap() error { return e.cause }

// pebbleLogger routes Pebble's log lines to the store's slog.Logger.
type pebbleLogger struct{ s *Store }

func (l pebbleLogger) Infof(format string, args ...any) {
	l.s.log.Debug(fmt.Sprintf(format, args...), "component", "pebble")
}

func (l pebbleLogger) Errorf(format string, args ...any) { l.s.errorf(format, args...) }

func (l pebbleLogger) Fatalf(format string, args ...any) {
	e := &fatalError{msg: fmt.Sprintf(format, args...)}
	for _, a := range args {
		if err, ok := a.(error); ok {
			e.cause = err
			break
		}
	}
	// Fail (and log) before panicking: on one of Pebble's goroutines the panic ends the process,
	// and the log line is then all that tells why.
	l.s.fail(e)
	panic(e)
}

// refusalLogEvery spaces the reminders that writes are still being refused.
const refusalLogEvery = time.Minute

// fail puts the store in the failed state, logging the cause the first time, and returns the
// error every refused write reports from now on.
func (s *Store) fail(cause error) error {
	err := fmt.Errorf("%w: %w", ErrFailed, cause)
	if s.failure.CompareAndSwap(nil, &err) {
		s.lastRefusalLog.Store(time.Now().UnixNano())
		s.log.Error("pebblestore: storage failed; refusing writes until restart",
			"dir", s.dir, "err", cause)
	}
	return *s.failure.Load()
}

// failed returns the failure, or nil while the store is healthy.
func (s *Store) failed() error {
	if p := s.failure.Load(); p != nil {
		return *p
	}
	return nil
}

// refuse returns the failure for a refused write, reminding the log at most once a minute.
func (s *Store) refuse(err error) error {
	now := time.Now().UnixNano()
	last := s.lastRefusalLog.Load()
	if now-last >= int64(refusalLogEvery) && s.lastRefusalLog.CompareAndSwap(last, now) {
		s.log.Warn("pebblestore: still refusing writes", "dir", s.dir, "err", err)
	}
	return err
}

// recovered turns a panic out of Pebble into the failed state. Pebble panics with our fatalError
// after a failed log write or sync; it panics with the log writer's error itself when a write
// meets an earlier failed flush (db.go commitWrite), and then it still holds its commit pipeline's
// lock. Anything else is a bug and keeps panicking.
func (s *Store) recovered(r any) error {
	var fe *fatalError
	switch v := r.(type) {
	case *fatalError:
		fe = v
	case error:
		s.wedged.Store(true)
		err := s.fail(v)
		s.sync.abandon(err)
		return err
	default:
		panic(r)
	}
	return s.fail(fe)
}

// writable is nil while the store takes writes: not failed, and the disk not full.
func (s *Store) writable() error {
	if err := s.failed(); err != nil {
		return err
	}
	if s.bg.noSpace.Load() {
		return ErrNoSpace
	}
	return nil
}

// commit applies b without waiting for the disk. The caller holds the gate. b is consumed.
func (s *Store) commit(b *pebble.Batch) (err error) {
	if err := s.writable(); err != nil {
		_ = b.Close()
		return s.refuse(err)
	}
	defer func() {
		if r := recover(); r != nil {
			// b is not closed: Pebble may still reference a batch whose commit broke off.
			err = s.recovered(r)
		}
	}()
	if err := b.Commit(pebble.NoSync); err != nil {
		_ = b.Close()
		return fmt.Errorf("pebblestore: write: %w", err)
	}
	s.sync.applied.Add(1)
	return b.Close()
}

// Health implements store.Store.
func (s *Store) Health() error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.exit()
	return s.writable()
}
