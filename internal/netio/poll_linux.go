package netio

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Poller waits for many sockets to become readable without a goroutine each: one epoll instance
// holds every parked socket, and a readable one is handed to a worker of a bounded pool, which
// runs its Handler until the socket is drained and it parks again.
//
// The epoll descriptor is itself waited on through Go's own netpoller (an epoll descriptor is
// readable while it has events), so the poller's goroutine is an ordinary parked goroutine, not
// a thread blocked in epoll_wait, and the runtime wakes it as it wakes any reader. A socket
// parked here is also registered with the runtime (net.Conn keeps it there for writes and for the
// readers that wait the ordinary way); epoll allows one descriptor in several instances.
//
// Registrations are one-shot (EPOLLONESHOT): an event disarms the socket until its owner arms it
// again, so one socket is never handed to two workers.
type Poller struct {
	// id is the poller's place in the process's table of pollers (see pollers), which its
	// watches keep instead of a pointer.
	id   uint8
	epfd int
	ep   *os.File
	raw  syscall.RawConn

	mu sync.Mutex
	// watches is indexed by descriptor. A descriptor closed elsewhere leaves the epoll set by
	// itself and its number may be reused before the old Watch is closed, so events carry the
	// Watch's generation as well, and a slot is cleared only by the Watch that holds it.
	watches []*Watch
	gen     uint16
	// ready is the queue of watches whose handlers are due, in the order their events came
	// (bounded: a watch is queued only on its way from armed to owned, so at most once).
	ready   []*Watch
	head    int
	running int
	max     int

	deadlines deadlines
}

// maxWorkers bounds the goroutines that run handlers at once. Handlers may pause (a publisher
// held back for a slow receiver, a store sync), so the bound is far above the core count, and
// a busy connection keeps its worker only as long as it has bytes (plus the lazy wait a face
// allows itself, which it bounds).
const maxWorkers = 1024

var (
	defaultPoller    *Poller
	defaultPollerErr error
	defaultOnce      sync.Once
)

// pollers holds every poller of the process, by id: a Watch names its poller with one byte
// rather than a pointer. Pollers are never closed, and a process needs one (tests make a few
// more), so 256 is plenty and the table only grows.
var pollers struct {
	mu   sync.Mutex
	n    int
	byID [256]atomic.Pointer[Poller]
}

// DefaultPoller returns the process's poller, starting it on first use; faces share it.
func DefaultPoller() (*Poller, error) {
	defaultOnce.Do(func() { defaultPoller, defaultPollerErr = NewPoller(maxWorkers) })
	return defaultPoller, defaultPollerErr
}

// NewPoller starts a poller whose handlers run on at most workers goroutines at once.
func NewPoller(workers int) (*Poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll: %w", err)
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		_ = unix.Close(epfd)
		return nil, fmt.Errorf("epoll: %w", err)
	}
	// A non-blocking descriptor given to os.NewFile is registered with the runtime's poller.
	ep := os.NewFile(uintptr(epfd), "epoll")
	raw, err := ep.SyscallConn()
	if err != nil {
		_ = ep.Close()
		return nil, fmt.Errorf("epoll: %w", err)
	}
	p := &Poller{epfd: epfd, ep: ep, raw: raw, max: max(workers, 1)}
	pollers.mu.Lock()
	if pollers.n == len(pollers.byID) {
		pollers.mu.Unlock()
		_ = ep.Close()
		return nil, fmt.Errorf("epoll: a process has at most %d pollers", len(pollers.byID))
	}
	p.id = uint8(pollers.n)
	pollers.byID[p.id].Store(p)
	pollers.n++
	pollers.mu.Unlock()
	go p.run()
	return p, nil
}

// Handler is what a parked socket does when it is readable, its deadline passed, or it was
// woken: it runs on a worker, owning the Watch, until it arms it again or closes it.
type Handler interface {
	Ready()
}

// Watch states: the owner (a goroutine running the connection) holds it, or it is armed and
// nobody does; whoever moves it from armed to owned (an event, the deadline, Wake) hands it to a
// worker. closed ends it.
const (
	watchOwned uint32 = iota
	watchArmed
	watchClosed
)

