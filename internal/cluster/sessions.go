package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"

	"github.com/cockroachdb/pebble/v2"

	"github.com/ternmq/tern/internal/broker"
)

// Sessions in the replicated state machine. Every client id a client connects with is claimed in
// the directory by the node it connects to (cmdClaim); the node holding a persistent session
// writes every change to it (record, queue, messages in flight) into the replica through the log
// (cmdOps, in batches: replica.go), so every node has it. When a claim moves a session, the node
// that held it lets it go and the new one takes it up from its copy of the replica, both while
// applying the claim: so once a node has applied an index, its core holds exactly the sessions
// the log gives it up to there, which is what makes routing by the directory safe (route.go).
//
// A node that dies leaves its sessions in the directory: the leader gives them to the nodes it
// reaches (cmdAdopt, adopt.go) once the node has been unreachable for a while. A node that
// restarts takes up its own (cmdNodeUp); the clean sessions of its earlier life end there.
//
// An op is applied only when the node that wrote it still holds the session since the epoch it
// carries, so a node that lost a session (a takeover it has not applied yet, a partition) cannot
// change it any more: its ops are refused and the writes fail, so nothing they stood for was
// acknowledged. The epoch is a log index, so applying the log again gives the same outcome.
//
// Session commands change only the raft database, in one batch with the index they came from
// ('a'); after a restart, raft applies again what follows its last snapshot, and the session
// commands up to that index are skipped, since the database has them.

// sessionHost takes sessions up and lets them go on this node (the replica store over the
// core); it is called from the apply goroutine, after the change is in the database.
type sessionHost interface {
	adopt(client string) error
	release(client string)
	// held lists the persistent sessions the core holds.
	held() []string
}

// errMoved fails the ops of sessions their writer no longer holds.
var errMoved = errors.New("cluster: the session is held by another node now")

// applySession applies a session command at log index idx.
func (f *fsm) applySession(c command, idx uint64) error {
	if idx <= f.sessApplied {
		return nil
	}
	b := f.db.NewBatch()
	var after []func()
	var err error
	f.dir.mu.Lock()
	f.dir.at.Store(idx)
	if f.handsOver(c) {
		f.handover.Store(idx)
	}
	switch c.Kind {
	case cmdClaim:
		err = f.applyClaim(b, c, idx, &after)
	case cmdOps:
		err = f.applyOps(b, c)
	case cmdAdopt:
		f.applyAdopt(b, c, idx, &after)
	case cmdNodeUp:
		f.applyNodeUp(b, c, &after)
	}
	f.dir.mu.Unlock()
	_ = b.Set([]byte{prefixApplied}, binary.BigEndian.AppendUint64(nil, idx), nil)
	if cerr := b.Commit(pebble.NoSync); cerr != nil {
		// The directory in memory has moved on: a node that cannot keep up its copy of the
		// state must stop rather than serve one that differs (as with the log itself).
		panic(fmt.Sprintf("cluster: writing the session state failed: %v", cerr))
	}
	if h := f.beforeHandover.Load(); h != nil {
		(*h)(c)
	}
	for _, fn := range after {
		fn()
	}
	return err
}

// handsOver reports whether c gives this node a session its core takes up: the directory shows
// it here before the core holds it, so Route waits for the hand-over (Node.handedOver). Decided
// before the change is made, so a Route that sees the change sees the hand-over pending too.
// The caller holds dir.mu.
func (f *fsm) handsOver(c command) bool {
	switch c.Kind {
	case cmdClaim:
		e := f.dir.entries[c.Client]
		return c.Node == f.self && e != nil && e.owner != f.self && e.record
	case cmdAdopt:
		return c.Node != f.self && slices.Contains(c.To, f.self)
	}
	return false
}

// putEntry writes e as client's entry. The caller holds dir.mu.
func putEntry(b *pebble.Batch, client string, e *dirEntry) {
	_ = b.Set(dirKey(client), appendEntry(nil, e), nil)
}

