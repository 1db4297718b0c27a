package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"

	"github.com/ternmq/tern/internal/message"
)

// The replicated state machine. Its commands are raft log entries:
//
//	cmdPut     str ns, str key, bytes value      a record (users, groups, tokens)
//	cmdDelete  str ns, str key
//	cmdRetain  message                           set, or with an empty payload clear, a retained message
//	cmdSeed    snapshot                          a new cluster's first state, from its first node
//	cmdNoop                                      a barrier: applied means "caught up to here"
//
// Records live in the raft database under prefix 'f' (recordKey), written without fsync: the
// raft log is durable, and after a crash raft applies again what follows its last snapshot
// (NoSnapshotRestoreOnStart keeps the state between), and applying again is harmless since every
// command sets or deletes a whole value. Before a snapshot lets raft drop log entries, Snapshot
// syncs both stores. Retained messages are the core's (Core), kept in its store as on one node.
//
// The format leaves room: a command byte this build does not know fails its apply on this node
// (logged) rather than being guessed at, so later commands (session directory, queues) need every
// node upgraded first.
const (
	cmdPut    = 1
	cmdDelete = 2
	cmdRetain = 3
	cmdSeed   = 4
	cmdNoop   = 5
)

const snapshotVersion = 1

// Core is what the state machine asks of the broker's core (broker.Broker has these).
type Core interface {
	ApplyRetained(m *message.Message) error
	RetainedAll() []*message.Message
	ReplaceRetained(ms []*message.Message) error
	SyncStore() error
}

// Record is one key of the replicated records.
type Record struct {
	NS, Key string
	Value   []byte
}

// state is a whole snapshot (and a seed).
type state struct {
	Records  []Record
	Retained []*message.Message
}

func encodePut(ns, key string, value []byte) []byte {
	b := []byte{cmdPut}
	b = appendStr(b, ns)
	b = appendStr(b, key)
	return appendBytes(b, value)
}

func encodeDelete(ns, key string) []byte {
	return appendStr(appendStr([]byte{cmdDelete}, ns), key)
}

func encodeRetain(m *message.Message) []byte { return appendMessage([]byte{cmdRetain}, m) }

func appendState(b []byte, s state) []byte {
	b = append(b, snapshotVersion)
	b = binary.AppendUvarint(b, uint64(len(s.Records)))
	for _, r := range s.Records {
		b = appendStr(b, r.NS)
		b = appendStr(b, r.Key)
		b = appendBytes(b, r.Value)
	}
	b = binary.AppendUvarint(b, uint64(len(s.Retained)))
	for _, m := range s.Retained {
		b = binary.AppendUvarint(b, m.ID)
		b = appendMessage(b, m)
	}
	return b
}

func (d *decoder) state() state {
	var s state
	if v := d.byte(); v != snapshotVersion {
		d.fail()
		return s
	}
	n := d.count(3)
	for range n {
		r := Record{NS: d.str(), Key: d.str(), Value: d.raw()}
		r.Value = append([]byte{}, r.Value...)
		s.Records = append(s.Records, r)
	}
	n = d.count(16)
	for range n {
		m := &message.Message{ID: d.uvarint()}
		d.message(m)
		m.Retain = true
		if d.bad {
			break
		}
		s.Retained = append(s.Retained, m.Clone())
	}
	return s
}

func decodeState(b []byte) (state, error) {
	d := decoder{b: b}
	s := d.state()
	if d.bad || len(d.b) != 0 {
		return state{}, fmt.Errorf("%w: snapshot", errFrame)
	}
	return s, nil
}

// command is a decoded log entry.
type command struct {
	Kind    byte
	NS, Key string
	Value   []byte
	Old     []byte // cmdSwap: the value the writer read
	Msg     *message.Message
	State   state
	// Session commands (sessions.go): Client and Node (cmdAdopt: the node that is gone), the
	// claimant's incarnation, identity and flags, a node's ops, the nodes that adopt.
	Client, Node, Identity string
	Inc                    uint64
	Flags                  byte
	Ops                    []sessOp
	To                     []string
}

// isSession reports whether a command kind is a session command.
func isSession(kind byte) bool { return kind >= cmdClaim && kind <= cmdNodeUp }

