package webhook

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
)

// attemptsNS holds one record per webhook: how many attempts each of its messages in flight has
// begun. The session keeps the messages across a crash; this keeps their attempt numbers, so a
// redelivery after a restart carries the next number and a message that used up its attempts
// goes to the dead-letter topic instead of starting over.
const attemptsNS = "webhook-attempts"

// attempts is a hook's attempt counts, persisted before every attempt. One record per hook, not
// one per message: an attempt costs one synced write, shared by the hook's concurrent workers,
// and an acknowledgement costs none; an acknowledged message simply leaves the record at its
// next write. A count left behind for a message that was acknowledged is harmless (message ids
// are never reused), and right if the acknowledgement itself was lost.
type attempts struct {
	save func([]byte) error

	mu   sync.Mutex
	live map[uint64]int // messages handed to the workers: attempts begun
	// prior are the counts read at start for messages not yet redelivered. A restarted session
	// re-sends its messages in flight before anything new, so the first new message shows that
	// the rest of prior will not come back, and they are dropped.
	prior   map[uint64]int
	ver     uint64 // bumped by each change that must be on disk
	saved   uint64 // the version on disk
	writing bool   // a worker is saving; the others wait for it
	wrote   *sync.Cond
}

func newAttempts(prior map[uint64]int, save func([]byte) error) *attempts {
	a := &attempts{save: save, live: map[uint64]int{}, prior: prior}
	a.wrote = sync.NewCond(&a.mu)
	return a
}

// sent is told of each delivery as the session hands it over, in the session's order, and
// returns the attempts the message has already begun.
func (a *attempts) sent(id uint64, dup bool) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !dup {
		a.prior = nil // every redelivery came before this message
		return 0
	}
	if n, ok := a.live[id]; ok {
		return n
	}
	n, ok := a.prior[id]
	if ok {
		delete(a.prior, id)
		a.live[id] = n
	}
	return n
}

// begin records that attempt n of message id starts, and returns once that is on disk. Workers
// that begin at the same time share one write.
func (a *attempts) begin(id uint64, n int) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.live[id] = n
	a.ver++
	mine := a.ver
	for a.saved < mine {
		if a.writing {
			a.wrote.Wait()
			continue
		}
		a.writing = true
		v, raw := a.ver, encodeAttempts(a.live, a.prior)
		a.mu.Unlock()
		err := a.save(raw)
		a.mu.Lock()
		a.writing = false
		if err == nil && v > a.saved {
			a.saved = v
		}
		a.wrote.Broadcast()
		if err != nil {
			return err
		}
	}
	return nil
}

// done forgets a message that was acknowledged; the record drops it at its next write.
func (a *attempts) done(id uint64) {
	a.mu.Lock()
	delete(a.live, id)
	a.mu.Unlock()
}

// The record: a version byte, then for each message its id and its attempts begun, both
// uvarints, in id order.
const attemptsVersion = 1

// maxAttemptEntries bounds what a record may hold when read back: a hook has at most its
// concurrency in flight, and max_concurrency is far below this.
const maxAttemptEntries = 1 << 16

func encodeAttempts(parts ...map[uint64]int) []byte {
	all := map[uint64]int{}
	for _, m := range parts {
		maps.Copy(all, m)
	}
	b := make([]byte, 1, 1+len(all)*2*binary.MaxVarintLen64)
	b[0] = attemptsVersion
	for _, id := range slices.Sorted(maps.Keys(all)) {
		b = binary.AppendUvarint(b, id)
		b = binary.AppendUvarint(b, uint64(all[id]))
	}
	return b
}

var errAttemptsRecord = errors.New("webhook attempts record unreadable")

func decodeAttempts(b []byte) (map[uint64]int, error) {
	if len(b) == 0 || b[0] != attemptsVersion {
		return nil, fmt.Errorf("%w: unknown version", errAttemptsRecord)
	}
	out := map[uint64]int{}
	for b = b[1:]; len(b) > 0; {
		id, k := binary.Uvarint(b)
		if k <= 0 {
			return nil, fmt.Errorf("%w: bad message id", errAttemptsRecord)
		}
		b = b[k:]
		n, k := binary.Uvarint(b)
		if k <= 0 || n > 1<<31-1 {
			return nil, fmt.Errorf("%w: bad attempt count", errAttemptsRecord)
		}
		b = b[k:]
		if len(out) >= maxAttemptEntries {
			return nil, fmt.Errorf("%w: more than %d messages", errAttemptsRecord, maxAttemptEntries)
		}
		out[id] = int(n)
	}
	return out, nil
}
