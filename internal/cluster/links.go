package cluster

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/message"
	"github.com/ternmq/tern/internal/netio"
	"github.com/ternmq/tern/internal/topic"
)

// Node links. Every node dials every other member once (its outgoing link) and sends on it, in
// order, everything it has for that node: messages, its interest, pings, requests to the leader.
// The other node answers on the same connection (acknowledgements, pongs, replies). So there
// are two connections per pair of nodes, one per direction: each direction is one ordered
// stream, and neither side has to agree with the other who dials.
//
// A message for a node whose outgoing link is down is not sent (QoS 0 is counted as dropped; a
// QoS 1/2 publish is acknowledged for the copies that were taken): the node's clients cannot be
// reached through it until it is back, and in this stage nothing is queued for them elsewhere.
// A QoS 1/2 message in flight when a link breaks fails its publisher's acknowledgement, so the
// publisher sends it again.

const (
	pingEvery     = time.Second
	linkSilence   = 5 * time.Second // a link that hears nothing this long is closed
	helloMaxFrame = 4 << 10         // before the hello, and on join-only connections
	maxRequests   = 1024            // outstanding requests on one link
	maxWriters    = 64              // forwarded writes served at once by a leader
	maxRetains    = 256             // retained messages waiting for the log at once
)

// errRetry: the request reached a node that is not (or no longer) the leader, or no link to the
// leader is up; the caller waits for the next leader.
var errRetry = errors.New("cluster: not the leader")

// errLinkLost fails what was in flight on a link that broke.
var errLinkLost = errors.New("cluster: link to a node lost before it accepted the message")

// Deliverer is the core as the links need it (broker.Broker).
type Deliverer interface {
	DeliverRemote(m *message.Message, answerable bool, groups []string) broker.PublishResult
	InterestFilters() []string
	WatchInterest(fn func())
}

// LinkStats count what went over the links.
type LinkStats struct {
	Forwarded atomic.Uint64 // messages sent to other nodes (one per node)
	Received  atomic.Uint64 // messages other nodes sent here
	Dropped   atomic.Uint64 // messages for a node whose link was down or full
	Failed    atomic.Uint64 // QoS 1/2 messages a node did not accept (link lost, refused)
}

type peer struct {
	id, addr string
	out      atomic.Pointer[outLink]
	stop     chan struct{}
	// prog and seen: what the peer last said of its raft log, and when; down: since when the
	// link has been down (zero while it is up). A link counts as up once the peer answered on
	// it, not when the dial succeeds: a dead node behind a proxy or balancer accepts and drops
	// each connection, and must still count as down for as long as it does. Guarded by
	// links.mu.
	prog progress
	seen time.Time
	down time.Time
}

type links struct {
	n    *Node
	core Deliverer
	// calls: calls forwarded to other nodes, failed here when a link breaks (services_calls.go).
	calls remoteCalls
	// out is what the links' connections share (their limits, ns and a buffer pool).
	out netio.Shared
	ns  netio.Stats

	stats LinkStats
	reqID atomic.Uint64

	// index holds the other nodes' interest, keyed by node id: what a message's topic matches
	// there is where it goes. Its own lock makes it safe for concurrent use.
	index *topic.Index[string, struct{}]

	mu       sync.Mutex
	peers    map[string]*peer
	interest map[string][]string // node id -> filters it sent
	turns    map[string]*atomic.Uint64
	inbound  map[*inLink]struct{}
	closed   bool

	// order makes a request follow, on each link, the interest it was published after
	// (interest_order.go).
	order   interestOrder
	dirty   chan struct{}
	done    chan struct{}
	writers chan struct{}
	retains chan struct{}
	wg      sync.WaitGroup
}

