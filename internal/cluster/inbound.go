package cluster

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/raft"

	"github.com/ternmq/tern/internal/netio"
)

// inLink is the receiving side of another node's outgoing link: it delivers what comes, keeps
// the node's interest, and answers pings and requests.
type inLink struct {
	netio.Conn
	l    *links
	node string
	// member: the node was a member at its hello; a node that is not may only ask to join.
	member bool
	// asked: a node that is not a member has asked to join; that is all it may say.
	asked bool
	stall *time.Timer
	// parts is the interest received in fPart frames since the last fInterest, partBytes its
	// size as counted against maxInterestParts.
	parts     []string
	partBytes int
}

// maxInterestParts bounds the interest a peer may send in parts before completing it, counted
// as the filters' bytes plus a string header each: far above the 64 MiB its outgoing buffer can
// hold, so only a broken peer reaches it.
const maxInterestParts = 256 << 20

func (in *inLink) StopReading() { netio.WakeReader(in.NetConn()) }
func (in *inLink) Room()        {}

func (in *inLink) send(fill func([]byte) []byte) {
	in.Lock()
	defer in.Unlock()
	if !in.EndingLocked() {
		in.CommitLocked(fill(in.BufLocked()), nil)
	}
}

// serveInbound runs an accepted link connection; certNode is the identity of the peer's
// certificate ("" without TLS).
func (l *links) serveInbound(c net.Conn, certNode string) {
	in := &inLink{l: l}
	in.Init(c, &l.out, in)
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		_ = c.Close()
		return
	}
	l.inbound[in] = struct{}{}
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		delete(l.inbound, in)
		l.mu.Unlock()
	}()
	maxFrame := helloMaxFrame
	err := readFrames(c, l.n.cfg.MaxFrame, func(f frame) error {
		if in.node == "" {
			if f.Type != fHello {
				return fmt.Errorf("%w: %q before the hello", errFrame, f.Type)
			}
			if certNode != "" && certNode != f.Node {
				return fmt.Errorf("cluster: certificate of %q says it is node %q", certNode, f.Node)
			}
			in.node = f.Node
			in.member = l.n.isMember(f.Node)
			maxFrame = l.n.cfg.MaxFrame
			return nil
		}
		_ = maxFrame
		if !in.member && f.Type != fJoin {
			return fmt.Errorf("cluster: %q is not a member and may only ask to join", in.node)
		}
		return in.handle(f)
	})
	in.CloseNow(err)
	if in.node != "" && in.member && !errors.Is(err, net.ErrClosed) {
		l.n.log.Debug("cluster: incoming link ended", "node", in.node, "err", err)
	}
}

func (in *inLink) handle(f frame) error {
	l := in.l
	switch f.Type {
	case fMsg:
		l.stats.Received.Add(1)
		if err := l.n.caughtUp(f.Index); err != nil {
			// Not delivered: a persistent session it was sent here for may not be here yet.
			if f.Seq != 0 {
				seq := f.Seq
				in.send(func(b []byte) []byte { return appendAck(b, seq, err.Error()) })
			}
			return nil
		}
		l.calls.answered(f.Msg)
		res := l.core.DeliverRemote(f.Msg, f.Answerable, f.Groups)
		if f.Seq != 0 {
			seq := f.Seq
			// Checked after the delivery: a session released before it was found gone.
			moved := l.n.fsm.released.since(f.Index, f.Msg.Topic)
			res.Durable.Then(func(err error) {
				if err == nil && moved {
					err = errTakenOver
				}
				msg := ""
				if err != nil {
					msg = err.Error()
				}
				in.send(func(b []byte) []byte { return appendAck(b, seq, msg) })
			})
		}
		if res.Backpressure != nil {
			in.pause(res.Backpressure)
		}
	case fPart:
		for _, s := range f.Filters {
			in.partBytes += len(s) + 16
		}
		if in.partBytes > maxInterestParts {
			return fmt.Errorf("%w: interest in parts above %d bytes", errFrame, maxInterestParts)
		}
		in.parts = append(in.parts, f.Filters...)
	case fInterest:
		fs := f.Filters
		if in.parts != nil {
			fs = append(in.parts, fs...)
			in.parts, in.partBytes = nil, 0
		}
		l.mu.Lock()
		l.setInterestLocked(in.node, fs)
		l.mu.Unlock()
	case fPing:
		l.mu.Lock()
		if p := l.peers[in.node]; p != nil {
			p.prog, p.seen = f.Progress, time.Now()
		}
		l.mu.Unlock()
		prog := l.progress()
		in.send(func(b []byte) []byte { return appendProgress(b, fPong, prog) })
	case fJoin:
		// A join is the whole conversation of a node that is not yet a member. The joiner hangs
		// up once it has the answer: closing here would drop the answer still queued for the
		// writer, and the joiner would see only EOF.
		if !in.member && in.asked {
			return errJoinDone
		}
		in.asked = true
		in.serveJoin(f)
	case fWrite, fLeave, fRead:
		f.Data = append([]byte(nil), f.Data...)
		select {
		case l.writers <- struct{}{}:
		default:
			in.send(func(b []byte) []byte { return appendReply(b, f.Seq, 0, "", "cluster: the leader is too busy") })
			return nil
		}
		if f.Type == fWrite {
			in.serveWrite(f)
			return nil
		}
		go func() {
			defer func() { <-l.writers }()
			switch f.Type {
			case fRead:
				in.serveRead(f)
			default:
				in.serveRequest(f)
			}
		}()
	default:
		return fmt.Errorf("%w: unexpected %q on an incoming link", errFrame, f.Type)
	}
	return nil
}

