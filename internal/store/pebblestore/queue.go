package pebblestore

import (
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/ternmq/tern/internal/store"
)

// Read-ahead bounds: Front decodes at most this much of a queue ahead of its head.
const (
	aheadItems = 64
	aheadBytes = 1 << 20
)

// queueSummary is what Open learns of a queue from its entries' headers: enough to serve Len and
// Bytes and to find the head, and nothing that grows with the queue.
type queueSummary struct {
	head, tail uint64 // entries lie in [head, tail); the next push takes tail
	n          int
	bytes      int64
	shared     int // entries referencing a shared body
}

// queue is a session's queue: entries 'q' id seq in Pebble, and in memory only its summary and a
// read-ahead of the entries from the head on. Not safe for concurrent use (store.Queue).
type queue struct {
	s      *Store
	prefix []byte // idPrefix(kindQueue, id)
	queueSummary
	// ahead[pos:] are the entries with seq in [head, aheadEnd), decoded, in order. Once the queue
	// is being read (reading), pushes append to it while it holds everything (aheadEnd == tail)
	// and has room, so a queue drained as fast as it fills never reads back what it just wrote;
	// a queue nobody reads keeps nothing.
	ahead    []aheadItem
	pos      int
	aheadEnd uint64
	aheadSum int64
	reading  bool
	buf      []byte // encoding scratch, see trimScratch
}

// trimScratch drops an encoding buffer that a large message grew, so that one big message does
// not stay allocated per queue.
func trimScratch(b []byte) []byte {
	if cap(b) > 64<<10 {
		return nil
	}
	return b
}

type aheadItem struct {
	seq    uint64
	it     store.Item
	size   int64
	shared bool
	msgID  uint64
}

func newQueue(s *Store, id string, sum queueSummary) *queue {
	return &queue{s: s, prefix: idPrefix(kindQueue, id), queueSummary: sum, aheadEnd: sum.head}
}

// Push implements store.Queue.
func (q *queue) Push(it store.Item) error {
	s := q.s
	if err := s.enter(); err != nil {
		return err
	}
	defer s.exit()
	seq := q.tail
	shared := it.Shared && it.Msg.ID != 0 // an unstamped message has no id to share under
	q.buf = appendEntry(q.buf[:0], it, shared, false, 0, false)
	b := s.db.NewBatch()
	_ = b.Set(seqKey(q.prefix, seq), q.buf, nil)
	var err error
	if shared {
		err = s.commitShared(b, func(bs *bodies) { bs.add(b, it.Msg) })
	} else {
		err = s.commit(b)
	}
	q.buf = trimScratch(q.buf)
	if err != nil {
		return err
	}
	s.noteID(it.Msg.ID)
	size := int64(it.Size())
	q.tail++
	q.n++
	q.bytes += size
	if shared {
		q.shared++
	}
	if q.reading && q.aheadEnd == seq && q.hasRoom(size) {
		q.appendAhead(aheadItem{seq: seq, it: it, size: size, shared: shared, msgID: it.Msg.ID})
		q.aheadEnd = seq + 1
	}
	return nil
}

// hasRoom reports whether the read-ahead may take another entry of size bytes. It always takes
// one, however large.
func (q *queue) hasRoom(size int64) bool {
	n := len(q.ahead) - q.pos
	return n == 0 || (n < aheadItems && q.aheadSum+size <= aheadBytes)
}

// appendAhead adds an entry behind the read-ahead. A full buffer with consumed entries at its
// front slides down rather than grow, so it never exceeds twice the read-ahead's item bound.
func (q *queue) appendAhead(a aheadItem) {
	if len(q.ahead) == cap(q.ahead) && q.pos > 0 {
		n := copy(q.ahead, q.ahead[q.pos:])
		clear(q.ahead[n:])
		q.ahead, q.pos = q.ahead[:n], 0
	}
	q.ahead = append(q.ahead, a)
	q.aheadSum += a.size
}

// drained empties the read-ahead once everything in it was popped. A buffer grown for a burst is
// let go, so that an idle queue keeps next to nothing.
func (q *queue) drained() {
	if cap(q.ahead) > 16 {
		q.ahead = nil
	} else {
		q.ahead = q.ahead[:0]
	}
	q.pos, q.aheadSum = 0, 0
}

// Front implements store.Queue. The message is the one pushed while the queue was open, or a fresh
// decoded copy; never Pebble's memory.
func (q *queue) Front() (store.Item, bool, error) {
	if q.n == 0 {
		return store.Item{}, false, nil
	}
	a, err := q.front()
	if err != nil {
		return store.Item{}, false, err
	}
	q.reading = true
	return a.it, true, nil
}

// front returns the head entry, refilling the read-ahead from Pebble when it is empty.
func (q *queue) front() (*aheadItem, error) {
	if q.pos == len(q.ahead) {
		if err := q.fill(); err != nil {
			return nil, err
		}
	}
	return &q.ahead[q.pos], nil
}

