package pebblestore

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/ternmq/tern/internal/store"
)

// Durability: every write is applied with pebble.NoSync, so it is in the write-ahead log's buffer
// (and the memtable) when it returns. One goroutine, the syncer, makes the log durable with
// db.LogData(mark, pebble.Sync) (a sync mark, marks.go): a LogData record is a non-empty batch (Batch.Empty is false
// for it, so the commit pipeline does not skip it), its commit queues a sync request on the same
// record.LogWriter that holds every earlier NoSync record, and LogWriter's flush loop writes all
// buffered blocks before it fsyncs and answers the request. A log that was rotated meanwhile was
// closed with an fsync (LogWriter.Close syncs), so one LogData covers every write applied before
// it began.
//
// Tickets: Sync hands every caller between two cycles the same pending ticket; the syncer takes it,
// fsyncs once and completes it. A caller's writes were applied before its Sync call, which came
// before the syncer took the ticket, which comes before the fsync: so the ticket covers them. The
// callers waiting during one fsync share the next one (group commit).

type syncer struct {
	// applied counts committed batches; synced is the value of applied that the last fsync
	// covered. Equal means nothing waits for the disk and Sync returns nil.
	applied atomic.Uint64
	synced  atomic.Uint64
	// fsyncs counts log syncs, for benchmarks.
	fsyncs atomic.Uint64

	mu      sync.Mutex
	pending *store.Ticket // handed out by Sync, taken by the next cycle
	running *store.Ticket // the ticket of the cycle under way
	kick    chan struct{}
	quit    chan struct{}
	done    chan struct{}

	// Test hooks: called when a cycle has taken its ticket, and after each fsync.
	testTook, testSynced atomic.Pointer[func()]
}

func (y *syncer) start(s *Store) {
	y.kick = make(chan struct{}, 1)
	y.quit = make(chan struct{})
	y.done = make(chan struct{})
	go y.run(s)
}

func (y *syncer) run(s *Store) {
	defer close(y.done)
	var tick <-chan time.Time
	if s.opts.Sync == SyncInterval {
		t := time.NewTicker(s.opts.Interval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-y.kick:
		case <-tick:
		case <-y.quit:
			y.cycle(s) // a last cycle for the tickets handed out before Close
			return
		}
		y.cycle(s)
	}
}

// cycle takes the pending ticket, syncs and completes it. In SyncInterval mode it runs with no
// ticket and syncs only if something was written since the last time.
func (y *syncer) cycle(s *Store) {
	y.mu.Lock()
	t := y.pending
	y.pending = nil
	y.running = t
	y.mu.Unlock()
	if h := y.testTook.Load(); h != nil {
		(*h)()
	}
	err := y.syncWAL(s)
	y.mu.Lock()
	if y.running != t { // abandon completed it
		t = nil
	}
	y.running = nil
	y.mu.Unlock()
	if t != nil {
		t.Complete(err)
	}
}

func (y *syncer) syncWAL(s *Store) (err error) {
	if err := s.failed(); err != nil {
		return err
	}
	w := y.applied.Load()
	if w == y.synced.Load() {
		return nil
	}
	defer func() {
		if r := recover(); r != nil {
			err = s.recovered(r)
		}
	}()
	if err := s.db.LogData(s.markData(), pebble.Sync); err != nil {
		return s.fail(fmt.Errorf("sync write-ahead log: %w", err))
	}
	y.fsyncs.Add(1)
	y.synced.Store(w)
	if h := y.testSynced.Load(); h != nil {
		(*h)()
	}
	return nil
}

// stop ends the syncer after its last cycle. When Pebble is wedged the syncer may be stuck inside
// LogData for good; abandon has completed its tickets, so stop does not wait for it.
func (y *syncer) stop(s *Store) {
	close(y.quit)
	if !s.wedged.Load() {
		<-y.done
	}
}

// abandon completes the pending and running tickets with err: the syncer may never return from
// Pebble to do it.
func (y *syncer) abandon(err error) {
	y.mu.Lock()
	p, r := y.pending, y.running
	y.pending, y.running = nil, nil
	y.mu.Unlock()
	if p != nil {
		p.Complete(err)
	}
	if r != nil {
		r.Complete(err)
	}
}

func doneTicket(err error) *store.Ticket {
	t := store.NewTicket()
	t.Complete(err)
	return t
}

// Sync implements store.Store. In SyncInterval mode it returns nil: the ticker syncs. After a
// failure it returns a ticket completed with the failure.
func (s *Store) Sync() *store.Ticket {
	if err := s.enter(); err != nil {
		return doneTicket(err)
	}
	defer s.exit()
	return s.ticket(s.opts.Sync == SyncInterval)
}

// ticket is Sync for a caller that holds the gate. lazy returns nil at once (SyncInterval);
// otherwise the ticket covers every write applied so far, whatever the mode, so that the rare
// writes that must be durable when they return (records) can have it in SyncInterval mode too.
func (s *Store) ticket(lazy bool) *store.Ticket {
	y := &s.sync
	if s.failed() == nil && (lazy || y.applied.Load() == y.synced.Load()) {
		return nil
	}
	y.mu.Lock()
	// Checked under y.mu: a failure is recorded before abandon takes y.mu, so a ticket registered
	// here after abandon ran cannot be left behind.
	if err := s.failed(); err != nil {
		y.mu.Unlock()
		return doneTicket(err)
	}
	t := y.pending
	if t == nil {
		t = store.NewTicket()
		y.pending = t
		select {
		case y.kick <- struct{}{}:
		default: // already kicked; that cycle takes this ticket
		}
	}
	y.mu.Unlock()
	return t
}

// markData is the sync mark of the store's mode (marks.go).
func (s *Store) markData() []byte {
	if s.opts.Sync == SyncInterval {
		return markIntervalData
	}
	return markAlwaysData
}

// writeMark writes a mark of the store's mode, so that a crash before the first sync leaves the
// mode of what follows on record.
func (s *Store) writeMark(o *pebble.WriteOptions) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = s.recovered(r)
		}
	}()
	return s.db.LogData(s.markData(), o)
}