// Watch is one socket's registration. Its owner calls Arm to park the socket and returns; the
// Handler then runs on a worker when the socket is readable, the deadline passes or Wake is
// called. All methods may be called from any goroutine.
//
// Every parked connection holds one, so it is packed into 48 bytes: its generation is 16 bits
// (a stale event that matches a new watch by chance is a spurious wake-up, which every handler
// takes in its stride), its poller is named by a byte (pollers), its deadline is kept in the
// poller's heap, and the count of parked connections is the Handler's (ParkCounter).
type Watch struct {
	rc syscall.RawConn
	h  Handler
	fd int32
	// hidx is the watch's place in the poller's deadline heap plus one (0: not in it); guarded
	// by the heap's lock.
	hidx  int32
	state atomic.Uint32
	gen   uint16
	added bool  // owned by the owner: the socket is in the epoll set
	pid   uint8 // the poller's id
}

// p is the watch's poller.
func (w *Watch) p() *Poller { return pollers.byID[w.pid].Load() }

// park and unpark keep a ParkCounter's count: park before the state becomes armed, unpark after
// it stops being armed, so that the count is never below the armed watches.
func (w *Watch) park() {
	if c, ok := w.h.(ParkCounter); ok {
		c.ParkedCount().Add(1)
	}
}

func (w *Watch) unpark() {
	if c, ok := w.h.(ParkCounter); ok {
		c.ParkedCount().Add(-1)
	}
}

// Watch registers the socket rc for h; it starts owned (not armed). Close releases it.
func (p *Poller) Watch(rc syscall.RawConn, h Handler) (*Watch, error) {
	fd, err := fdNumber(rc)
	if err != nil {
		return nil, err
	}
	w := &Watch{rc: rc, h: h, fd: -1, pid: p.id}
	p.mu.Lock()
	p.placeLocked(w, fd)
	p.mu.Unlock()
	return w, nil
}

// placeLocked puts w in the slot of descriptor fd, under a new generation.
func (p *Poller) placeLocked(w *Watch, fd int) {
	p.gen++
	w.fd, w.gen = int32(fd), p.gen
	for len(p.watches) <= fd {
		p.watches = append(p.watches, nil)
	}
	p.watches[fd] = w
}

// rebind moves the watch to rc, another descriptor of the same socket (Conn.Detach): the old
// descriptor leaves the epoll set now, the new one joins it at the next Arm. Only the owner
// calls it, while the watch is not armed, before the old descriptor is closed.
func (w *Watch) rebind(rc syscall.RawConn) error {
	fd, err := fdNumber(rc)
	if err != nil {
		return err
	}
	if w.added {
		_ = epollCtl(w.rc, w.p().epfd, unix.EPOLL_CTL_DEL, unix.EpollEvent{})
		w.added = false
	}
	p := w.p()
	p.mu.Lock()
	if int(w.fd) < len(p.watches) && p.watches[w.fd] == w {
		p.watches[w.fd] = nil
	}
	p.placeLocked(w, fd)
	p.mu.Unlock()
	w.rc = rc
	return nil
}

// Arm parks the socket: the Handler runs once it is readable (or has hung up), deadline passes
// (zero: no deadline), or Wake is called. The caller gives up ownership and must not touch what
// the Handler uses afterwards. An error (the socket is closed) leaves the caller the owner.
func (w *Watch) Arm(deadline time.Time) error {
	// Armed before the socket is, so an event right after epoll_ctl finds it armed; a Wake in
	// between is harmless (the handler runs once, the late epoll_ctl at worst makes a spurious
	// event, which the handler takes as a wake-up).
	// The owner's fields are written before the state changes hands: whoever takes the watch
	// next (an event, Wake, the deadline) reads them after its own change of the state.
	op := unix.EPOLL_CTL_MOD
	if !w.added {
		op = unix.EPOLL_CTL_ADD
		w.added = true
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: w.fd, Pad: int32(w.gen)}
	rc := w.rc // the next owner may move the watch (rebind) as soon as it is armed
	w.park()
	if !w.state.CompareAndSwap(watchOwned, watchArmed) {
		w.unpark()
		return os.ErrClosed
	}
	err := epollCtl(rc, w.p().epfd, op, ev)
	if err != nil && w.state.CompareAndSwap(watchArmed, watchOwned) {
		// Taken back: the caller still owns it. (A wake-up that got there first owns it now.)
		w.unpark()
		return err
	}
	// Set once armed, so that a deadline already past finds it armed and wakes it. Racing with
	// a later owner's Arm, this may leave the earlier deadline: an early wake-up, which the
	// handler takes as spurious.
	var due int64
	if !deadline.IsZero() {
		due = max(deadline.UnixNano(), 1)
	}
	w.p().deadlines.set(w, due)
	return nil
}

