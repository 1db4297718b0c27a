// Package mailbox keeps one durable queue per identity: messages pushed to it by anybody,
// read in order by its owner only, each with a per-mailbox id that is never reused, its sender,
// a "wants reply" flag, and the reply once the owner gave one, kept until the sender collects it.
// Messages expire (default 7 days). This is uLightWMQ's model; the HTTP face serves its API.
package mailbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ternmq/tern/internal/store"
)

// Errors the operations return.
var (
	ErrNoMailbox    = errors.New("mailbox not found") // it was never opened by its owner
	ErrEmpty        = errors.New("mailbox empty")     // nothing to read
	ErrTimedOut     = errors.New("timed out")         // a wait ended without a message or reply
	ErrNotFound     = errors.New("message not found") // no such (unexpired) message
	ErrNotReplyable = errors.New("unable to reply")   // not wanting a reply, or answered already
	ErrBadName      = errors.New("mailbox name not [a-z0-9]+")
)

var validName = regexp.MustCompile(`^[a-z0-9]+$`)

// ValidName reports whether name can own a mailbox (uLightWMQ's rule).
func ValidName(name string) bool { return len(name) <= 256 && validName.MatchString(name) }

// Message is one message in a mailbox.
type Message struct {
	ID         uint64    `json:"-"`
	From       string    `json:"from"`
	Body       []byte    `json:"body"`
	WantsReply bool      `json:"wants_reply,omitempty"`
	Created    time.Time `json:"created"`
	Expires    time.Time `json:"expires"`
	Answered   bool      `json:"answered,omitempty"`
	Reply      []byte    `json:"reply,omitempty"`
}

// Config sets the mailboxes' limits.
type Config struct {
	// TTL is how long a message lives (uLightWMQ's DefaultExpirationTime); default 7 days.
	TTL time.Duration
	// Clock returns the time; nil means time.Now.
	Clock func() time.Time
}

// Service holds every mailbox. Safe for concurrent use.
type Service struct {
	st  store.Records
	cfg Config
	now func() time.Time

	mu    sync.Mutex
	locks map[string]*sync.Mutex   // one per mailbox, for id allocation and updates
	wake  map[string]chan struct{} // closed to wake the waiters of a mailbox
	// Notify, if set, is called after a push (the core publishes a notification with it).
	Notify func(mailbox string, m Message)
}

// New returns the service over st.
func New(st store.Records, cfg Config) *Service {
	if cfg.TTL <= 0 {
		cfg.TTL = 7 * 24 * time.Hour
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	return &Service{st: st, cfg: cfg, now: cfg.Clock, locks: map[string]*sync.Mutex{}, wake: map[string]chan struct{}{}}
}

const metaNS = "mailboxes"

type meta struct {
	Next    uint64    `json:"next"`
	Created time.Time `json:"created"`
}

func msgNS(name string) string { return "mbox/" + name }
func msgKey(id uint64) string  { return fmt.Sprintf("%020d", id) }
func parseKey(k string) uint64 { n, _ := strconv.ParseUint(k, 10, 64); return n }
func (s *Service) lock(name string) *sync.Mutex {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.locks[name]
	if l == nil {
		l = &sync.Mutex{}
		s.locks[name] = l
	}
	return l
}

// signal returns the channel a waiter on name blocks on (wait) or wakes them all (wake).
func (s *Service) signal(name string, wake bool) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := s.wake[name]
	if wake {
		if ch != nil {
			close(ch)
			delete(s.wake, name)
		}
		return nil
	}
	if ch == nil {
		ch = make(chan struct{})
		s.wake[name] = ch
	}
	return ch
}

func (s *Service) getMeta(name string) (meta, bool, error) {
	v, ok, err := s.st.Get(metaNS, name)
	if err != nil || !ok {
		return meta{}, ok, err
	}
	var m meta
	return m, true, json.Unmarshal(v, &m)
}

// Open creates the owner's mailbox if it does not exist (a mailbox exists from its owner's first
// read on, as in uLightWMQ).
func (s *Service) Open(owner string) error {
	if !ValidName(owner) {
		return ErrBadName
	}
	l := s.lock(owner)
	l.Lock()
	defer l.Unlock()
	if _, ok, err := s.getMeta(owner); err != nil || ok {
		return err
	}
	raw, _ := json.Marshal(meta{Next: 1, Created: s.now().UTC()})
	return s.st.Put(metaNS, owner, raw)
}

// Exists reports whether name's mailbox was opened.
func (s *Service) Exists(name string) (bool, error) {
	_, ok, err := s.getMeta(name)
	return ok, err
}

// appender is a store whose log allocates keys (cluster.Records): Append stores value in ns
// under msgKey of the id it returns, unique and increasing across every node, and returns once
// the write is committed. On it a push needs no counter, which two nodes could race for.
type appender interface {
	Append(ns string, value []byte) (uint64, error)
}

// syncer is a store whose reads on this node may lag writes committed through another node
// (cluster.Records): Sync returns once this node has every write committed before the call.
// Every operation syncs before it reads, so a message removed or answered through one node is
// never served again, or answered twice, through another that had not applied it yet.
type syncer interface {
	Sync(ctx context.Context) error
}

