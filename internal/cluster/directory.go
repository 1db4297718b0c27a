package cluster

import (
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"

	"github.com/ternmq/tern/internal/topic"
)

// The session directory and the replicated session state, in the raft database beside the
// records (prefix 'f'):
//
//	'd' client                        -> str owner, uvarint since, uvarint last, uvarint incarnation, str identity
//	'r' client                        -> the session record (persistent sessions only)
//	'q' uvarint len, client, seq(8)   -> a queued item
//	'i' uvarint len, client, pid(2)   -> uvarint order, byte released, an item in flight
//	'n' uvarint len, client, pid(2)   -> an exactly-once publish received, not yet released
//	'b' uvarint len, client, filter   -> a subscription's options (sessioncmd.go); records hold none
//	'a'                               -> the index of the last session command applied (8 bytes)
//
// since is the log index from which the owner holds the session (its ops carry it, so those of a
// node that lost it are refused), last the index of its latest claim (a forget carries it, so a
// reconnect that claimed again is not forgotten). The directory and the subscriptions of
// persistent sessions are also kept in memory (directory): every node routes a message to the
// node holding a persistent session it matches from what the log says, before that node's own
// interest could reach it.
const (
	prefixDir      = 'd'
	prefixRec      = 'r'
	prefixQueue    = 'q'
	prefixInflight = 'i'
	prefixIncoming = 'n'
	prefixSub      = 'b' // not 'u', 's' or 'l': raftstore's keys share the database
	prefixApplied  = 'a'
)

var sessionPrefixes = []byte{prefixDir, prefixRec, prefixQueue, prefixInflight, prefixIncoming, prefixSub, prefixApplied}

func dirKey(c string) []byte { return append([]byte{prefixDir}, c...) }
func recKey(c string) []byte { return append([]byte{prefixRec}, c...) }

// sessPrefix is where a session's keys of one kind begin ('q', 'i', 'n').
func sessPrefix(p byte, c string) []byte {
	b := binary.AppendUvarint([]byte{p}, uint64(len(c)))
	return append(b, c...)
}

func queueKey(c string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(sessPrefix(prefixQueue, c), seq)
}

func subKey(c, filter string) []byte { return append(sessPrefix(prefixSub, c), filter...) }

// splitSubKey returns the client and filter of a subscription key.
func splitSubKey(k []byte) (client, filter string, ok bool) {
	n, w := binary.Uvarint(k[1:])
	if w <= 0 || n >= uint64(len(k)-1-w) {
		return "", "", false
	}
	rest := k[1+w:]
	return string(rest[:n]), string(rest[n:]), true
}

func pidKey(p byte, c string, pid uint64) []byte {
	return binary.BigEndian.AppendUint16(sessPrefix(p, c), uint16(pid))
}

// dirEntry is one client id in the directory.
type dirEntry struct {
	owner, identity  string
	since, last, inc uint64
	// record: the session is persistent (it has a record in the replica); connected is what the
	// record says (always true without one: a clean session lives as long as its connection).
	record, connected bool
	// filters are the record's subscriptions, counted in the directory's interest.
	filters []string
}

func appendEntry(b []byte, e *dirEntry) []byte {
	b = appendStr(b, e.owner)
	b = binary.AppendUvarint(b, e.since)
	b = binary.AppendUvarint(b, e.last)
	b = binary.AppendUvarint(b, e.inc)
	return appendStr(b, e.identity)
}

func decodeEntry(b []byte) (*dirEntry, error) {
	d := decoder{b: b}
	e := &dirEntry{owner: d.str(), since: d.uvarint(), last: d.uvarint(), inc: d.uvarint(), identity: d.str(), connected: true}
	if d.bad || len(d.b) != 0 {
		return nil, fmt.Errorf("%w: directory entry", errFrame)
	}
	return e, nil
}

// directory is the in-memory copy of the session directory, with the subscriptions of the
// persistent sessions by the node holding them (the durable interest Route uses). It is
// changed by the state machine's apply goroutine and read by anyone, under mu; index has a lock
// of its own.
type directory struct {
	mu      sync.Mutex
	entries map[string]*dirEntry
	counts  map[string]map[string]int // node -> filter -> persistent sessions subscribed
	index   *topic.Index[string, struct{}]
	// at is the index of the latest session command, stored before its changes can be seen:
	// read after a match, it is an index that covers what the match saw (route.go).
	at atomic.Uint64
}

func newDirectory() *directory {
	return &directory{entries: map[string]*dirEntry{}, counts: map[string]map[string]int{},
		index: topic.NewIndex[string, struct{}](4096)}
}