func decodeCommand(b []byte) (command, error) {
	var c command
	if len(b) == 0 {
		return c, errFrame
	}
	c.Kind = b[0]
	d := decoder{b: b[1:]}
	switch c.Kind {
	case cmdPut:
		c.NS, c.Key, c.Value = d.str(), d.str(), d.raw()
	case cmdDelete:
		c.NS, c.Key = d.str(), d.str()
	case cmdRetain:
		m := &message.Message{}
		d.message(m)
		if !d.bad {
			c.Msg = m.Clone()
		}
	case cmdSeed:
		c.State = d.state()
	case cmdNoop:
	case cmdAppend:
		c.NS, c.Value = d.str(), d.raw()
		c.Value = append([]byte{}, c.Value...)
	case cmdSwap:
		c.NS, c.Key, c.Old, c.Flags, c.Value = d.str(), d.str(), d.raw(), d.byte(), d.raw()
		if c.Flags&^swapDelete != 0 || (c.Flags != 0 && len(c.Value) != 0) {
			d.fail()
		}
	case cmdClaim:
		c.Client, c.Node, c.Inc, c.Identity, c.Flags = d.str(), d.str(), d.uvarint(), d.str(), d.byte()
		if c.Flags&^(claimClean|claimExclusive) != 0 {
			d.fail()
		}
	case cmdOps:
		c.Node = d.str()
		c.Ops = d.ops()
	case cmdAdopt:
		c.Node, c.To = d.str(), d.strs()
	case cmdNodeUp:
		c.Node, c.Inc = d.str(), d.uvarint()
	default:
		return c, fmt.Errorf("%w: unknown command %d (a newer node wrote it?)", errFrame, c.Kind)
	}
	if d.bad || len(d.b) != 0 {
		return command{}, fmt.Errorf("%w: command %d", errFrame, c.Kind)
	}
	return c, nil
}

const prefixRecord = 'f'

func recordPrefix(ns string) []byte {
	b := binary.AppendUvarint([]byte{prefixRecord}, uint64(len(ns)))
	return append(b, ns...)
}

func recordKey(ns, key string) []byte { return append(recordPrefix(ns), key...) }

// fsm is the raft.FSM. Raft calls Apply, Snapshot and Restore from one goroutine.
type fsm struct {
	db   *pebble.DB
	log  *slog.Logger
	core Core
	// watchers are told which Record namespace a committed write (set or delete) touched: auth
	// ends open mode when users or tokens appear, mailboxes wake their waiters, webhooks start
	// and stop hooks. Called from the apply goroutine: they must not block. Registered at any
	// time (webhooks start after the node), hence the atomic copy-on-write list.
	watchers atomic.Pointer[[]func(ns string)]

	// Sessions (sessions.go): self is this node, inc this process's incarnation; dir the
	// directory in memory; sessApplied the last session command the database had at Open. host
	// takes sessions up and lets them go in the core, once the node is live (its own cmdNodeUp
	// applied: liveCh closed).
	self        string
	inc         uint64
	dir         *directory
	sessApplied uint64
	host        sessionHost
	live        atomic.Bool
	liveCh      chan struct{}
	// handover is the index of the latest session command that gives this node a session: the
	// directory names the node before its core holds the session (route.go waits for it).
	// beforeHandover and waiting are for tests: the first runs between a session command's
	// directory change and the core's hand-over, the second when a message or a write waits for
	// this node to apply an index (caughtUp, waitApplied).
	handover       atomic.Uint64
	beforeHandover atomic.Pointer[func(command)]
	waiting        atomic.Pointer[func()]
	// released: the persistent sessions the log took from this node lately (released.go).
	released released

	mu      sync.Mutex
	applied uint64
	// tick is closed and replaced whenever applied moves, for waitApplied.
	tick chan struct{}
}