// Parked reports whether the socket is armed and nobody runs its connection (tests use it to
// see what a parked connection holds; a read of the owner's state after it is safe, since Arm
// published that state).
func (w *Watch) Parked() bool { return w.state.Load() == watchArmed }

// Wake runs the Handler now if the socket is parked; otherwise its owner is running and will see
// why it was woken (the face sets that before calling Wake).
func (w *Watch) Wake() {
	if w.state.CompareAndSwap(watchArmed, watchOwned) {
		w.unpark()
		w.p().dispatch(w)
	}
}

// Close forgets the socket; its owner calls it, before the socket is closed when it can.
func (w *Watch) Close() {
	if w.state.Swap(watchClosed) == watchArmed {
		w.unpark()
	}
	w.p().deadlines.set(w, 0)
	if w.added {
		// Fails when the socket is closed already, which took it out of the set.
		_ = epollCtl(w.rc, w.p().epfd, unix.EPOLL_CTL_DEL, unix.EpollEvent{})
	}
	p := w.p()
	p.mu.Lock()
	if int(w.fd) < len(p.watches) && p.watches[w.fd] == w {
		p.watches[w.fd] = nil
	}
	p.mu.Unlock()
}

// run takes events from epoll and hands their watches to workers.
func (p *Poller) run() {
	events := make([]unix.EpollEvent, 256)
	for {
		var n int
		var werr error
		err := p.raw.Read(func(uintptr) bool {
			n, werr = unix.EpollWait(p.epfd, events, 0)
			if werr == unix.EINTR {
				n, werr = 0, nil
			}
			// Nothing ready: wait in the runtime's poller for the epoll descriptor.
			return n > 0 || werr != nil
		})
		if err != nil || werr != nil {
			// The descriptor is never closed; an error here is a bug in the set-up.
			panic(fmt.Sprintf("netio: epoll wait: %v %v", err, werr))
		}
		p.mu.Lock()
		queued := 0
		for i := range events[:n] {
			if w := p.takeLocked(events[i].Fd, uint16(events[i].Pad)); w != nil {
				p.ready = append(p.ready, w)
				queued++
			}
		}
		p.startLocked(queued)
		p.mu.Unlock()
	}
}

// take is takeLocked with the lock taken.
func (p *Poller) take(fd int32, gen uint16) *Watch {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.takeLocked(fd, gen)
}

// takeLocked returns the armed Watch an event is for, now owned by the caller, or nil: the
// event is stale (its Watch closed, or the descriptor now belongs to another) or the Watch was
// already woken.
func (p *Poller) takeLocked(fd int32, gen uint16) *Watch {
	if fd < 0 || int(fd) >= len(p.watches) {
		return nil
	}
	w := p.watches[fd]
	if w == nil || w.gen != gen || !w.state.CompareAndSwap(watchArmed, watchOwned) {
		return nil
	}
	w.unpark()
	return w
}

// dispatch queues w, owned by the caller's hand-off, for a worker.
func (p *Poller) dispatch(w *Watch) {
	p.mu.Lock()
	p.ready = append(p.ready, w)
	p.startLocked(1)
	p.mu.Unlock()
}

// startLocked starts workers for n newly queued watches, within the bound. Workers take from
// the head of the queue when they run, so handlers start in the order their events came.
func (p *Poller) startLocked(n int) {
	for ; n > 0 && p.running < p.max; n-- {
		p.running++
		go p.work()
	}
}