// deleteState removes a session's record, subscriptions, queue and messages in flight from the
// replica.
func deleteState(b *pebble.Batch, client string) {
	_ = b.Delete(recKey(client), nil)
	for _, p := range []byte{prefixQueue, prefixInflight, prefixIncoming, prefixSub} {
		pre := sessPrefix(p, client)
		_ = b.DeleteRange(pre, prefixEnd(pre), nil)
	}
}

// onSelf schedules a side effect on this node's core, when it is live (a node not yet live has
// no sessions in its core: cmdNodeUp takes them up).
func (f *fsm) onSelf(after *[]func(), fn func(sessionHost)) {
	if f.host == nil || !f.live.Load() {
		return
	}
	h := f.host
	*after = append(*after, func() { fn(h) })
}

func (f *fsm) adoptLater(after *[]func(), client string) {
	f.onSelf(after, func(h sessionHost) {
		if err := h.adopt(client); err != nil {
			f.log.Error("cluster: taking up a session failed", "client", client, "err", err)
		}
	})
}

func (f *fsm) releaseLater(after *[]func(), client string) {
	f.onSelf(after, func(h sessionHost) { h.release(client) })
}

// applyClaim makes c.Node the holder of c.Client. The caller holds dir.mu.
func (f *fsm) applyClaim(b *pebble.Batch, c command, idx uint64, after *[]func()) error {
	d := f.dir
	e := d.entries[c.Client]
	if e != nil {
		if e.identity != "" && c.Identity != e.identity {
			return broker.ErrClientIDInUse
		}
		if c.Flags&claimExclusive != 0 && e.owner != c.Node && e.connected {
			return broker.ErrClientIDInUse
		}
	}
	switch {
	case e == nil:
		e = &dirEntry{owner: c.Node, since: idx}
		d.entries[c.Client] = e
	case e.owner != c.Node:
		old := e.owner
		if c.Flags&claimClean != 0 || !e.record {
			// A clean start, or a clean session that ends with its connection elsewhere.
			deleteState(b, c.Client)
			d.setInterest(e, c.Node, false, nil)
		} else {
			d.setInterest(e, c.Node, true, e.filters)
		}
		e.since = idx
		if old == f.self {
			if e.record {
				f.released.add(idx, e.filters)
			}
			f.releaseLater(after, c.Client)
		}
		if c.Node == f.self && e.record {
			f.adoptLater(after, c.Client)
		}
	}
	// A same-node claim keeps since: the session never left, and its ops carry on.
	e.last, e.inc, e.connected = idx, c.Inc, true
	if c.Identity != "" {
		e.identity = c.Identity
	}
	putEntry(b, c.Client, e)
	return nil
}

