package cluster

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"

	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/message"
	"github.com/ternmq/tern/internal/store"
)

// Replica is the store a cluster node's core runs on. Sessions that clients hold (every client id
// not beginning with '$') and webhooks' sessions live twice: in the node's own store, where the
// core works on them as on a single node (its queues on disk, memory flat), and in the replica, the raft database's copy
// that every node keeps (sessions.go). Every change the core makes to such a session is done in
// the node's store at once and sent to the log as an op, in batches (replicator); Sync's ticket
// completes when the log has committed every op made before it, that is once a majority of the
// nodes has it on disk. A node that takes up a session copies it from the replica into its store
// first; its store's copy of a session it does not hold is never read.
//
// The node's store is never synced for these sessions (the log is what makes them durable); the
// broker's other own sessions ('$': uplinks, node links) and retained messages stay in the node's store
// alone and are synced there as on a single node.
type Replica struct {
	n     *Node
	local store.Store
	rep   *replicator
	core  SessionCore

	mu   sync.Mutex
	sess map[string]*repState

	// dirty: something only the node's store keeps was written since the last local sync;
	// lastLocal is that sync's ticket.
	lmu       sync.Mutex
	dirty     bool
	lastLocal *store.Ticket

	// watchers are told of each session this node takes up or lets go (WatchSessions).
	watchers atomic.Pointer[[]func(client string)]
}

// SessionCore is what the replica needs of the core (broker.Broker has it).
type SessionCore interface {
	AdoptSession(rec store.SessionRecord) error
	ReleaseSession(clientID string)
	// SessionIDs lists the client ids of the core's sessions.
	SessionIDs() []string
}

var _ store.Store = (*Replica)(nil)

// replicated reports whether a session is kept in the replica: a client's or a webhook's.
func replicated(clientID string) bool { return broker.InDirectory(clientID) }

