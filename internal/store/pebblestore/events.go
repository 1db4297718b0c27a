package pebblestore

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Pebble retries a failed flush or compaction at once and forever (compaction.go: "TODO: count
// consecutive flush errors and backoff"): on a full disk that is hundreds of failed attempts and
// log lines a second and a core kept busy, until space returns. Its only hook there is the
// BackgroundError event, called on the flushing goroutine before the retry is scheduled, so the
// store backs off by waiting inside it: the wait doubles from backoffMin to backoffMax while
// failures continue, and the first successful flush or compaction resets it. Once space returns
// the next retry succeeds, and nothing else needs doing (the log of acknowledged writes was never
// touched by a failed flush).
//
// The wait holds Pebble's database mutex, which writers need only to switch memtables (they are
// stalled anyway while the memtable cannot be flushed) and which reads do not take; the store's
// own users of it (DiskBytes) skip the database while it backs off, and Close cuts the wait short.

const (
	backoffMin = 50 * time.Millisecond
	backoffMax = 5 * time.Second
	// errorLogEvery spaces repeated error reports of one kind.
	errorLogEvery = 30 * time.Second
)

// background is the state of Pebble's background work as the store sees it.
type background struct {
	failures   atomic.Int64 // consecutive failed background operations
	backingOff atomic.Bool
	noSpace    atomic.Bool   // the last failure was a full disk: writes are refused (ErrNoSpace)
	stop       chan struct{} // closed by Close: waits end at once
	corrupt    atomic.Pointer[pebble.DataCorruptionInfo]
	limiter    logLimiter
}

func (s *Store) eventListener() *pebble.EventListener {
	return &pebble.EventListener{
		BackgroundError: s.backgroundError,
		DataCorruption:  s.dataCorruption,
		FlushEnd: func(i pebble.FlushInfo) {
			if i.Err == nil {
				s.backgroundOK()
			}
		},
		CompactionEnd: func(i pebble.CompactionInfo) {
			if i.Err == nil {
				s.backgroundOK()
			}
		},
	}
}

func (s *Store) backgroundError(err error) {
	bg := &s.bg
	n := bg.failures.Add(1)
	if isNoSpace(err) {
		bg.noSpace.Store(true)
	}
	ok, skipped := bg.limiter.allow("background", time.Now())
	if n == 1 {
		s.log.Error("pebblestore: background write failed; retrying with back-off (is the disk full?)",
			"dir", s.dir, "err", err)
	} else if ok {
		s.log.Error("pebblestore: background writes still failing",
			"dir", s.dir, "failures", n, "unreported", skipped, "err", err)
	}
	wait := backoffFor(n)
	bg.backingOff.Store(true)
	defer bg.backingOff.Store(false)
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
	case <-bg.stop:
	}
}

func (s *Store) backgroundOK() {
	s.bg.noSpace.Store(false)
	if n := s.bg.failures.Swap(0); n > 0 {
		s.log.Warn("pebblestore: background writes succeed again", "dir", s.dir, "failures", n)
	}
}

// dataCorruption replaces Pebble's default, which is a fatal log line (and so, with our logger,
// a panic on whatever goroutine read the damaged block). The read that met it returns the error.
func (s *Store) dataCorruption(i pebble.DataCorruptionInfo) {
	if s.bg.corrupt.CompareAndSwap(nil, &i) {
		s.log.Error("pebblestore: damaged file in the data directory; reads of the keys it holds fail",
			"dir", s.dir, "file", i.Path, "err", i.Details)
	}
}

// logLimiter lets one line of each kind through per errorLogEvery and counts the others.
type logLimiter struct {
	mu      sync.Mutex
	last    map[string]time.Time
	skipped map[string]int
}

func (l *logLimiter) allow(kind string, now time.Time) (ok bool, skipped int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == nil {
		l.last, l.skipped = map[string]time.Time{}, map[string]int{}
	}
	if t, seen := l.last[kind]; seen && now.Sub(t) < errorLogEvery {
		l.skipped[kind]++
		return false, 0
	}
	l.last[kind] = now
	skipped = l.skipped[kind]
	l.skipped[kind] = 0
	return true, skipped
}

// errorf is pebbleLogger.Errorf's body: Pebble's error lines, at most one per format per
// errorLogEvery (the map is bounded by the format strings in Pebble's code).
func (s *Store) errorf(format string, args ...any) {
	if ok, skipped := s.bg.limiter.allow(format, time.Now()); ok {
		if skipped > 0 {
			s.log.Error(fmt.Sprintf(format, args...), "component", "pebble", "similar_unreported", skipped)
			return
		}
		s.log.Error(fmt.Sprintf(format, args...), "component", "pebble")
	}
}

// backoffFor is the wait after the n-th consecutive failure.
func backoffFor(n int64) time.Duration {
	return min(backoffMin<<min(n-1, 10), backoffMax)
}
