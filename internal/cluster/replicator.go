package cluster

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ternmq/tern/internal/store"
)

// The replicator sends a node's session ops to the log in batches, in order (so a later op never
// commits before an earlier one of the same node): ops made while batches are on their way wait
// in the next, which then goes as one command, and one commit covers them all (group commit, as
// the node's store does with fsync). Up to maxInFlight batches are on their way at once
// (pipeline.go keeps them in order), so a publisher's window is not held to one commit round
// trip per batch. A batch's ticket completes, in order, when the leader has committed and
// applied it (a majority has it on disk), or with the error it met.
//
// A batch that fails without reaching the log is sent again with every batch after it, one at
// a time, in order. Some of those may have reached the log already; applying them again after
// is harmless, because an op sets or deletes a whole value (or a range) of one session: the
// last op on each key among the batches sent again is the same as it was, so the state they
// leave is the same. When a batch fails even so, it and every batch after it fail (their
// tickets), so nothing after a lost op is acknowledged.

const (
	// maxBatch is the most op bytes one command carries; maxBacklog the most waiting to be
	// sent, past which changes are refused (the writes fail) rather than kept in memory.
	maxBatch   = 1 << 20
	maxBacklog = 64 << 20
	// maxInFlight is how many batches may be on their way to the log at once: enough to keep
	// commits going while earlier answers come back, few enough that a failure replays little.
	maxInFlight = 8
)

// errBacklog refuses changes while too many wait for the log.
var errBacklog = errors.New("cluster: too many session changes wait for the log")

type opBatch struct {
	buf []byte
	t   *store.Ticket
}

type replicator struct {
	n *Node
	// limit is the most bytes of ops in one command: within a node link frame.
	limit int
	// send and write are the node's sendWrite and Write (tests replace them).
	send  func(cmd []byte, timeout time.Duration) *pendingWrite
	write func(ctx context.Context, cmd []byte) (uint64, error)

	mu      sync.Mutex
	queue   []*opBatch // the last one takes new ops
	running []*opBatch // on their way to the log, oldest first
	bytes   int
	closed  bool

	kick chan struct{}
	done chan struct{}
	wg   sync.WaitGroup
}

func newReplicator(n *Node) *replicator {
	return &replicator{n: n, limit: min(maxBatch, n.cfg.MaxFrame/2), send: n.sendWrite, write: n.Write,
		kick: make(chan struct{}, 1), done: make(chan struct{})}
}

// start sends batches until close.
func (p *replicator) start() {
	p.wg.Add(1)
	go p.run()
}

// add appends one op, built by fill, to the batch being filled.
func (p *replicator) add(fill func([]byte) []byte) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ErrClosed
	}
	if p.bytes > maxBacklog {
		p.mu.Unlock()
		return errBacklog
	}
	var last *opBatch
	if k := len(p.queue); k > 0 {
		last = p.queue[k-1]
	}
	if last == nil || len(last.buf) >= p.limit {
		last = &opBatch{t: store.NewTicket()}
		p.queue = append(p.queue, last)
	}
	before := len(last.buf)
	last.buf = fill(last.buf)
	if len(last.buf) > p.limit && before > 0 {
		// A large op goes in a batch of its own, so no command outgrows a link frame.
		op := append([]byte(nil), last.buf[before:]...)
		last.buf = last.buf[:before]
		last = &opBatch{buf: op, t: store.NewTicket()}
		p.queue = append(p.queue, last)
	}
	p.bytes += len(last.buf) - before
	p.mu.Unlock()
	select {
	case p.kick <- struct{}{}:
	default:
	}
	return nil
}

// sync returns a ticket that completes once every op added so far is committed.
func (p *replicator) sync() *store.Ticket {
	p.mu.Lock()
	defer p.mu.Unlock()
	var ts []*store.Ticket
	for _, b := range p.running {
		ts = append(ts, b.t)
	}
	for _, b := range p.queue {
		ts = append(ts, b.t)
	}
	return joinAll(ts...)
}

// sent is a batch on its way to the log.
type sent struct {
	b *opBatch
	w *pendingWrite
}

