package cluster

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/ternmq/tern/internal/store"
)

// The replicator sends a node's session ops to the log, one batch at a time and in order (so a
// later op never commits before an earlier one of the same node): ops made while a batch is on
// its way wait in the next, which then goes as one command, and one commit covers them all
// (group commit, as the node's store does with fsync). A batch's ticket completes when the log
// has committed it and this node has applied it, or with the error it met.

const (
	// maxBatch is the most op bytes one command carries; maxBacklog the most waiting to be
	// sent, past which changes are refused (the writes fail) rather than kept in memory.
	maxBatch   = 1 << 20
	maxBacklog = 64 << 20
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

	mu      sync.Mutex
	queue   []*opBatch // the last one takes new ops
	running *opBatch
	bytes   int
	closed  bool

	kick chan struct{}
	done chan struct{}
	wg   sync.WaitGroup
}

func newReplicator(n *Node) *replicator {
	return &replicator{n: n, limit: min(maxBatch, n.cfg.MaxFrame/2),
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
	if p.running != nil {
		ts = append(ts, p.running.t)
	}
	for _, b := range p.queue {
		ts = append(ts, b.t)
	}
	return joinAll(ts...)
}

func (p *replicator) run() {
	defer p.wg.Done()
	for {
		select {
		case <-p.kick:
		case <-p.done:
			return
		}
		for {
			p.mu.Lock()
			if len(p.queue) == 0 || p.closed {
				p.mu.Unlock()
				break
			}
			b := p.queue[0]
			p.queue = p.queue[1:]
			p.bytes -= len(b.buf)
			p.running = b
			p.mu.Unlock()
			cmd := appendStr([]byte{cmdOps}, p.n.cfg.NodeID)
			cmd = append(cmd, b.buf...)
			ctx, cancel := context.WithTimeout(context.Background(), p.n.cfg.WriteTimeout)
			_, err := p.n.Write(ctx, cmd)
			cancel()
			b.t.Complete(err)
			p.mu.Lock()
			p.running = nil
			p.mu.Unlock()
		}
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
	} else if p.running != nil {
		last = p.running.t
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