// work runs handlers until the queue is empty.
func (p *Poller) work() {
	for {
		p.mu.Lock()
		if p.head == len(p.ready) {
			p.running--
			// Keep the queue's array unless a burst grew it large.
			if cap(p.ready) > 4096 {
				p.ready = nil
			} else {
				p.ready = p.ready[:0]
			}
			p.head = 0
			p.mu.Unlock()
			return
		}
		w := p.ready[p.head]
		p.ready[p.head] = nil
		p.head++
		if p.head >= 1024 && 2*p.head >= len(p.ready) {
			// Under steady load the queue may never empty: move what is left to the front.
			n := copy(p.ready, p.ready[p.head:])
			clear(p.ready[n:])
			p.ready, p.head = p.ready[:n], 0
		}
		p.mu.Unlock()
		w.h.Ready()
	}
}

// deadlines wakes parked watches whose deadline has passed: a heap ordered by deadline and one
// runtime timer for the earliest, so that a parked connection's keep alive costs it sixteen bytes
// rather than a timer of its own.
type deadlines struct {
	mu    sync.Mutex
	heap  dueHeap
	timer *time.Timer
	// at is when the timer is set to fire (0: stopped).
	at int64
}

// set makes due w's deadline (0: none).
func (d *deadlines) set(w *Watch, due int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case due == 0 && w.hidx == 0:
		return
	case due == 0:
		d.heap.remove(int(w.hidx - 1))
	case w.hidx == 0:
		d.heap.push(dueWatch{due, w})
	default:
		d.heap[w.hidx-1].due = due
		d.heap.fix(int(w.hidx - 1))
	}
	d.resetLocked()
}

// resetLocked sets the timer for the earliest deadline.
func (d *deadlines) resetLocked() {
	if len(d.heap) == 0 {
		if d.at != 0 {
			d.timer.Stop()
			d.at = 0
		}
		return
	}
	first := d.heap[0].due
	if first == d.at {
		return
	}
	wait := time.Duration(first - time.Now().UnixNano())
	if d.timer == nil {
		d.timer = time.AfterFunc(wait, d.fire)
	} else {
		d.timer.Reset(wait)
	}
	d.at = first
}

// fire wakes the watches whose deadline has passed.
func (d *deadlines) fire() {
	var due []*Watch
	d.mu.Lock()
	now := time.Now().UnixNano()
	for len(d.heap) > 0 && d.heap[0].due <= now {
		w := d.heap[0].w
		d.heap.remove(0)
		due = append(due, w)
	}
	d.at = 0
	d.resetLocked()
	d.mu.Unlock()
	for _, w := range due {
		w.Wake()
	}
}

// dueWatch is a watch with its deadline (Unix nanoseconds). The deadline is kept here rather
// than in the Watch: the heap compares deadlines without touching the watches, and the watch,
// which every parked connection holds, is eight bytes smaller.
type dueWatch struct {
	due int64
	w   *Watch
}

// dueHeap is a binary min-heap of watches by deadline; each watch knows its index (hidx - 1).
// It is written out rather than a container/heap: that one's Push takes an interface, and
// boxing a dueWatch would allocate at every park.
type dueHeap []dueWatch

func (h dueHeap) less(i, j int) bool { return h[i].due < h[j].due }

func (h dueHeap) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].w.hidx, h[j].w.hidx = int32(i+1), int32(j+1)
}

func (h *dueHeap) push(e dueWatch) {
	*h = append(*h, e)
	i := len(*h) - 1
	e.w.hidx = int32(i + 1)
	h.up(i)
}

// remove takes out the entry at i.
func (h *dueHeap) remove(i int) {
	old := *h
	last := len(old) - 1
	old[i].w.hidx = 0
	if i != last {
		old[i] = old[last]
		old[i].w.hidx = int32(i + 1)
	}
	old[last] = dueWatch{}
	*h = old[:last]
	if i != last {
		h.fix(i)
	}
}

// fix restores the order after the deadline at i changed.
func (h dueHeap) fix(i int) {
	if !h.down(i) {
		h.up(i)
	}
}

func (h dueHeap) up(i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if !h.less(i, parent) {
			return
		}
		h.swap(i, parent)
		i = parent
	}
}

// down moves the entry at i towards the leaves; it reports whether it moved.
func (h dueHeap) down(i int) bool {
	start := i
	for {
		l := 2*i + 1
		if l >= len(h) {
			break
		}
		least := l
		if r := l + 1; r < len(h) && h.less(r, l) {
			least = r
		}
		if !h.less(least, i) {
			break
		}
		h.swap(i, least)
		i = least
	}
	return i > start
}