func newLinks(n *Node, core Deliverer) *links {
	l := &links{n: n, core: core,
		out: netio.Shared{Lim: netio.Limits{Soft: 8 << 20, Stall: 5 * time.Millisecond, Hard: 64<<20 + 2*n.cfg.MaxFrame,
			WriteTimeout: 10 * time.Second, Linger: time.Second}, Pool: netio.NewBufPool(nil)},
		index: topic.NewIndex[string, struct{}](4096),
		peers: map[string]*peer{}, interest: map[string][]string{}, turns: map[string]*atomic.Uint64{},
		inbound: map[*inLink]struct{}{},
		dirty:   make(chan struct{}, 1), done: make(chan struct{}),
		writers: make(chan struct{}, maxWriters), retains: make(chan struct{}, maxRetains)}
	l.out.Stats = &l.ns
	return l
}

// start begins keeping a link to every member and telling them this node's interest.
func (l *links) start() {
	l.core.WatchInterest(func() {
		l.order.changed()
		l.poke()
	})
	l.wg.Add(2)
	go l.maintain()
	go l.sendInterest()
}

func (l *links) leaderChanged() {}

// maintain reconciles the links with the membership and pings, once a second.
func (l *links) maintain() {
	defer l.wg.Done()
	t := time.NewTicker(pingEvery)
	defer t.Stop()
	for {
		l.reconcile()
		l.ping()
		l.n.adoptOrphans()
		select {
		case <-t.C:
		case <-l.done:
			return
		}
	}
}

// reconcile starts links to new members and ends those to nodes that left.
func (l *links) reconcile() {
	want := map[string]string{}
	for _, s := range l.n.members() {
		if string(s.ID) != l.n.cfg.NodeID {
			want[string(s.ID)] = l.n.linkAddr(s.Address)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	for id, p := range l.peers {
		if addr, ok := want[id]; !ok || addr != p.addr {
			close(p.stop)
			if o := p.out.Load(); o != nil {
				o.CloseNow(errors.New("node left"))
			}
			delete(l.peers, id)
			if !ok {
				l.setInterestLocked(id, nil)
			}
		}
	}
	for id, addr := range want {
		if l.peers[id] == nil {
			p := &peer{id: id, addr: addr, stop: make(chan struct{}), down: time.Now()}
			l.peers[id] = p
			l.wg.Add(1)
			go l.dialLoop(p)
		}
	}
}

func (l *links) progress() progress {
	r := l.n.r
	return progress{Applied: r.AppliedIndex(), Last: r.LastIndex(), Commit: r.CommitIndex()}
}

func (l *links) ping() {
	p := l.progress()
	for _, o := range l.outLinks() {
		o.send(func(b []byte) []byte { return appendProgress(b, fPing, p) })
	}
}

func (l *links) outLinks() []*outLink {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]*outLink, 0, len(l.peers))
	for _, p := range l.peers {
		if o := p.out.Load(); o != nil {
			out = append(out, o)
		}
	}
	return out
}

// sendInterest sends this node's whole interest to every link whenever it changes.
func (l *links) sendInterest() {
	defer l.wg.Done()
	for {
		select {
		case <-l.dirty:
		case <-l.done:
			return
		}
		l.order.hook(&l.order.before)
		g := l.order.gen.Load() // read before the interest, so fs covers every change up to g
		fs := l.core.InterestFilters()
		for _, o := range l.outLinks() {
			// A link that came up since sent a newer interest of its own (runOut): an older
			// one must not replace it.
			if o.interestGen.Load() > g {
				continue
			}
			if o.send(func(b []byte) []byte { return appendInterest(b, fs, l.interestPart()) }) {
				o.interestGen.Store(g)
			}
		}
		l.order.round()
	}
}

// interestPart is the size of the parts an interest set is sent in: well inside the peers'
// frame bound (every node's is at least 64 KiB in a server: see server.maxFrame).
func (l *links) interestPart() int { return min(32<<10, max(l.n.cfg.MaxFrame/2, 1<<10)) }

