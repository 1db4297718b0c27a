package mqtt

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ternmq/tern/internal/broker"
	"github.com/ternmq/tern/internal/message"
	"github.com/ternmq/tern/internal/mqtt/packet"
	"github.com/ternmq/tern/internal/netio"
	"github.com/ternmq/tern/internal/rawio"
)

// readMode is how a read that finds the socket drained waits.
type readMode uint8

const (
	// readWait waits until the deadline.
	readWait readMode = iota
	// readLazy is a read on a goroutine that has handled packets: on a raw socket it waits only
	// while fewer than maxLazyWaiters others do, and otherwise returns errWouldBlock.
	readLazy
	// readNoWait never waits on a raw socket: drained, it returns errWouldBlock, or
	// os.ErrDeadlineExceeded once the deadline has passed. It is the read of a connection the
	// poller woke, which parks again rather than hold a goroutine.
	readNoWait
)

// readBufSize is the pooled read buffer. Larger packets get a buffer of their own for as long as
// they take to arrive.
const readBufSize = 16 << 10

// readBuf is what a connection needs only while it has bytes to process: the read buffer and the
// reusable structures a PUBLISH is decoded into. It is pooled, so an idle connection holds none.
type readBuf struct {
	data  [readBufSize]byte
	pub   packet.Publish
	msg   message.Message
	users []message.UserProperty
}

var readBufs = sync.Pool{New: func() any { return new(readBuf) }}

// packetReader frames MQTT packets out of a connection.
//
// On TCP and Unix sockets it reads through syscall.RawConn and takes a buffer from the pool only
// when there are bytes, giving it back whenever the socket is drained and no partial packet is
// pending; an idle connection therefore holds no read buffer at all. It waits for bytes in Go's
// netpoller (readWait, readLazy) or not at all (readNoWait, when the connection parks in the
// netio.Poller instead). Other connections (TLS, WebSocket) read through net.Conn, on a goroutine
// that waits; they too give the buffer back when nothing is pending and wait for the first byte
// in a field of one byte.
//
// What the reader needs only while it serves the connection is a readState, pooled like the
// buffer: a parked connection keeps only what says where its bytes come from and its keep-alive
// times (see parked).
type packetReader struct {
	conn net.Conn
	raw  syscall.RawConn
	// st is the working state; nil while the connection is parked with nothing pending.
	st *readState
	// shared is what the server's readers share: the count of lazy waiters and the budget of
	// connections that have not logged in (nil: neither, in tests).
	shared *readerShared
	// armed is the read deadline set on the connection (monoKey; 0: none), so that a wait with
	// the same deadline does not set it again.
	armed int64
	// readAt is when bytes last arrived; lastPacket is readAt of the read that completed the
	// latest packet (both monotonic nanoseconds, see monoNow). Keep alive counts whole packets,
	// so a client trickling a packet one byte at a time does not keep its connection alive.
	readAt, lastPacket int64
	maxSize            int32
	// stop is set when the connection is shutting down: a read already waiting is woken by a
	// deadline in the past, and stop keeps a later read from arming a new one over it.
	stop atomic.Bool
	// woke is set by a read that waited for the poller, or when the netio.Poller handed the
	// connection back, and cleared by tookWake.
	woke bool
	// tlsReady is set once a packet has been read, so the handshake is over and a read that
	// does not wait cannot fail it (crypto/tls keeps a handshake's errors): from then on a TLS
	// connection can park (parkConn).
	tlsReady bool
	// admitted: logged in, so the connecting budget no longer applies.
	admitted bool
	// socketDetached: the socket under a TLS or WebSocket connection let go of its net.Conn
	// (conn.detachIdleSocket); what Stats.Detached counts for it (conn.countSocket).
	socketDetached bool
}

// readerShared is what every reader of one server shares.
type readerShared struct {
	// lazyWaiters counts the readers that wait on the goroutine that handled their last
	// packets (a lazy read); at maxLazyWaiters a lazy read returns errWouldBlock instead.
	lazyWaiters atomic.Int32
	// connecting is what the buffers of connections that have not logged in hold together.
	connecting connectBudget
}