// fill reads the entries after the read-ahead's end, up to its bounds, with one short-lived
// iterator (an open iterator would pin memtables and files between calls).
func (q *queue) fill() error {
	s := q.s
	if err := s.enter(); err != nil {
		return err
	}
	defer s.exit()
	q.drained()
	if want := min(q.n, aheadItems); cap(q.ahead) < want {
		q.ahead = make([]aheadItem, 0, want)
	}
	it, err := s.db.NewIter(&pebble.IterOptions{
		LowerBound: seqKey(q.prefix, q.aheadEnd),
		UpperBound: seqKey(q.prefix, q.tail),
	})
	if err != nil {
		return fmt.Errorf("pebblestore: read queue: %w", err)
	}
	ok := it.First()
	for ; ok; ok = it.Next() {
		a, full, err := q.decode(it)
		if err != nil {
			_ = it.Close()
			q.ahead, q.aheadSum = q.ahead[:0], 0
			return err
		}
		if full {
			break
		}
		q.appendAhead(a)
	}
	if err := it.Close(); err != nil {
		q.ahead, q.aheadSum = q.ahead[:0], 0
		return fmt.Errorf("pebblestore: read queue: %w", err)
	}
	if len(q.ahead) == 0 {
		return fmt.Errorf("pebblestore: queue %x: %d entries counted, none found", q.prefix[1:], q.n)
	}
	if ok {
		q.aheadEnd = q.ahead[len(q.ahead)-1].seq + 1
	} else {
		q.aheadEnd = q.tail // read to the end: pushes may append from here
	}
	return nil
}

// decode decodes the iterator's entry, or reports that the read-ahead is full without decoding
// it: the header's size says so before the body is touched.
func (q *queue) decode(it *pebble.Iterator) (a aheadItem, full bool, err error) {
	seq := seqOf(it.Key())
	v, err := it.ValueAndErr()
	if err != nil {
		return aheadItem{}, false, fmt.Errorf("pebblestore: read queue entry %d: %w", seq, err)
	}
	h, err := decodeEntryHeader(v)
	if err == nil && !q.hasRoom(h.size) {
		return aheadItem{}, true, nil
	}
	h, subIDs, msg, err := decodeEntry(v)
	if err == nil && h.shared() {
		msg, err = q.s.readBody(h.msgID)
	}
	if err != nil {
		return aheadItem{}, false, fmt.Errorf("pebblestore: queue entry %d: %w", seq, err)
	}
	return aheadItem{
		seq: seq, size: h.size, shared: h.shared(), msgID: h.msgID,
		it: store.Item{Msg: msg, QoS: h.qos, Retain: h.flags&entryRetain != 0, SubIDs: subIDs, Shared: h.shared(), Seq: h.seq},
	}, false, nil
}

// Pop implements store.Queue.
func (q *queue) Pop() error {
	if q.n == 0 {
		return nil
	}
	a, err := q.front()
	if err != nil {
		return q.popUnreadable(err)
	}
	s := q.s
	if err := s.enter(); err != nil {
		return err
	}
	defer s.exit()
	b := s.db.NewBatch()
	_ = b.Delete(seqKey(q.prefix, a.seq), nil)
	if a.shared {
		id := a.msgID
		err = s.commitShared(b, func(bs *bodies) { bs.drop(b, id) })
	} else {
		err = s.commit(b)
	}
	if err != nil {
		return err
	}
	q.head = a.seq + 1
	q.n--
	q.bytes -= a.size
	q.aheadSum -= a.size
	if a.shared {
		q.shared--
	}
	q.ahead[q.pos] = aheadItem{}
	q.pos++
	if q.pos == len(q.ahead) {
		q.drained()
	}
	return nil
}

// popUnreadable removes a head entry that cannot be decoded (its body gone, its bytes damaged),
// so that one bad entry does not block every entry behind it. Its size and body reference come
// from its header when that much is readable. Any other failure to read (I/O, a closed store) is
// returned as it is: the entry may well be readable later.
func (q *queue) popUnreadable(cause error) error {
	if !errors.Is(cause, errCorrupt) && !errors.Is(cause, errMissingBody) {
		return cause
	}
	s := q.s
	if err := s.enter(); err != nil {
		return err
	}
	defer s.exit()
	it, err := s.db.NewIter(&pebble.IterOptions{
		LowerBound: seqKey(q.prefix, q.aheadEnd),
		UpperBound: seqKey(q.prefix, q.tail),
	})
	if err != nil {
		return cause
	}
	if !it.First() {
		_ = it.Close()
		return cause
	}
	seq := seqOf(it.Key())
	var h entryHeader
	if v, err := it.ValueAndErr(); err == nil {
		h, _ = decodeEntryHeader(v) // zero when unreadable: no size, no reference
	}
	if err := it.Close(); err != nil {
		return cause
	}
	b := s.db.NewBatch()
	_ = b.Delete(seqKey(q.prefix, seq), nil)
	if h.shared() {
		err = s.commitShared(b, func(bs *bodies) { bs.drop(b, h.msgID) })
	} else {
		err = s.commit(b)
	}
	if err != nil {
		return err
	}
	s.log.Warn("pebblestore: dropped an unreadable queue entry", "dir", s.dir, "seq", seq, "err", cause)
	q.head, q.aheadEnd = seq+1, seq+1
	q.n--
	q.bytes = max(0, q.bytes-h.size)
	if q.n == 0 {
		q.bytes = 0
	}
	if h.shared() {
		q.shared--
	}
	return nil
}

// Len implements store.Queue.
func (q *queue) Len() int { return q.n }

// Bytes implements store.Queue.
func (q *queue) Bytes() int64 { return q.bytes }

// Clear implements store.Queue.
func (q *queue) Clear() error {
	s := q.s
	if err := s.enter(); err != nil {
		return err
	}
	defer s.exit()
	if q.n == 0 {
		return nil
	}
	if err := s.deleteEntries(q.prefix, q.shared > 0); err != nil {
		return err
	}
	q.reset()
	return nil
}

// reset empties the in-memory state after the entries are gone. Sequence numbers go on from
// tail, so nothing is ever written below a range deletion.
func (q *queue) reset() {
	clear(q.ahead)
	q.drained()
	q.head, q.aheadEnd = q.tail, q.tail
	q.n, q.bytes, q.shared = 0, 0, 0
	q.reading = false
}