// setInterestLocked replaces a node's interest in the index. Caller holds l.mu.
//
// A storm of subscriptions sends a large set round after round, each a little different, so
// the change is found by walking the old and the new set side by side in sorted order (senders
// sort theirs; an unsorted one, or one with repeats, is sorted and compacted here): only the filters that came or went are parsed
// and touch the index, and no map of the whole set is built per round.
func (l *links) setInterestLocked(id string, filters []string) {
	if !strictlySorted(filters) {
		filters = slices.Clone(filters)
		slices.Sort(filters)
		filters = slices.Compact(filters)
	}
	old := l.interest[id]
	i, j := 0, 0
	for i < len(old) || j < len(filters) {
		switch {
		case j == len(filters) || i < len(old) && old[i] < filters[j]:
			if f, err := topic.ParseFilter(old[i]); err == nil {
				l.index.Unsubscribe(f, id)
			}
			i++
		case i == len(old) || filters[j] < old[i]:
			if f, err := topic.ParseFilter(filters[j]); err == nil {
				l.index.Subscribe(f, id, struct{}{})
			}
			j++
		default: // in both
			i++
			j++
		}
	}
	if len(filters) == 0 {
		delete(l.interest, id)
	} else {
		l.interest[id] = filters
	}
}

// strictlySorted reports whether fs is in ascending order without repeats.
func strictlySorted(fs []string) bool {
	for i := 1; i < len(fs); i++ {
		if fs[i-1] >= fs[i] {
			return false
		}
	}
	return true
}