// load reads the directory from the database (at Open, and after a snapshot is restored),
// moving subscriptions out of records first (moveSubscriptions).
func (d *directory) load(db *pebble.DB) error {
	if err := moveSubscriptions(db); err != nil {
		return err
	}
	entries := map[string]*dirEntry{}
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixDir}, UpperBound: []byte{prefixDir + 1}})
	if err != nil {
		return err
	}
	for ok := it.First(); ok; ok = it.Next() {
		e, err := decodeEntry(it.Value())
		if err != nil {
			_ = it.Close()
			return err
		}
		entries[string(it.Key()[1:])] = e
	}
	if err := it.Close(); err != nil {
		return err
	}
	it, err = db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixRec}, UpperBound: []byte{prefixRec + 1}})
	if err != nil {
		return err
	}
	for ok := it.First(); ok; ok = it.Next() {
		e := entries[string(it.Key()[1:])]
		if e == nil {
			continue // a record without an entry: nothing writes one, left alone
		}
		rec, err := decodeRecord(it.Value())
		if err != nil {
			_ = it.Close()
			return err
		}
		e.record, e.connected = true, rec.Disconnected == 0
	}
	if err := it.Close(); err != nil {
		return err
	}
	it, err = db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixSub}, UpperBound: []byte{prefixSub + 1}})
	if err != nil {
		return err
	}
	for ok := it.First(); ok; ok = it.Next() {
		client, filter, ok := splitSubKey(it.Key())
		if !ok {
			_ = it.Close()
			return fmt.Errorf("%w: subscription key %x", errFrame, it.Key())
		}
		if e := entries[client]; e != nil {
			e.filters = append(e.filters, filter)
		}
	}
	if err := it.Close(); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for node, fs := range d.counts {
		for f := range fs {
			if pf, err := topic.ParseFilter(f); err == nil {
				d.index.Unsubscribe(pf, node)
			}
		}
	}
	d.entries, d.counts = entries, map[string]map[string]int{}
	for _, e := range entries {
		if e.record {
			for _, f := range e.filters {
				d.count(e.owner, f, 1)
			}
		}
	}
	return nil
}

// moveSubscriptions rewrites records that hold their subscriptions (written by older nodes, or
// restored from their snapshots) as a record without them and a key per subscription, so that
// every later op finds them apart (an opRecordApart replaces the record, an opSubDel deletes a
// key). It writes nothing when there is nothing to move, and moving again is harmless.
func moveSubscriptions(db *pebble.DB) error {
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixRec}, UpperBound: []byte{prefixRec + 1}})
	if err != nil {
		return err
	}
	b := db.NewBatch()
	defer b.Close()
	for ok := it.First(); ok; ok = it.Next() {
		rec, err := decodeRecord(it.Value())
		if err != nil {
			_ = it.Close()
			return err
		}
		if len(rec.Subscriptions) == 0 {
			continue
		}
		client := string(it.Key()[1:])
		for _, s := range rec.Subscriptions {
			_ = b.Set(subKey(client, s.Filter), appendSubOptions(nil, s), nil)
		}
		rec.Subscriptions = nil
		_ = b.Set(it.Key(), appendRecord(nil, rec), nil)
	}
	if err := it.Close(); err != nil {
		return err
	}
	if b.Empty() {
		return nil
	}
	return b.Commit(pebble.Sync)
}

// count adds delta to the persistent sessions node holds with filter. The caller holds mu.
func (d *directory) count(node, filter string, delta int) {
	fs := d.counts[node]
	if fs == nil {
		fs = map[string]int{}
		d.counts[node] = fs
	}
	was := fs[filter]
	now := max(was+delta, 0)
	if now == 0 {
		delete(fs, filter)
		if len(fs) == 0 {
			delete(d.counts, node)
		}
	} else {
		fs[filter] = now
	}
	pf, err := topic.ParseFilter(filter)
	if err != nil {
		return
	}
	switch {
	case was == 0 && now > 0:
		d.index.Subscribe(pf, node, struct{}{})
	case was > 0 && now == 0:
		d.index.Unsubscribe(pf, node)
	}
}

// setInterest replaces what e counts in the interest (its owner's, its filters, while it has a
// record). The caller holds mu.
func (d *directory) setInterest(e *dirEntry, owner string, record bool, filters []string) {
	if e.record {
		for _, f := range e.filters {
			d.count(e.owner, f, -1)
		}
	}
	e.owner, e.record, e.filters = owner, record, filters
	if record {
		for _, f := range filters {
			d.count(owner, f, 1)
		}
	}
}

// addFilter adds a subscription to e's filters, counted in the interest while e has a record.
// The caller holds mu.
func (d *directory) addFilter(e *dirEntry, filter string) {
	if slices.Contains(e.filters, filter) {
		return
	}
	e.filters = append(e.filters, filter)
	if e.record {
		d.count(e.owner, filter, 1)
	}
}

// removeFilter takes a subscription out of e's filters. The slice is copied, not changed in
// place, so that whoever was handed the old one keeps what it saw. The caller holds mu.
func (d *directory) removeFilter(e *dirEntry, filter string) {
	i := slices.Index(e.filters, filter)
	if i < 0 {
		return
	}
	e.filters = slices.Concat(e.filters[:i], e.filters[i+1:])
	if e.record {
		d.count(e.owner, filter, -1)
	}
}

// remove drops an entry. The caller holds mu.
func (d *directory) remove(client string) {
	if e := d.entries[client]; e != nil {
		d.setInterest(e, e.owner, false, nil)
		delete(d.entries, client)
	}
}

// get returns a copy of client's entry.
func (d *directory) get(client string) (dirEntry, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.entries[client]
	if e == nil {
		return dirEntry{}, false
	}
	return *e, true
}

// ownedBy returns the clients node holds, with whether each is persistent.
func (d *directory) ownedBy(node string) map[string]bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := map[string]bool{}
	for c, e := range d.entries {
		if e.owner == node {
			out[c] = e.record
		}
	}
	return out
}

// owners counts the sessions each node holds.
func (d *directory) owners() map[string]int {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := map[string]int{}
	for _, e := range d.entries {
		out[e.owner]++
	}
	return out
}

// size is the number of entries.
func (d *directory) size() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.entries)
}

// since returns the epoch from which node holds client, if it does.
func (d *directory) since(client, node string) (uint64, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.entries[client]
	if e == nil || e.owner != node {
		return 0, false
	}
	return e.since, true
}