// SessionStore returns the store the core of this node runs on, over the node's own store. The
// node's copies of client sessions are dropped: the node takes up the sessions the cluster gives
// it from the replica once it is live. Call it after Open and before Start.
func (n *Node) SessionStore(local store.Store) (*Replica, error) {
	var stale []string
	err := local.Sessions().All(func(r store.SessionRecord) error {
		if replicated(r.ClientID) {
			stale = append(stale, r.ClientID)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, id := range stale {
		if err := local.Sessions().Delete(id); err != nil {
			return nil, err
		}
	}
	if len(stale) > 0 {
		n.log.Info("cluster: this node's own copies of sessions dropped; the cluster's replica has them", "sessions", len(stale))
	}
	r := &Replica{n: n, local: local, sess: map[string]*repState{}}
	r.rep = newReplicator(n)
	n.replica = r
	n.fsm.host = r
	return r, nil
}

// repState maps a session's queue in the node's store to its keys in the replica.
type repState struct {
	// runs are the replica sequence numbers of the queued items, oldest first: ranges, since a
	// queue taken up from the replica may have gaps (ops that were never committed).
	runs []seqRun
	tail uint64
	// ord numbers deliveries in flight in the order they were first put (ords by packet id).
	ord  uint64
	ords map[uint16]uint64
}

type seqRun struct{ from, to uint64 }

func (s *repState) push() uint64 {
	s.tail++
	if n := len(s.runs); n > 0 && s.runs[n-1].to == s.tail-1 {
		s.runs[n-1].to = s.tail
	} else {
		s.runs = append(s.runs, seqRun{s.tail, s.tail})
	}
	return s.tail
}

func (s *repState) head() (uint64, bool) {
	if len(s.runs) == 0 {
		return 0, false
	}
	return s.runs[0].from, true
}

func (s *repState) pop() {
	if len(s.runs) == 0 {
		return
	}
	if s.runs[0].from++; s.runs[0].from > s.runs[0].to {
		s.runs = s.runs[1:]
	}
}

func (s *repState) ordOf(pid uint16) uint64 {
	if o, ok := s.ords[pid]; ok {
		return o
	}
	s.ord++
	s.ords[pid] = s.ord
	return s.ord
}

// state returns a session's mapping, made empty for a new one.
func (r *Replica) state(id string) *repState {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.sess[id]
	if st == nil {
		st = &repState{ords: map[uint16]uint64{}}
		r.sess[id] = st
	}
	return st
}

func (r *Replica) dropState(id string) {
	r.mu.Lock()
	delete(r.sess, id)
	r.mu.Unlock()
}

// errNotHeld fails a change to a session this node does not hold (it moved away).
var errNotHeld = errors.New("cluster: the session is not held by this node")

// epoch returns the epoch under which this node holds id.
func (r *Replica) epoch(id string) (uint64, error) {
	since, ok := r.n.fsm.dir.since(id, r.n.cfg.NodeID)
	if !ok {
		return 0, fmt.Errorf("%w: %s", errNotHeld, id)
	}
	return since, nil
}

func (r *Replica) markLocal() {
	r.lmu.Lock()
	r.dirty = true
	r.lmu.Unlock()
}

// Sync implements store.Store: every op made so far committed by the log, and the node's store
// synced when something only it keeps was written.
func (r *Replica) Sync() *store.Ticket {
	r.lmu.Lock()
	if r.dirty {
		r.dirty = false
		r.lastLocal = r.local.Sync()
	}
	local := r.lastLocal
	r.lmu.Unlock()
	if local.Done() && local.Wait() == nil {
		local = nil
	}
	return joinAll(local, r.rep.sync())
}

// Sessions implements store.Store.
func (r *Replica) Sessions() store.Sessions { return repSessions{r} }

// Retained implements store.Store: the node's own (the log replicates retained messages).
func (r *Replica) Retained() store.Retained { return localRetained{r.local.Retained(), r} }

// Records implements store.Store: the node's own.
func (r *Replica) Records() store.Records { return r.local.Records() }

// LastMessageID implements store.Store.
func (r *Replica) LastMessageID() uint64 { return r.local.LastMessageID() }

// DiskBytes implements store.Store: the node's store and the raft database.
func (r *Replica) DiskBytes() int64 {
	m := r.n.db.Metrics()
	return r.local.DiskBytes() + int64(m.DiskSpaceUsage())
}

// Health implements store.Store.
func (r *Replica) Health() error { return r.local.Health() }

// Close implements store.Store; the node's store is closed by its owner.
func (r *Replica) Close() error { return nil }

type localRetained struct {
	store.Retained
	r *Replica
}

func (l localRetained) Set(m *message.Message) error { l.r.markLocal(); return l.Retained.Set(m) }
func (l localRetained) Delete(topic string) error    { l.r.markLocal(); return l.Retained.Delete(topic) }

type repSessions struct{ r *Replica }

func (s repSessions) Put(rec store.SessionRecord) error {
	r := s.r
	if !replicated(rec.ClientID) {
		r.markLocal()
		return r.local.Sessions().Put(rec)
	}
	epoch, err := r.epoch(rec.ClientID)
	if err != nil {
		return err
	}
	if err := r.local.Sessions().Put(rec); err != nil {
		return err
	}
	bare := rec
	bare.Subscriptions = nil
	raw := appendRecord(nil, bare)
	if err := r.rep.add(func(b []byte) []byte {
		return appendBytes(appendOpHead(b, opRecordApart, rec.ClientID, epoch), raw)
	}); err != nil {
		return err
	}
	if len(rec.Subscriptions) == 0 {
		return nil
	}
	return s.addSubPut(rec.ClientID, epoch, rec.Subscriptions)
}

// PutSubscriptions sends only the subscriptions that changed, not the record with them all.
func (s repSessions) PutSubscriptions(id string, subs []store.Subscription) error {
	r := s.r
	if !replicated(id) {
		r.markLocal()
		return r.local.Sessions().PutSubscriptions(id, subs)
	}
	epoch, err := r.epoch(id)
	if err != nil {
		return err
	}
	if err := r.local.Sessions().PutSubscriptions(id, subs); err != nil {
		return err
	}
	return s.addSubPut(id, epoch, subs)
}

func (s repSessions) addSubPut(id string, epoch uint64, subs []store.Subscription) error {
	raw := appendSubs(nil, subs)
	return s.r.rep.add(func(b []byte) []byte { return append(appendOpHead(b, opSubPut, id, epoch), raw...) })
}

func (s repSessions) DeleteSubscriptions(id string, filters []string) error {
	r := s.r
	if !replicated(id) {
		r.markLocal()
		return r.local.Sessions().DeleteSubscriptions(id, filters)
	}
	epoch, err := r.epoch(id)
	if err != nil {
		return err
	}
	if err := r.local.Sessions().DeleteSubscriptions(id, filters); err != nil {
		return err
	}
	raw := appendStrs(nil, filters)
	return r.rep.add(func(b []byte) []byte { return append(appendOpHead(b, opSubDel, id, epoch), raw...) })
}

func (s repSessions) Delete(id string) error {
	r := s.r
	if !replicated(id) {
		r.markLocal()
		return r.local.Sessions().Delete(id)
	}
	epoch, err := r.epoch(id)
	if err != nil {
		return err
	}
	r.dropState(id)
	if err := r.local.Sessions().Delete(id); err != nil {
		return err
	}
	return r.rep.add(func(b []byte) []byte { return appendOpHead(b, opDelete, id, epoch) })
}

func (s repSessions) All(fn func(store.SessionRecord) error) error {
	return s.r.local.Sessions().All(func(rec store.SessionRecord) error {
		if replicated(rec.ClientID) {
			return nil // not this node's to recover: the cluster gives it its sessions
		}
		return fn(rec)
	})
}

func (s repSessions) Queue(id string) (store.Queue, error) {
	q, err := s.r.local.Sessions().Queue(id)
	if err != nil {
		return nil, err
	}
	if !replicated(id) {
		return localQueue{q, s.r}, nil
	}
	return &repQueue{Queue: q, r: s.r, id: id, st: s.r.state(id)}, nil
}

func (s repSessions) Inflight(id string) (store.Inflight, error) {
	f, err := s.r.local.Sessions().Inflight(id)
	if err != nil {
		return nil, err
	}
	if !replicated(id) {
		return localInflight{f, s.r}, nil
	}
	return &repInflight{Inflight: f, r: s.r, id: id, st: s.r.state(id)}, nil
}

func (s repSessions) Marks(id string) (store.Marks, error) { return s.r.local.Sessions().Marks(id) }

func (s repSessions) PutMarks(id string, m store.Marks) error {
	s.r.markLocal()
	return s.r.local.Sessions().PutMarks(id, m)
}

// repQueue is a replicated session's queue: the node's, with every change sent as an op.
type repQueue struct {
	store.Queue
	r  *Replica
	id string
	st *repState
}

func (q *repQueue) Push(it store.Item) error {
	epoch, err := q.r.epoch(q.id)
	if err != nil {
		return err
	}
	if err := q.Queue.Push(it); err != nil {
		return err
	}
	seq := q.st.push()
	raw := appendItem(nil, it)
	return q.r.rep.add(func(b []byte) []byte {
		b = binary.AppendUvarint(appendOpHead(b, opQPut, q.id, epoch), seq)
		return appendBytes(b, raw)
	})
}

func (q *repQueue) Pop() error {
	epoch, err := q.r.epoch(q.id)
	if err != nil {
		return err
	}
	if err := q.Queue.Pop(); err != nil {
		return err
	}
	seq, ok := q.st.head()
	if !ok {
		return nil
	}
	q.st.pop()
	return q.r.rep.add(func(b []byte) []byte {
		return binary.AppendUvarint(appendOpHead(b, opQDel, q.id, epoch), seq)
	})
}

func (q *repQueue) Clear() error {
	epoch, err := q.r.epoch(q.id)
	if err != nil {
		return err
	}
	if err := q.Queue.Clear(); err != nil {
		return err
	}
	from, ok := q.st.head()
	if !ok {
		return nil
	}
	q.st.runs = nil
	return q.r.rep.add(func(b []byte) []byte {
		return binary.AppendUvarint(appendOpHead(b, opQClear, q.id, epoch), from)
	})
}

// repInflight is a replicated session's in-flight state.
type repInflight struct {
	store.Inflight
	r  *Replica
	id string
	st *repState
}

func (f *repInflight) Put(e store.InflightEntry) error {
	epoch, err := f.r.epoch(f.id)
	if err != nil {
		return err
	}
	if err := f.Inflight.Put(e); err != nil {
		return err
	}
	ord := f.st.ordOf(e.PacketID)
	raw := appendItem(nil, e.Item)
	return f.r.rep.add(func(b []byte) []byte {
		b = binary.AppendUvarint(appendOpHead(b, opFPut, f.id, epoch), uint64(e.PacketID))
		b = binary.AppendUvarint(b, ord)
		b = append(b, boolByte(e.Released))
		return appendBytes(b, raw)
	})
}

func (f *repInflight) pidOp(kind byte, pid uint16, local func(uint16) error) error {
	epoch, err := f.r.epoch(f.id)
	if err != nil {
		return err
	}
	if err := local(pid); err != nil {
		return err
	}
	if kind == opFDel {
		delete(f.st.ords, pid)
	}
	return f.r.rep.add(func(b []byte) []byte {
		return binary.AppendUvarint(appendOpHead(b, kind, f.id, epoch), uint64(pid))
	})
}

func (f *repInflight) Delete(pid uint16) error { return f.pidOp(opFDel, pid, f.Inflight.Delete) }
func (f *repInflight) AddIncoming(pid uint16) error {
	return f.pidOp(opNAdd, pid, f.Inflight.AddIncoming)
}
func (f *repInflight) DeleteIncoming(pid uint16) error {
	return f.pidOp(opNDel, pid, f.Inflight.DeleteIncoming)
}

// localQueue and localInflight are the broker's own sessions' (not replicated): their writes
// need the node's store synced.
type localQueue struct {
	store.Queue
	r *Replica
}

func (q localQueue) Push(it store.Item) error { q.r.markLocal(); return q.Queue.Push(it) }
func (q localQueue) Pop() error               { q.r.markLocal(); return q.Queue.Pop() }
func (q localQueue) Clear() error             { q.r.markLocal(); return q.Queue.Clear() }

type localInflight struct {
	store.Inflight
	r *Replica
}

func (f localInflight) Put(e store.InflightEntry) error { f.r.markLocal(); return f.Inflight.Put(e) }
func (f localInflight) Delete(pid uint16) error         { f.r.markLocal(); return f.Inflight.Delete(pid) }
func (f localInflight) AddIncoming(pid uint16) error {
	f.r.markLocal()
	return f.Inflight.AddIncoming(pid)
}
func (f localInflight) DeleteIncoming(pid uint16) error {
	f.r.markLocal()
	return f.Inflight.DeleteIncoming(pid)
}

// adopt implements sessionHost: the session's state is copied from the replica into the node's
// store, then the core takes it up.
func (r *Replica) adopt(client string) error {
	if r.core == nil {
		return nil
	}
	raw, closer, err := r.n.db.Get(recKey(client))
	if err != nil {
		return fmt.Errorf("reading the record: %w", err)
	}
	rec, err := decodeRecord(raw)
	_ = closer.Close()
	if err != nil {
		return err
	}
	rec.ClientID = client
	err = r.scan(prefixSub, client, func(k, v []byte) error {
		sub, err := decodeSubOptions(string(k), v)
		rec.Subscriptions = append(rec.Subscriptions, sub)
		return err
	})
	if err != nil {
		return err
	}
	ls := r.local.Sessions()
	if err := ls.Delete(client); err != nil {
		return err
	}
	st := &repState{ords: map[uint16]uint64{}}
	q, err := ls.Queue(client)
	if err != nil {
		return err
	}
	err = r.scan(prefixQueue, client, func(k, v []byte) error {
		it, err := decodeItem(v)
		if err != nil {
			return err
		}
		it.Shared = false // bodies are shared by ids of this node only
		if err := q.Push(it); err != nil {
			return err
		}
		seq := binary.BigEndian.Uint64(k)
		if n := len(st.runs); n > 0 && st.runs[n-1].to == seq-1 {
			st.runs[n-1].to = seq
		} else {
			st.runs = append(st.runs, seqRun{seq, seq})
		}
		st.tail = seq
		return nil
	})
	if err != nil {
		return err
	}
	f, err := ls.Inflight(client)
	if err != nil {
		return err
	}
	type flying struct {
		ord uint64
		e   store.InflightEntry
	}
	var fl []flying
	err = r.scan(prefixInflight, client, func(k, v []byte) error {
		d := decoder{b: v}
		ord, released := d.uvarint(), d.byte() == 1
		if d.bad {
			return fmt.Errorf("%w: in-flight entry", errFrame)
		}
		it, err := decodeItem(d.b)
		if err != nil {
			return err
		}
		it.Shared = false
		fl = append(fl, flying{ord, store.InflightEntry{PacketID: binary.BigEndian.Uint16(k), Item: it, Released: released}})
		return nil
	})
	if err != nil {
		return err
	}
	slices.SortFunc(fl, func(a, b flying) int { return cmp.Compare(a.ord, b.ord) })
	for _, x := range fl {
		if err := f.Put(x.e); err != nil {
			return err
		}
		st.ords[x.e.PacketID] = x.ord
		st.ord = max(st.ord, x.ord)
	}
	err = r.scan(prefixIncoming, client, func(k, _ []byte) error {
		return f.AddIncoming(binary.BigEndian.Uint16(k))
	})
	if err != nil {
		return err
	}
	if err := ls.Put(rec); err != nil {
		return err
	}
	r.mu.Lock()
	r.sess[client] = st
	r.mu.Unlock()
	err = r.core.AdoptSession(rec)
	r.tell(client)
	return err
}

// scan calls fn with the rest of the key (after the session's prefix) and the value of each of
// a session's keys of one kind, in order.
func (r *Replica) scan(p byte, client string, fn func(k, v []byte) error) error {
	pre := sessPrefix(p, client)
	it, err := r.n.db.NewIter(&pebble.IterOptions{LowerBound: pre, UpperBound: prefixEnd(pre)})
	if err != nil {
		return err
	}
	for ok := it.First(); ok; ok = it.Next() {
		if err := fn(it.Key()[len(pre):], it.Value()); err != nil {
			_ = it.Close()
			return err
		}
	}
	return it.Close()
}

// release implements sessionHost: the core lets the session go and the node's copy is dropped.
func (r *Replica) release(client string) {
	if r.core != nil {
		r.core.ReleaseSession(client)
	}
	r.dropState(client)
	if err := r.local.Sessions().Delete(client); err != nil {
		r.n.log.Warn("cluster: dropping this node's copy of a session that moved", "client", client, "err", err)
	}
	r.tell(client)
}

// held implements sessionHost.
func (r *Replica) held() []string {
	if r.core == nil {
		return nil
	}
	var out []string
	for _, id := range r.core.SessionIDs() {
		if replicated(id) {
			out = append(out, id)
		}
	}
	return out
}