// dialLoop keeps the outgoing link to one node up until the node leaves or this one closes.
func (l *links) dialLoop(p *peer) {
	defer l.wg.Done()
	backoff := 100 * time.Millisecond
	for {
		select {
		case <-p.stop:
			return
		case <-l.done:
			return
		default:
		}
		c, err := l.n.dial(p.addr, connLink, dialTimeout)
		if err == nil {
			backoff = 100 * time.Millisecond
			l.runOut(p, c)
		} else {
			l.n.log.Debug("cluster: link down", "node", p.id, "addr", p.addr, "err", err)
		}
		select {
		case <-p.stop:
			return
		case <-l.done:
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// outLink is this node's sending side of one link.
type outLink struct {
	netio.Conn
	l *links
	p *peer
	// seq numbers messages awaiting acknowledgement; pending and reqs hold what awaits an answer.
	// All guarded by the Conn's lock.
	seq     uint64
	pending map[uint64]*acceptance
	reqs    map[uint64]chan frame
	done    chan struct{}
	// interestGen: the interest change (links.order) the last interest frame sent here
	// covered. Written by runOut before the link is visible, then by sendInterest only.
	interestGen atomic.Uint64
}

func (o *outLink) StopReading() { netio.WakeReader(o.NetConn()) }
func (o *outLink) Room()        {}

// send appends one frame built by fill, unless the link is ending.
func (o *outLink) send(fill func([]byte) []byte) bool {
	o.Lock()
	defer o.Unlock()
	if o.EndingLocked() {
		return false
	}
	o.CommitLocked(fill(o.BufLocked()), nil)
	return true
}

func (l *links) runOut(p *peer, c net.Conn) {
	o := &outLink{l: l, p: p, pending: map[uint64]*acceptance{}, reqs: map[uint64]chan frame{}, done: make(chan struct{})}
	o.Init(c, &l.out, o)
	g := l.order.gen.Load()
	fs := l.core.InterestFilters()
	prog := l.progress()
	o.send(func(b []byte) []byte {
		b = appendHello(b, l.n.cfg.NodeID)
		b = appendInterest(b, fs, l.interestPart())
		return appendProgress(b, fPing, prog)
	})
	o.interestGen.Store(g)
	p.out.Store(o)
	if l.order.gen.Load() != g {
		l.poke() // a change between the snapshot and now: its round may have missed this link
	}
	l.n.log.Info("cluster: link up", "node", p.id, "addr", p.addr)
	err := o.read()
	p.out.Store(nil)
	l.mu.Lock()
	if p.down.IsZero() {
		p.down = time.Now()
	}
	l.mu.Unlock()
	o.CloseNow(err)
	close(o.done)
	o.failAll(errLinkLost)
	l.failCallsTo(p.id)
	if !errors.Is(err, net.ErrClosed) {
		l.n.log.Info("cluster: link down", "node", p.id, "err", err)
	}
}

// read handles what the other node answers until the link breaks.
func (o *outLink) read() error {
	heard := false
	return readFrames(o.NetConn(), o.l.n.cfg.MaxFrame, func(f frame) error {
		if !heard {
			heard = true
			o.l.mu.Lock()
			o.p.down = time.Time{}
			o.l.mu.Unlock()
		}
		switch f.Type {
		case fAck:
			o.Lock()
			a := o.pending[f.Seq]
			delete(o.pending, f.Seq)
			o.Unlock()
			if a != nil {
				var err error
				if f.Err != "" {
					o.l.stats.Failed.Add(1)
					err = fmt.Errorf("cluster: node %s did not accept the message: %s", o.p.id, f.Err)
				}
				a.done(err)
			}
		case fPong:
			o.l.mu.Lock()
			o.p.prog, o.p.seen = f.Progress, time.Now()
			o.l.mu.Unlock()
		case fReply:
			o.Lock()
			ch := o.reqs[f.Seq]
			delete(o.reqs, f.Seq)
			o.Unlock()
			if ch != nil {
				ch <- f
			}
		default:
			return fmt.Errorf("%w: unexpected %q on an outgoing link", errFrame, f.Type)
		}
		return nil
	})
}

// failAll fails what was in flight on a link that ended.
func (o *outLink) failAll(err error) {
	o.Lock()
	pending, reqs := o.pending, o.reqs
	o.pending, o.reqs = map[uint64]*acceptance{}, map[uint64]chan frame{}
	o.Unlock()
	for _, a := range pending {
		o.l.stats.Failed.Add(1)
		a.done(err)
	}
	for id, ch := range reqs {
		ch <- frame{Type: fReply, Seq: id, Err: err.Error()}
	}
}

// request sends a request built by fill(id) and waits for its reply.
func (o *outLink) request(ctx context.Context, fill func(b []byte, id uint64) []byte) (frame, error) {
	id, ch, err := o.sendRequest(fill)
	if err != nil {
		return frame{}, err
	}
	return o.await(ctx, id, ch)
}

// sendRequest sends a request built by fill(id) and returns the channel its reply comes on: requests
// sent one after another reach the other node in that order (one connection).
func (o *outLink) sendRequest(fill func(b []byte, id uint64) []byte) (uint64, chan frame, error) {
	id := o.l.reqID.Add(1)
	ch := make(chan frame, 1)
	o.Lock()
	defer o.Unlock()
	if o.EndingLocked() {
		return 0, nil, errRetry
	}
	if len(o.reqs) >= maxRequests {
		return 0, nil, errors.New("cluster: too many requests waiting on the link to the leader")
	}
	o.reqs[id] = ch
	o.CommitLocked(fill(o.BufLocked(), id), nil)
	return id, ch, nil
}

// await waits for the reply to request id, sent by sendRequest.
func (o *outLink) await(ctx context.Context, id uint64, ch chan frame) (frame, error) {
	select {
	case f := <-ch:
		return f, nil
	case <-ctx.Done():
		o.Lock()
		delete(o.reqs, id)
		o.Unlock()
		return frame{}, ErrNoLeader
	}
}

// leaderLink returns the link to the leader with id, or errRetry.
func (l *links) leaderLink(id string) (*outLink, error) {
	l.mu.Lock()
	p := l.peers[id]
	l.mu.Unlock()
	if p == nil {
		return nil, errRetry
	}
	if o := p.out.Load(); o != nil {
		return o, nil
	}
	return nil, errRetry
}

// replyErr turns a reply into an error: errRetry when the node was not the leader.
func replyErr(f frame) error {
	switch f.Err {
	case "":
		return nil
	case errRetry.Error(), errLinkLost.Error():
		return errRetry
	case errSwapLost.Error():
		return errSwapLost
	case errNoReadIndex.Error():
		return errNoReadIndex
	default:
		return errors.New(f.Err)
	}
}

// forwardWrite asks the leader to commit cmd and returns its index.
func (l *links) forwardWrite(ctx context.Context, leader string, cmd []byte) (uint64, error) {
	o, err := l.leaderLink(leader)
	if err != nil {
		return 0, err
	}
	f, err := o.request(ctx, func(b []byte, id uint64) []byte { return appendWrite(b, id, cmd) })
	if err != nil {
		return 0, err
	}
	return f.Index, replyErr(f)
}

// forwardLeave asks the leader to remove this node.
func (l *links) forwardLeave(ctx context.Context, leader string) error {
	o, err := l.leaderLink(leader)
	if err != nil {
		return err
	}
	f, err := o.request(ctx, func(b []byte, id uint64) []byte { return appendLeave(b, id, l.n.cfg.NodeID) })
	if err != nil {
		return err
	}
	return replyErr(f)
}

// askJoin asks the node at addr to add this one. leader is the address of the leader when addr
// is not it.
func (l *links) askJoin(ctx context.Context, addr string) (leader string, err error) {
	c, err := l.n.dial(addr, connLink, dialTimeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	deadline := time.Now().Add(2 * l.n.cfg.WriteTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = c.SetDeadline(deadline)
	b := appendHello(nil, l.n.cfg.NodeID)
	b = appendJoin(b, 1, l.n.cfg.NodeID, string(l.n.raftAddr()))
	if _, err := c.Write(b); err != nil {
		return "", err
	}
	var reply frame
	err = readFrames(c, helloMaxFrame, func(f frame) error {
		if f.Type == fReply {
			reply = f
			return io.EOF
		}
		return nil
	})
	if reply.Type != fReply {
		return "", fmt.Errorf("no answer to the join: %w", err)
	}
	if reply.Boot != nil {
		return "", noClusterError{*reply.Boot}
	}
	if reply.Err != "" {
		return reply.Addr, errors.New(reply.Err)
	}
	return "", nil
}

// readFrames reads frames from c and hands each to fn until an error (fn's included). A link
// that stays silent for linkSilence is broken.
func readFrames(c net.Conn, maxFrame int, fn func(frame) error) error {
	r := bufio.NewReaderSize(c, 64<<10)
	var hdr [4]byte
	var body []byte
	for {
		if err := c.SetReadDeadline(time.Now().Add(linkSilence)); err != nil {
			return err
		}
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return err
		}
		n := int(binary.BigEndian.Uint32(hdr[:]))
		if n < 1 || n > maxFrame+1024 {
			return fmt.Errorf("%w: frame of %d bytes", errFrame, n)
		}
		// The buffer grows with what arrived, not with what the header claims.
		body = body[:0]
		for len(body) < n {
			k := min(n-len(body), 64<<10)
			body = append(body, make([]byte, k)...)
			if _, err := io.ReadFull(r, body[len(body)-k:]); err != nil {
				return err
			}
		}
		f, err := decodeFrame(body)
		if err != nil {
			return err
		}
		if err := fn(f); err != nil {
			return err
		}
		if cap(body) > 1<<20 {
			body = nil
		}
	}
}

func (l *links) close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	close(l.done)
	var outs []*outLink
	for _, p := range l.peers {
		if o := p.out.Load(); o != nil {
			outs = append(outs, o)
		}
	}
	var ins []*inLink
	for in := range l.inbound {
		ins = append(ins, in)
	}
	l.mu.Unlock()
	for _, o := range outs {
		o.CloseNow(net.ErrClosed)
	}
	for _, in := range ins {
		in.CloseNow(net.ErrClosed)
	}
	l.wg.Wait()
}

// raftAddrOf is the raft address a node id has in the configuration ("" if none).
func (n *Node) raftAddrOf(id string) raft.ServerAddress {
	for _, s := range n.members() {
		if string(s.ID) == id {
			return s.Address
		}
	}
	return ""
}