// applyOps applies the changes a node made to the sessions it holds. The caller holds dir.mu.
func (f *fsm) applyOps(b *pebble.Batch, c command) error {
	d := f.dir
	refused := 0
	for _, o := range c.Ops {
		e := d.entries[o.Client]
		if o.Kind == opForget {
			if e != nil && e.owner == c.Node && e.last == o.Epoch && !e.record {
				_ = b.Delete(dirKey(o.Client), nil)
				d.remove(o.Client)
			}
			continue
		}
		if e == nil || e.owner != c.Node || e.since != o.Epoch {
			refused++
			continue
		}
		switch o.Kind {
		case opRecord:
			// An older node's: the record with its whole set of subscriptions, which replaces
			// the set stored apart.
			rec := *o.Rec
			pre := sessPrefix(prefixSub, o.Client)
			_ = b.DeleteRange(pre, prefixEnd(pre), nil)
			filters := make([]string, 0, len(rec.Subscriptions))
			for _, s := range rec.Subscriptions {
				_ = b.Set(subKey(o.Client, s.Filter), appendSubOptions(nil, s), nil)
				filters = append(filters, s.Filter)
			}
			rec.Subscriptions = nil
			_ = b.Set(recKey(o.Client), appendRecord(nil, rec), nil)
			d.setInterest(e, e.owner, true, filters)
			e.connected = rec.Disconnected == 0
		case opRecordApart:
			_ = b.Set(recKey(o.Client), o.Raw, nil)
			if !e.record {
				d.setInterest(e, e.owner, true, e.filters)
			}
			e.connected = o.Rec.Disconnected == 0
		case opSubPut:
			for _, s := range o.Subs {
				_ = b.Set(subKey(o.Client, s.Filter), appendSubOptions(nil, s), nil)
				d.addFilter(e, s.Filter)
			}
		case opSubDel:
			for _, f := range o.Filters {
				_ = b.Delete(subKey(o.Client, f), nil)
				d.removeFilter(e, f)
			}
		case opDelete:
			deleteState(b, o.Client)
			d.setInterest(e, e.owner, false, nil)
			e.connected = true
		case opQPut:
			_ = b.Set(queueKey(o.Client, o.N), o.Raw, nil)
		case opQDel:
			_ = b.Delete(queueKey(o.Client, o.N), nil)
		case opQClear:
			_ = b.DeleteRange(queueKey(o.Client, o.N), prefixEnd(sessPrefix(prefixQueue, o.Client)), nil)
		case opFPut:
			v := binary.AppendUvarint(nil, o.Ord)
			v = append(v, boolByte(o.Released))
			_ = b.Set(pidKey(prefixInflight, o.Client, o.N), append(v, o.Raw...), nil)
		case opFDel:
			_ = b.Delete(pidKey(prefixInflight, o.Client, o.N), nil)
		case opNAdd:
			_ = b.Set(pidKey(prefixIncoming, o.Client, o.N), nil, nil)
		case opNDel:
			_ = b.Delete(pidKey(prefixIncoming, o.Client, o.N), nil)
		}
	}
	if refused > 0 {
		return fmt.Errorf("%w (%d changes from %s refused)", errMoved, refused, c.Node)
	}
	return nil
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

// adoptTarget is where a session of a node that is gone goes: spread over the nodes by a hash of
// its client id, the same on every node.
func adoptTarget(client string, to []string) string {
	h := fnv.New32a()
	_, _ = h.Write([]byte(client))
	return to[int(h.Sum32()%uint32(len(to)))]
}

// applyAdopt gives the sessions of c.Node (a node that is gone) to the nodes in c.To; its clean
// sessions end. The caller holds dir.mu.
func (f *fsm) applyAdopt(b *pebble.Batch, c command, idx uint64, after *[]func()) {
	d := f.dir
	var gone []string
	for client, e := range d.entries {
		if e.owner != c.Node {
			continue
		}
		if c.Node == f.self {
			if e.record {
				f.released.add(idx, e.filters)
			}
			f.releaseLater(after, client)
		}
		if !e.record || len(c.To) == 0 {
			if !e.record {
				_ = b.Delete(dirKey(client), nil)
				gone = append(gone, client)
			}
			continue
		}
		to := adoptTarget(client, c.To)
		d.setInterest(e, to, true, e.filters)
		e.since, e.last = idx, idx
		putEntry(b, client, e)
		if to == f.self {
			f.adoptLater(after, client)
		}
	}
	for _, client := range gone {
		d.remove(client)
	}
}

// applyNodeUp: c.Node started again. The clean sessions of its earlier life are gone; its
// persistent ones stay with it, and when it is this node, the core takes them up now and the
// node is live. The caller holds dir.mu.
func (f *fsm) applyNodeUp(b *pebble.Batch, c command, after *[]func()) {
	d := f.dir
	var gone, mine []string
	for client, e := range d.entries {
		if e.owner != c.Node {
			continue
		}
		switch {
		case !e.record && e.inc != c.Inc:
			_ = b.Delete(dirKey(client), nil)
			gone = append(gone, client)
		case e.record:
			mine = append(mine, client)
		}
	}
	for _, client := range gone {
		d.remove(client)
	}
	if c.Node != f.self || c.Inc != f.inc || f.live.Load() {
		return
	}
	slices.Sort(mine)
	*after = append(*after, func() {
		if f.host != nil {
			for _, client := range mine {
				if err := f.host.adopt(client); err != nil {
					f.log.Error("cluster: taking up a session failed", "client", client, "err", err)
				}
			}
		}
		f.setLive()
	})
}