var errJoinDone = errors.New("cluster: a node that is not a member may ask to join only once")

// pause stops reading from the node while a receiver here catches up, at most the stall time,
// as the MQTT face does with a publisher.
func (in *inLink) pause(drained <-chan struct{}) {
	select {
	case <-drained:
		return
	default:
	}
	if in.stall == nil {
		in.stall = time.NewTimer(in.l.out.Lim.Stall)
	} else {
		in.stall.Reset(in.l.out.Lim.Stall)
	}
	select {
	case <-drained:
		in.stall.Stop()
	case <-in.stall.C:
	}
}

// notLeader answers a request for the leader: the leader's link address, so a joining node can
// ask there.
func (in *inLink) notLeader(seq uint64) {
	addr := ""
	if a, _ := in.l.n.r.LeaderWithID(); a != "" {
		addr = in.l.n.linkAddr(a)
	}
	in.send(func(b []byte) []byte { return appendReply(b, seq, 0, addr, errRetry.Error()) })
}

func (in *inLink) serveJoin(f frame) {
	n := in.l.n
	if f.Node != in.node {
		in.send(func(b []byte) []byte { return appendReply(b, f.Seq, 0, "", "a node can only ask to join for itself") })
		return
	}
	if has, err := n.HasState(); err == nil && !has {
		// No cluster here yet: say so, with this node's bootstrap vote (bootstrap.go).
		ans := n.boot.hear(f.Node)
		in.send(func(b []byte) []byte { return appendReplyBoot(b, f.Seq, 0, "", errNoCluster.Error(), &ans) })
		return
	}
	if !n.IsLeader() {
		in.notLeader(f.Seq)
		return
	}
	idx, err := n.addVoter(f.Node, raft.ServerAddress(f.Addr))
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	in.send(func(b []byte) []byte { return appendReply(b, f.Seq, idx, "", msg) })
}

// writeEnqueue bounds how long a link's reader waits to hand a write to raft (a leader far
// behind): the link carries messages and pings too.
const writeEnqueue = time.Second

// serveWrite serves a forwarded write (holding a writers slot, which it gives back). The write
// goes to raft here, on the link's reader, so the writes of one node reach the log in the order
// it sent them (pipeline.go); the answer is waited for on a goroutine of its own.
func (in *inLink) serveWrite(f frame) {
	l := in.l
	if !l.n.IsLeader() {
		in.notLeader(f.Seq)
		<-l.writers
		return
	}
	fut := l.n.r.Apply(f.Data, writeEnqueue)
	go func() {
		defer func() { <-l.writers }()
		idx, err := applyResult(fut)
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			err = errRetry
		}
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		in.send(func(b []byte) []byte { return appendReply(b, f.Seq, idx, "", msg) })
	}()
}

// serveRequest serves a node's request to leave, or to remove a node gone for good.
func (in *inLink) serveRequest(f frame) {
	n := in.l.n
	if !n.IsLeader() {
		in.notLeader(f.Seq)
		return
	}
	var idx uint64
	var err error
	// A member asks for itself (Leave) or for a node gone for good (Remove, which checked it
	// first); the leader is not removed by another node: it leaves itself.
	if f.Node != in.node && f.Node == n.cfg.NodeID {
		err = errors.New("the leader is not removed by another node: make it leave")
	} else {
		idx, err = n.removeServer(f.Node)
	}
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	in.send(func(b []byte) []byte { return appendReply(b, f.Seq, idx, "", msg) })
}

// errTakenOver refuses a QoS 1/2 message sent here by a directory older than a takeover of a
// session it matches: the session's new holder was sent no copy, so the publisher is told to
// send it again rather than that it is kept (released.go).
var errTakenOver = errors.New("cluster: a session this message is for has just moved to another node")

// barrierWait bounds how long a message waits for this node to apply the index its sender had
// applied (normally not at all); well within a link's silence timeout.
const barrierWait = 2 * time.Second

// caughtUp waits until this node has applied index i, so its core holds every session the log
// had given it there (sessions.go). A node that is not live yet takes nothing.
func (n *Node) caughtUp(i uint64) error {
	if !n.fsm.live.Load() {
		return ErrNotLive
	}
	applied, tick := n.fsm.progress()
	if applied >= i {
		return nil
	}
	if h := n.fsm.waiting.Load(); h != nil {
		(*h)()
	}
	t := time.NewTimer(barrierWait)
	defer t.Stop()
	for {
		select {
		case <-tick:
		case <-t.C:
			return fmt.Errorf("cluster: this node has not applied index %d yet (at %d)", i, applied)
		}
		if applied, tick = n.fsm.progress(); applied >= i {
			return nil
		}
	}
}