func newFSM(db *pebble.DB, log *slog.Logger, self string) (*fsm, error) {
	f := &fsm{db: db, log: log, tick: make(chan struct{}), self: self, dir: newDirectory(),
		liveCh: make(chan struct{}), inc: rand.Uint64() | 1}
	if err := f.dir.load(db); err != nil {
		return nil, fmt.Errorf("cluster: reading the session directory: %w", err)
	}
	v, closer, err := db.Get([]byte{prefixApplied})
	switch {
	case err == nil:
		if len(v) == 8 {
			f.sessApplied = binary.BigEndian.Uint64(v)
		}
		_ = closer.Close()
	case !errors.Is(err, pebble.ErrNotFound):
		return nil, err
	}
	return f, nil
}

// setLive marks the node live: its core holds its sessions.
func (f *fsm) setLive() {
	if f.live.CompareAndSwap(false, true) {
		close(f.liveCh)
	}
}

// appliedIndex is the last index applied here.
func (f *fsm) appliedIndex() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applied
}

func (f *fsm) setApplied(i uint64) {
	f.mu.Lock()
	if i > f.applied {
		f.applied = i
		close(f.tick)
		f.tick = make(chan struct{})
	}
	f.mu.Unlock()
}

// progress returns the last index applied and a channel closed when it moves.
func (f *fsm) progress() (uint64, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applied, f.tick
}

// StoreConfiguration implements raft.ConfigurationStore: a membership change applied counts as
// applied here too, so waiting for its index ends.
func (f *fsm) StoreConfiguration(index uint64, _ raft.Configuration) { f.setApplied(index) }

// Apply implements raft.FSM; it returns nil or the error the command met.
func (f *fsm) Apply(l *raft.Log) any {
	defer f.setApplied(l.Index)
	c, err := decodeCommand(l.Data)
	if err != nil {
		f.log.Error("cluster: a replicated command cannot be applied", "index", l.Index, "err", err)
		return err
	}
	if isSession(c.Kind) {
		return f.applySession(c, l.Index)
	}
	switch c.Kind {
	case cmdAppend:
		return f.applyAppend(c, l.Index)
	case cmdSwap:
		return f.applySwap(c)
	}
	return f.apply(c)
}

func (f *fsm) apply(c command) error {
	switch c.Kind {
	case cmdPut:
		if err := f.db.Set(recordKey(c.NS, c.Key), c.Value, pebble.NoSync); err != nil {
			return err
		}
		f.notify(c.NS)
	case cmdDelete:
		if err := f.db.Delete(recordKey(c.NS, c.Key), pebble.NoSync); err != nil {
			return err
		}
		f.notify(c.NS)
	case cmdRetain:
		if f.core == nil {
			return errors.New("cluster: no core to apply a retained message to")
		}
		return f.core.ApplyRetained(c.Msg)
	case cmdSeed:
		b := f.db.NewBatch()
		for _, r := range c.State.Records {
			_ = b.Set(recordKey(r.NS, r.Key), r.Value, nil)
		}
		if err := b.Commit(pebble.NoSync); err != nil {
			return err
		}
		for _, r := range c.State.Records {
			f.notify(r.NS)
		}
		for _, m := range c.State.Retained {
			if err := f.core.ApplyRetained(m); err != nil {
				return err
			}
		}
	}
	return nil
}

func (f *fsm) notify(ns string) {
	if ws := f.watchers.Load(); ws != nil {
		for _, fn := range *ws {
			fn(ns)
		}
	}
}

// records reads every replicated Record.
func (f *fsm) records() ([]Record, error) {
	it, err := f.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixRecord}, UpperBound: []byte{prefixRecord + 1}})
	if err != nil {
		return nil, err
	}
	var out []Record
	for ok := it.First(); ok; ok = it.Next() {
		d := decoder{b: it.Key()[1:]}
		ns := d.str()
		if d.bad {
			_ = it.Close()
			return nil, fmt.Errorf("cluster: malformed Record key %x", it.Key())
		}
		out = append(out, Record{NS: ns, Key: string(d.b), Value: append([]byte{}, it.Value()...)})
	}
	return out, it.Close()
}

// sync makes everything applied so far durable in both stores.
func (f *fsm) sync() error {
	if err := f.db.LogData(nil, pebble.Sync); err != nil {
		return err
	}
	if f.core != nil {
		return f.core.SyncStore()
	}
	return nil
}