// readState is a reader's working state: its buffer and the state of one raw read. It is pooled,
// and a reader holds one only while it serves its connection (or keeps bytes of a partial
// packet).
type readState struct {
	r *packetReader // the reader holding it
	// rb is held while bytes are being processed; nil while waiting on a raw connection.
	rb *readBuf
	// buf is rb.data, or a larger buffer while a packet bigger than rb.data arrives, or (rb nil)
	// the start of a packet set aside while the connection is parked (see setAside).
	buf   []byte
	start int // first unconsumed byte
	end   int // end of valid data
	// charged is what the buffers count against the connecting budget (see charge).
	charged int
	// State of one raw read, kept here so readFn (bound once per readState) allocates nothing
	// per read.
	readFn     func(fd uintptr) bool
	n          int
	rerr       error
	lazy       bool
	nowait     bool
	holding    bool
	wouldBlock bool
	// polled is set when readFD found the socket drained, so the read waited for the poller.
	polled bool
	// first receives the first byte a connection without a raw socket sends after a wait.
	first [1]byte
	// subscriptions is where SUBSCRIBE packets are decoded (onSubscribe); kept, cleared, across
	// uses of the state.
	subscriptions []packet.Subscription
}

var readStates = sync.Pool{New: func() any {
	s := new(readState)
	s.readFn = s.readFD
	return s
}}

// state returns the reader's working state, taking one from the pool when it holds none.
func (r *packetReader) state() *readState {
	if r.st == nil {
		r.st = readStates.Get().(*readState)
		r.st.r = r
	}
	return r.st
}

// parked is called as the connection parks: the start of a packet that is pending moves out of
// the pooled buffer (setAside), and with nothing pending the working state goes back to the
// pool, so a parked connection holds neither.
func (r *packetReader) parked() {
	if p, ok := r.conn.(interface{ Park() }); ok {
		// A tlsrec.Conn drops its cipher state and read buffer.
		p.Park()
	}
	s := r.st
	if s == nil {
		return
	}
	r.setAside()
	if s.buf == nil && s.rb == nil && s.charged == 0 {
		r.putState()
	}
}

// maxKeptSubscriptions is the most decoded filters a pooled state keeps room for: a SUBSCRIBE
// with more gets its own.
const maxKeptSubscriptions = 16

// putState gives the working state back; it holds no buffer.
func (r *packetReader) putState() {
	s := r.st
	subs := s.subscriptions[:0]
	clear(subs[:cap(subs)]) // the filters alias buffers that go back to their pool
	if cap(subs) > maxKeptSubscriptions {
		subs = nil
	}
	*s = readState{readFn: s.readFn, subscriptions: subs}
	r.st = nil
	readStates.Put(s)
}

// monoBase is where a reader's times start: they are nanoseconds on the monotonic clock since
// then, eight bytes where a time.Time takes twenty-four, in state every connection holds.
var monoBase = time.Now()

// monoNow is the monotonic clock in nanoseconds since monoBase.
func monoNow() int64 { return int64(time.Since(monoBase)) }

// monoTime is the time.Time of a monoNow reading.
func monoTime(ns int64) time.Time { return monoBase.Add(time.Duration(ns)) }

// monoKey identifies a deadline in one int64 (0: the zero time, none), for comparing a deadline
// with the one already set on the socket.
func monoKey(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return int64(t.Sub(monoBase)) | 1
}

// maxLazyWaiters bounds how many connections of one server keep a grown goroutine stack while
// they wait, so a crowd of connections that each sent a little still waits on minimal stacks.
const maxLazyWaiters = 64

// errWouldBlock: a lazy read found the socket drained and no room among the lazy waiters.
var errWouldBlock = errors.New("mqtt: would block")

func newPacketReader(c net.Conn, maxSize int) *packetReader {
	r := new(packetReader)
	r.init(c, maxSize)
	return r
}

// init prepares a zero reader for c: a connection holds its reader by value (one allocation
// fewer, and the two structures share a size class's slack).
func (r *packetReader) init(c net.Conn, maxSize int) {
	now := monoNow()
	*r = packetReader{conn: c, maxSize: int32(maxSize), readAt: now, lastPacket: now}
	if sc, ok := c.(syscall.Conn); ok && rawio.Supported {
		switch c.(type) {
		case *net.TCPConn, *net.UnixConn:
			if raw, err := sc.SyscallConn(); err == nil {
				r.raw = raw
			}
		}
	}
}

// parkConn is the socket under a TLS or WebSocket connection that can park in the poller (nil
// otherwise). It is found again at each use rather than kept: every TCP connection, most of
// them, would carry the pointer for nothing.
func (r *packetReader) parkConn() *netio.ParkConn {
	switch c := r.conn.(type) {
	case *tls.Conn:
		p, _ := c.NetConn().(*netio.ParkConn)
		return p
	case interface{ ParkConn() *netio.ParkConn }:
		// A WebSocket (wsconn) or tlsrec.Conn whose reads pass the socket's ErrWouldBlock
		// through.
		return c.ParkConn()
	}
	return nil
}