func (p *replicator) run() {
	defer p.wg.Done()
	var flight []sent
	for {
		for len(flight) < maxInFlight {
			b := p.next()
			if b == nil {
				break
			}
			flight = append(flight, sent{b, p.send(p.command(b), p.n.cfg.WriteTimeout)})
		}
		var head <-chan struct{}
		kick := p.kick
		if len(flight) > 0 {
			head = flight[0].w.done
			if len(flight) == maxInFlight {
				kick = nil
			}
		}
		select {
		case <-kick:
			continue
		case <-head:
		case <-p.done:
			for _, s := range flight {
				p.finish(s.b, ErrClosed)
			}
			return
		}
		s := flight[0]
		if s.w.err == nil || s.w.applied() {
			flight = flight[1:]
			p.finish(s.b, s.w.err)
			continue
		}
		// The oldest failed without reaching the log: once every later one has its answer (so
		// none is still on its way behind what is sent again), send them again in order.
		for _, l := range flight[1:] {
			<-l.w.done
		}
		p.replay(flight)
		flight = nil
	}
}

// next takes the oldest batch waiting, nil when none does or the replicator is closed.
func (p *replicator) next() *opBatch {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.queue) == 0 || p.closed {
		return nil
	}
	b := p.queue[0]
	p.queue = p.queue[1:]
	p.bytes -= len(b.buf)
	p.running = append(p.running, b)
	return b
}

// command is the log command that carries b.
func (p *replicator) command(b *opBatch) []byte {
	cmd := make([]byte, 0, 1+binary.MaxVarintLen64+len(p.n.cfg.NodeID)+len(b.buf))
	cmd = appendStr(append(cmd, cmdOps), p.n.cfg.NodeID)
	return append(cmd, b.buf...)
}

// finish completes the oldest batch on its way, b.
func (p *replicator) finish(b *opBatch, err error) {
	p.mu.Lock()
	if len(p.running) > 0 && p.running[0] == b {
		p.running = p.running[1:]
	}
	p.mu.Unlock()
	b.t.Complete(err)
}

// replay sends batches again one at a time, each waiting for a leader as Write does; the first
// that fails without reaching the log fails every one after it.
func (p *replicator) replay(flight []sent) {
	var lost error
	for _, s := range flight {
		if lost != nil {
			p.finish(s.b, fmt.Errorf("cluster: an earlier batch of session changes was not committed: %w", lost))
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), p.n.cfg.WriteTimeout)
		idx, err := p.write(ctx, p.command(s.b))
		cancel()
		if err != nil && idx == 0 {
			lost = err
		}
		p.finish(s.b, err)
	}
}

// closeWait bounds how long close waits for what is queued to be committed.
const closeWait = 2 * time.Second

// close sends what is queued, for up to closeWait, and stops; what was not sent fails.
func (p *replicator) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	var last *store.Ticket
	if k := len(p.queue); k > 0 {
		last = p.queue[k-1].t
	} else if k := len(p.running); k > 0 {
		last = p.running[k-1].t
	}
	p.mu.Unlock()
	if last != nil {
		sent := make(chan struct{})
		last.Then(func(error) { close(sent) })
		select {
		case <-sent:
		case <-time.After(closeWait):
		}
	}
	p.mu.Lock()
	p.closed = true
	close(p.done)
	queue := p.queue
	p.queue = nil
	p.mu.Unlock()
	p.wg.Wait()
	for _, b := range queue {
		b.t.Complete(ErrClosed)
	}
}

// joinAll returns a ticket that completes when all of ts (nil ones are done) have, with the first
// error; nil when there is nothing to wait for.
func joinAll(ts ...*store.Ticket) *store.Ticket {
	var live []*store.Ticket
	for _, t := range ts {
		if t != nil && !(t.Done() && t.Wait() == nil) {
			live = append(live, t)
		}
	}
	switch len(live) {
	case 0:
		return nil
	case 1:
		return live[0]
	}
	out := store.NewTicket()
	var mu sync.Mutex
	left := len(live)
	var first error
	for _, t := range live {
		t.Then(func(err error) {
			mu.Lock()
			if first == nil {
				first = err
			}
			left--
			fin, e := left == 0, first
			mu.Unlock()
			if fin {
				out.Complete(e)
			}
		})
	}
	return out
}