// caughtUp syncs a store that needs it.
func (s *Service) caughtUp(ctx context.Context) error {
	if y, ok := s.st.(syncer); ok {
		return y.Sync(ctx)
	}
	return nil
}

// Push adds a message to dst's mailbox and returns its id.
func (s *Service) Push(from, dst string, body []byte, wantsReply bool) (uint64, error) {
	if a, ok := s.st.(appender); ok {
		return s.pushAppend(a, from, dst, body, wantsReply)
	}
	l := s.lock(dst)
	l.Lock()
	mt, ok, err := s.getMeta(dst)
	if err != nil || !ok {
		l.Unlock()
		if err == nil {
			err = ErrNoMailbox
		}
		return 0, err
	}
	id := mt.Next
	mt.Next++
	now := s.now().UTC()
	m := Message{ID: id, From: from, Body: body, WantsReply: wantsReply, Created: now, Expires: now.Add(s.cfg.TTL)}
	// The counter first: a crash in between skips an id rather than reusing one.
	raw, _ := json.Marshal(mt)
	if err := s.st.Put(metaNS, dst, raw); err != nil {
		l.Unlock()
		return 0, err
	}
	raw, _ = json.Marshal(m)
	err = s.st.Put(msgNS(dst), msgKey(id), raw)
	l.Unlock()
	if err != nil {
		return 0, err
	}
	s.signal(dst, true)
	if s.Notify != nil {
		s.Notify(dst, m)
	}
	return id, nil
}

func (s *Service) pushAppend(a appender, from, dst string, body []byte, wantsReply bool) (uint64, error) {
	if err := s.caughtUp(context.Background()); err != nil {
		return 0, err
	}
	if ok, err := s.Exists(dst); err != nil || !ok {
		if err == nil {
			err = ErrNoMailbox
		}
		return 0, err
	}
	now := s.now().UTC()
	m := Message{From: from, Body: body, WantsReply: wantsReply, Created: now, Expires: now.Add(s.cfg.TTL)}
	raw, _ := json.Marshal(m)
	id, err := a.Append(msgNS(dst), raw)
	if err != nil {
		return 0, err
	}
	m.ID = id
	s.signal(dst, true)
	if s.Notify != nil {
		s.Notify(dst, m)
	}
	return id, nil
}

// RecordsChanged wakes the waiters of a mailbox a replicated write (made on any node) touched.
// It is called from the cluster's apply goroutine and only closes a channel.
func (s *Service) RecordsChanged(ns string) {
	if name, ok := strings.CutPrefix(ns, "mbox/"); ok {
		s.signal(name, true)
	}
}

// errStop ends a scan early.
var errStop = errors.New("stop")

// front returns the oldest unexpired message, deleting expired ones met on the way.
func (s *Service) front(owner string) (Message, bool, error) {
	now := s.now()
	var found Message
	var ok bool
	var expired []string
	err := s.st.Scan(msgNS(owner), func(k string, v []byte) error {
		var m Message
		if json.Unmarshal(v, &m) != nil || now.After(m.Expires) {
			expired = append(expired, k)
			return nil
		}
		m.ID = parseKey(k)
		found, ok = m, true
		return errStop
	})
	if errors.Is(err, errStop) {
		err = nil
	}
	for _, k := range expired {
		_ = s.st.Delete(msgNS(owner), k)
	}
	return found, ok, err
}

// Front returns the owner's oldest message, waiting up to wait for one (0: not at all). With
// removeAfterRead it is removed, unless it wants a reply (which stays until answered and collected).
func (s *Service) Front(ctx context.Context, owner string, wait time.Duration, removeAfterRead bool) (Message, bool, error) {
	if err := s.caughtUp(ctx); err != nil {
		return Message{}, false, err
	}
	if err := s.Open(owner); err != nil {
		return Message{}, false, err
	}
	for {
		ch := s.signal(owner, false)
		m, ok, err := s.front(owner)
		if err != nil {
			return Message{}, false, err
		}
		if ok {
			removed := false
			if removeAfterRead && !m.WantsReply {
				err := s.remove(owner, m.ID)
				if errors.Is(err, ErrNotFound) {
					continue // another reader took it first: it is theirs, look again
				}
				removed = err == nil
			}
			return m, removed, nil
		}
		if wait <= 0 {
			return Message{}, false, ErrEmpty
		}
		// Each wake-up starts a fresh wait, as uLightWMQ does.
		t := time.NewTimer(wait)
		select {
		case <-ch:
			t.Stop()
		case <-t.C:
			return Message{}, false, ErrTimedOut
		case <-ctx.Done():
			t.Stop()
			return Message{}, false, ctx.Err()
		}
	}
}

// Get returns one message of the owner's mailbox.
func (s *Service) Get(owner string, id uint64) (Message, error) {
	if err := s.caughtUp(context.Background()); err != nil {
		return Message{}, err
	}
	if err := s.Open(owner); err != nil {
		return Message{}, err
	}
	return s.get(owner, id)
}