// initRaw prepares a zero reader for a bare socket (netio.Socket): detached from the start.
func (r *packetReader) initRaw(raw syscall.RawConn, maxSize int) {
	now := monoNow()
	*r = packetReader{raw: raw, maxSize: int32(maxSize), readAt: now, lastPacket: now}
}

// next returns the next whole packet; body aliases the buffer until the following call.
// deadline bounds the wait for bytes (zero: no bound); when it passes, next returns
// os.ErrDeadlineExceeded. mode says whether and how a drained raw socket is waited for. batch
// (nil: none) is flushed before each read: the connection writes what the packets handled so
// far produced before it takes more or waits, so packets read together leave in one write. (A
// parameter rather than a field: every idle connection would hold the pointer.)
func (r *packetReader) next(deadline time.Time, mode readMode, batch *broker.Batch) (typ, flags byte, body []byte, err error) {
	s := r.state()
	for {
		if s.buf != nil && s.end > s.start {
			data := s.buf[s.start:s.end]
			t, f, rem, hl, perr := packet.ParseFixedHeader(data)
			if perr == nil {
				total := hl + rem
				if total > int(r.maxSize) {
					return t, f, nil, &packet.Error{Code: packet.PacketTooLarge, Reason: "packet exceeds the server's maximum packet size"}
				}
				if len(data) >= total {
					s.start += total
					r.lastPacket = r.readAt
					r.tlsReady = true
					return t, f, data[hl:total], nil
				}
				if err := r.makeRoom(total); err != nil {
					return 0, 0, nil, err
				}
			} else if !errors.Is(perr, packet.ErrIncomplete) {
				return 0, 0, nil, perr
			}
		}
		if err := r.fill(deadline, mode, batch); err != nil {
			return 0, 0, nil, err
		}
	}
}

// pending returns the bytes received but not yet consumed; they alias the buffer.
func (r *packetReader) pending() []byte {
	s := r.st
	if s == nil || s.buf == nil {
		return nil
	}
	return s.buf[s.start:s.end]
}

// readBuffer is the pooled buffer being read from, with the structures a PUBLISH is decoded into
// (nil when the reader holds none).
func (r *packetReader) readBuffer() *readBuf {
	if r.st == nil {
		return nil
	}
	return r.st.rb
}

// makeRoom prepares the buffer for more of a packet of size total that starts at start. The
// buffer grows only when it is full of received bytes, and at most doubles, so what a client
// makes the server allocate stays within twice what it actually sent, whatever length its
// fixed header claims.
func (r *packetReader) makeRoom(total int) error {
	if err := r.takeBack(); err != nil {
		return err
	}
	s := r.st
	if s.start+total <= len(s.buf) {
		return nil
	}
	pending := s.end - s.start
	if s.start > 0 {
		copy(s.buf, s.buf[s.start:s.end])
		s.start, s.end = 0, pending
	}
	if s.end < len(s.buf) {
		return nil
	}
	size := min(total, 2*len(s.buf))
	// The pooled buffer stays held beside the larger one: the decoding scratch lives in it.
	if err := r.charge(readBufSize + size); err != nil {
		return err
	}
	big := make([]byte, size)
	copy(big, s.buf[:s.end])
	s.buf = big
	return nil
}

// compact moves pending bytes to the front, or gives the buffer back when nothing is pending.
func (r *packetReader) compact() {
	s := r.st
	if s.start == s.end {
		s.start, s.end = 0, 0
		r.release()
		return
	}
	if s.end == len(s.buf) {
		n := copy(s.buf, s.buf[s.start:s.end])
		s.start, s.end = 0, n
	}
}

func (r *packetReader) acquire() error {
	s := r.st
	if s.rb != nil {
		return nil
	}
	if err := r.charge(readBufSize); err != nil {
		return err
	}
	s.rb = readBufs.Get().(*readBuf)
	s.buf = s.rb.data[:]
	return nil
}

func (r *packetReader) release() {
	s := r.st
	if s.rb != nil {
		readBufs.Put(s.rb)
		s.rb = nil
	}
	s.buf = nil
	_ = r.charge(0)
}

// charge sets what the reader's buffers count against its budget to held bytes. Growing fails
// with errConnectMemory when the budget has no room; shrinking always succeeds.
func (r *packetReader) charge(held int) error {
	s := r.st
	if r.shared == nil || r.admitted || held == s.charged {
		return nil
	}
	if !r.shared.connecting.take(int64(held - s.charged)) {
		return errConnectMemory
	}
	s.charged = held
	return nil
}