func (s *Service) get(name string, id uint64) (Message, error) {
	_, m, err := s.getRaw(name, id)
	return m, err
}

// getRaw is get with the stored value, for a swap.
func (s *Service) getRaw(name string, id uint64) ([]byte, Message, error) {
	v, ok, err := s.st.Get(msgNS(name), msgKey(id))
	if err != nil {
		return nil, Message{}, err
	}
	var m Message
	if !ok || json.Unmarshal(v, &m) != nil || s.now().After(m.Expires) {
		return nil, Message{}, ErrNotFound
	}
	m.ID = id
	return v, m, nil
}

// replace stores a message's new value over the one read; on a store that swaps, a message
// changed meanwhile through another node (answered, or removed: the only changes) cannot be
// answered.
func (s *Service) replace(name string, id uint64, read, value []byte) error {
	sw, ok := s.st.(swapper)
	if !ok {
		return s.st.Put(msgNS(name), msgKey(id), value)
	}
	done, err := sw.Swap(msgNS(name), msgKey(id), read, value, false)
	if err == nil && !done {
		err = ErrNotReplyable
	}
	return err
}

// Reply answers a message of the owner's mailbox that wants a reply and has none yet.
func (s *Service) Reply(owner string, id uint64, body []byte) error {
	if err := s.caughtUp(context.Background()); err != nil {
		return err
	}
	if ok, err := s.Exists(owner); err != nil || !ok {
		if err == nil {
			err = ErrNoMailbox
		}
		return err
	}
	l := s.lock(owner)
	l.Lock()
	read, m, err := s.getRaw(owner, id)
	if err == nil && (!m.WantsReply || m.Answered) {
		err = ErrNotReplyable
	}
	if err == nil {
		m.Answered, m.Reply = true, body
		raw, _ := json.Marshal(m)
		err = s.replace(owner, id, read, raw)
	}
	l.Unlock()
	if errors.Is(err, ErrNotFound) {
		err = ErrNotReplyable
	}
	if err == nil {
		s.signal(owner, true)
	}
	return err
}

// WaitForReply waits (up to wait per wake-up) for the reply to message id that caller pushed to
// dst, and with remove deletes the message once the reply is collected.
func (s *Service) WaitForReply(ctx context.Context, caller, dst string, id uint64, wait time.Duration, remove bool) (reply []byte, removed bool, err error) {
	if err := s.caughtUp(ctx); err != nil {
		return nil, false, err
	}
	if ok, err := s.Exists(dst); err != nil || !ok {
		if err == nil {
			err = ErrNoMailbox
		}
		return nil, false, err
	}
	for {
		ch := s.signal(dst, false)
		m, err := s.get(dst, id)
		if err != nil || m.From != caller {
			return nil, false, ErrNotFound
		}
		if m.Answered {
			if remove && s.remove(dst, id) == nil {
				removed = true
			}
			return m.Reply, removed, nil
		}
		t := time.NewTimer(wait)
		select {
		case <-ch:
			t.Stop()
		case <-t.C:
			return nil, false, ErrTimedOut
		case <-ctx.Done():
			t.Stop()
			return nil, false, ctx.Err()
		}
	}
}

// Remove deletes a message of a mailbox.
func (s *Service) Remove(name string, id uint64) error {
	if err := s.caughtUp(context.Background()); err != nil {
		return err
	}
	return s.remove(name, id)
}

// remove is Remove for an operation that synced already. It answers ErrNotFound when the
// message is gone, also when another reader removed it first.
func (s *Service) remove(name string, id uint64) error {
	l := s.lock(name)
	l.Lock()
	err := s.removeLocked(name, id)
	l.Unlock()
	if err != nil {
		return err
	}
	s.signal(name, true)
	return nil
}

// swapper is a store that changes a record only if it still holds what was read
// (cluster.Records): the per-mailbox lock holds only this node's operations, and a reply or a
// removal made at once through two nodes must not both succeed.
type swapper interface {
	Swap(ns, key string, old, value []byte, del bool) (bool, error)
}

// errChanging: a message kept changing under a removal (it cannot: a reply and a removal are
// the only changes a message sees).
var errChanging = errors.New("mailbox message changed under every removal attempt")

func (s *Service) removeLocked(name string, id uint64) error {
	sw, swaps := s.st.(swapper)
	// A removal that loses its swap read a value another node changed since: the message was
	// removed there (gone now) or answered (removed with its new value). Each message changes
	// at most twice, so the third try decides.
	for try := 0; try < 3; try++ {
		if try > 0 {
			if err := s.caughtUp(context.Background()); err != nil {
				return err
			}
		}
		raw, ok, err := s.st.Get(msgNS(name), msgKey(id))
		if err != nil {
			return err
		}
		if !ok {
			return ErrNotFound
		}
		if !swaps {
			return s.st.Delete(msgNS(name), msgKey(id))
		}
		if done, err := sw.Swap(msgNS(name), msgKey(id), raw, nil, true); done || err != nil {
			return err
		}
	}
	return errChanging
}