// loggedIn ends the reader's time before login: its buffers no longer count against the
// connecting budget, and packets may be as large as the server allows.
func (r *packetReader) loggedIn(maxSize int) {
	if s := r.st; s != nil && r.shared != nil && !r.admitted {
		r.shared.connecting.take(int64(-s.charged))
		s.charged = 0
	}
	r.admitted = true
	r.maxSize = int32(maxSize)
}

// maxParkedPending is the most bytes of a partial packet that setAside moves out of the pooled
// buffer; a connection parked with more keeps the buffer (the bytes would cost as much).
const maxParkedPending = 1024

// setAside is called as the connection parks: when the start of a packet is pending (its rest
// has not arrived), the bytes move to a slice of their own and the pooled buffer goes back, so a
// parked connection never holds readBufSize for a few bytes (a client can leave a packet
// unfinished until its keep alive runs out). buf is then that slice and rb nil.
func (r *packetReader) setAside() {
	s := r.st
	n := s.end - s.start
	if s.rb == nil || n == 0 || n > maxParkedPending || &s.buf[0] != &s.rb.data[0] {
		return
	}
	aside := append([]byte(nil), s.buf[s.start:s.end]...)
	r.release()
	s.buf, s.start, s.end = aside, 0, n
}

// takeBack moves bytes set aside back into a pooled buffer before anything reads or grows it.
func (r *packetReader) takeBack() error {
	s := r.st
	if s.rb != nil || s.buf == nil {
		return nil
	}
	aside := s.buf[s.start:s.end]
	s.buf = nil
	if err := r.acquire(); err != nil {
		s.buf, s.start, s.end = aside, 0, len(aside)
		return err
	}
	s.start, s.end = 0, copy(s.buf, aside)
	return nil
}

// fill reads more bytes after what is pending.
func (r *packetReader) fill(deadline time.Time, mode readMode, batch *broker.Batch) error {
	batch.Flush()
	s := r.state()
	r.compact()
	if err := r.takeBack(); err != nil {
		return err
	}
	nowait := mode == readNoWait && (r.raw != nil || r.tlsReady && r.parkConn() != nil)
	if mode == readLazy && r.socketDetached {
		// A socket that let go of its net.Conn reads what is there and parks again, as a
		// detached raw socket does (see conn.Ready).
		nowait = true
	} else if mode == readLazy && r.raw == nil && r.shared != nil && r.parkConn() != nil {
		// A TLS lazy wait blocks in tls.Conn.Read: as on a raw socket, only maxLazyWaiters
		// of them at a time; the others read what is there and park.
		if r.shared.lazyWaiters.Add(1) > maxLazyWaiters {
			nowait = true
		}
		defer r.shared.lazyWaiters.Add(-1)
	}
	due := deadline
	if nowait {
		// No wait here: the deadline is the caller's to check, and one left on the socket by
		// an earlier wait must not fail this read.
		deadline = time.Time{}
	}
	if k := monoKey(deadline); k != r.armed {
		if err := r.conn.SetReadDeadline(deadline); err != nil {
			return err
		}
		r.armed = k
	}
	if r.stop.Load() {
		return os.ErrDeadlineExceeded
	}
	if r.raw == nil {
		if p := r.parkConn(); p != nil {
			p.SetNoWait(nowait)
		}
		if s.rb == nil {
			// Nothing pending: wait for the first byte without a buffer, so that an idle TLS
			// or WebSocket connection holds none; the rest of what arrived waits in the TLS or
			// WebSocket reader's own buffer for the read below.
			n, err := r.conn.Read(s.first[:])
			if n == 0 {
				if err == nil {
					err = io.ErrNoProgress
				}
				return r.tlsWouldBlock(err, due)
			}
			if err := r.acquire(); err != nil {
				return err
			}
			s.buf[0], s.end = s.first[0], 1
			r.readAt = monoNow()
			return nil
		}
		n, err := r.conn.Read(s.buf[s.end:])
		s.end += n
		if n > 0 {
			r.readAt = monoNow()
			return nil
		}
		if err == nil {
			err = io.ErrNoProgress
		}
		return r.tlsWouldBlock(err, due)
	}
	s.n, s.rerr, s.lazy, s.nowait, s.wouldBlock, s.polled = 0, nil, mode == readLazy && r.shared != nil, nowait, false, false
	err := r.raw.Read(s.readFn)
	if s.holding {
		s.holding = false
		r.shared.lazyWaiters.Add(-1)
	}
	if err != nil {
		return err
	}
	switch {
	case s.wouldBlock && !due.IsZero() && !time.Now().Before(due):
		// Drained at the deadline (only a readNoWait read returns drained with one).
		return os.ErrDeadlineExceeded
	case s.wouldBlock:
		return errWouldBlock
	case s.rerr != nil:
		return s.rerr
	case s.n == 0:
		return io.EOF
	}
	s.end += s.n
	r.readAt = monoNow()
	r.woke = r.woke || s.polled
	return nil
}

// tlsWouldBlock turns a TLS read's netio.ErrWouldBlock into what a drained raw socket gives:
// errWouldBlock, or os.ErrDeadlineExceeded once due has passed. crypto/tls returned it only after
// it had used up every complete record it held, so the connection may park.
func (r *packetReader) tlsWouldBlock(err error, due time.Time) error {
	if !netio.IsWouldBlock(err) {
		return err
	}
	if !due.IsZero() && !time.Now().Before(due) {
		return os.ErrDeadlineExceeded
	}
	return errWouldBlock
}

// parkable reports whether the connection can wait in the poller: a raw socket, or TLS on one
// after its handshake.
func (r *packetReader) parkable() bool { return r.raw != nil || r.tlsReady && r.parkConn() != nil }

// tookWake reports whether bytes arrived while the reader waited for the poller since the last
// call, and clears that.
func (r *packetReader) tookWake() bool {
	w := r.woke
	r.woke = false
	return w
}

// readFD is the raw read: the poller calls it, and again each time the socket becomes readable
// while it returns false.
func (s *readState) readFD(fd uintptr) bool {
	r := s.r
	if s.rerr = r.acquire(); s.rerr != nil {
		return true
	}
	s.n, s.rerr = rawio.ReadFD(fd, s.buf[s.end:])
	if s.rerr != syscall.EAGAIN {
		return true
	}
	s.rerr = nil
	s.polled = true
	// Drained: hold no buffer while waiting for the socket to become readable.
	if s.end == 0 {
		r.release()
	}
	if s.nowait {
		s.wouldBlock = true
		return true
	}
	if s.lazy && !s.holding {
		if r.shared.lazyWaiters.Add(1) > maxLazyWaiters {
			r.shared.lazyWaiters.Add(-1)
			s.wouldBlock = true
			return true
		}
		s.holding = true
	}
	return false
}

// detached reports whether the connection has let go of its net.Conn (netio.Conn.Detach): raw
// is then its kept socket, through which only reads that do not wait may go.
func (r *packetReader) detached() bool { return r.conn == nil }

// detach makes raw, the socket a detached connection kept, the one the reader reads through.
func (r *packetReader) detach(raw syscall.RawConn) {
	r.conn, r.raw, r.armed = nil, raw, 0
}

// attach makes nc, the net.Conn an attached connection got again, the one the reader reads
// through.
func (r *packetReader) attach(nc net.Conn) error {
	raw, err := nc.(syscall.Conn).SyscallConn()
	if err != nil {
		return err
	}
	r.conn, r.raw, r.armed = nc, raw, 0
	return nil
}

// close gives the buffer and the working state back.
func (r *packetReader) close() {
	if r.st != nil {
		r.release()
		r.putState()
	}
}

// errConnectMemory closes a connection that has not logged in when the buffers of all such
// connections already hold the server's connecting budget.
var errConnectMemory = errors.New("mqtt: connecting clients hold the connect memory budget")

// connectBudget bounds the bytes that connections which have not logged in hold together, so a
// crowd of connections that each send part of a CONNECT cannot exhaust memory.
type connectBudget struct {
	max  int64
	used atomic.Int64
}

// take adds n bytes (negative: gives them back), refusing growth past max.
func (b *connectBudget) take(n int64) bool {
	if b.used.Add(n) > b.max && n > 0 {
		b.used.Add(-n)
		return false
	}
	return true
}

// connectVersion reads the protocol level of a CONNECT that is too large to take, from its first
// bytes (waiting for them until deadline); 0 when they do not say. It lets an MQTT 5 client be
// told why it is refused.
func (r *packetReader) connectVersion(deadline time.Time) packet.Version {
	for {
		data := r.pending()
		_, _, _, hl, err := packet.ParseFixedHeader(data)
		if err != nil {
			return 0
		}
		// Protocol name "MQTT" (a 2-byte length and 4 bytes), then the level.
		if len(data) >= hl+7 {
			v := data[hl:]
			if v[0] == 0 && v[1] == 4 && string(v[2:6]) == "MQTT" {
				return packet.Version(v[6])
			}
			return 0
		}
		if r.fill(deadline, readWait, nil) != nil {
			return 0
		}
	}
}
