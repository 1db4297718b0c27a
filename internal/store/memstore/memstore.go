// Package memstore is the in-memory Store: nothing survives a restart. It backs tests and
// `tern serve --data-dir=""`.
package memstore

import (
	"cmp"
	"maps"
	"slices"
	"sync"

	"github.com/ternmq/tern/internal/message"
	"github.com/ternmq/tern/internal/store"
)

// Store is an in-memory store.Store.
type Store struct {
	mu       sync.Mutex
	sessions map[string]store.SessionRecord
	// subs are the sessions' subscriptions by client id and filter, apart from their records
	// as on disk; records in sessions have none.
	subs     map[string]map[string]store.Subscription
	queues   map[string]*Queue
	inflight map[string]*Inflight
	retained map[string]*message.Message
	marks    map[string]store.Marks
	records  *Records
}

// New returns an empty in-memory store.
func New() *Store {
	return &Store{
		sessions: map[string]store.SessionRecord{},
		subs:     map[string]map[string]store.Subscription{},
		queues:   map[string]*Queue{},
		inflight: map[string]*Inflight{},
		retained: map[string]*message.Message{},
		marks:    map[string]store.Marks{},
		records:  NewRecords(),
	}
}

// Sessions implements store.Store.
func (s *Store) Sessions() store.Sessions { return (*sessions)(s) }

// Retained implements store.Store.
func (s *Store) Retained() store.Retained { return (*retained)(s) }

// Health implements store.Store: memory does not fail.
func (s *Store) Health() error { return nil }

// Records implements store.Store.
func (s *Store) Records() store.Records { return s.records }

// Sync implements store.Store: memory is as durable as it gets.
func (s *Store) Sync() *store.Ticket { return nil }

// LastMessageID implements store.Store; message ids from the clock are unique within a process.
func (s *Store) LastMessageID() uint64 { return 0 }

// DiskBytes implements store.Store.
func (s *Store) DiskBytes() int64 { return 0 }

// Close implements store.Store.
func (s *Store) Close() error { return nil }

type sessions Store

func (s *sessions) Put(rec store.SessionRecord) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.putSubsLocked(rec.ClientID, rec.Subscriptions)
	rec.Subscriptions = nil
	s.sessions[rec.ClientID] = rec
	return nil
}

func (s *sessions) PutSubscriptions(clientID string, subs []store.Subscription) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.putSubsLocked(clientID, subs)
	return nil
}

func (s *sessions) putSubsLocked(clientID string, subs []store.Subscription) {
	if len(subs) == 0 {
		return
	}
	m := s.subs[clientID]
	if m == nil {
		m = map[string]store.Subscription{}
		s.subs[clientID] = m
	}
	for _, sub := range subs {
		m[sub.Filter] = sub
	}
}

func (s *sessions) DeleteSubscriptions(clientID string, filters []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.subs[clientID]
	for _, f := range filters {
		delete(m, f)
	}
	if len(m) == 0 {
		delete(s.subs, clientID)
	}
	return nil
}

func (s *sessions) Delete(clientID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.sessions, clientID)
	delete(s.subs, clientID)
	delete(s.queues, clientID)
	delete(s.inflight, clientID)
	delete(s.marks, clientID)
	return nil
}

func (s *sessions) Marks(clientID string) (store.Marks, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.marks[clientID], nil
}

func (s *sessions) PutMarks(clientID string, m store.Marks) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.marks[clientID] = m
	return nil
}

func (s *sessions) All(fn func(store.SessionRecord) error) error {
	s.mu.Lock()
	recs := make([]store.SessionRecord, 0, len(s.sessions))
	for _, r := range s.sessions {
		if m := s.subs[r.ClientID]; len(m) > 0 {
			r.Subscriptions = slices.SortedFunc(maps.Values(m), func(a, b store.Subscription) int {
				return cmp.Compare(a.Filter, b.Filter)
			})
		}
		recs = append(recs, r)
	}
	s.mu.Unlock()
	for _, r := range recs {
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

func (s *sessions) Queue(clientID string) (store.Queue, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.queues[clientID]
	if q == nil {
		q = &Queue{}
		s.queues[clientID] = q
	}
	return q, nil
}

func (s *sessions) Inflight(clientID string) (store.Inflight, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.inflight[clientID]
	if f == nil {
		f = &Inflight{}
		s.inflight[clientID] = f
	}
	return f, nil
}

type retained Store

func (r *retained) Set(m *message.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.retained[m.Topic] = m
	return nil
}

func (r *retained) Delete(topic string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.retained, topic)
	return nil
}

func (r *retained) All(fn func(*message.Message) error) error {
	r.mu.Lock()
	msgs := make([]*message.Message, 0, len(r.retained))
	for _, m := range r.retained {
		msgs = append(msgs, m)
	}
	r.mu.Unlock()
	for _, m := range msgs {
		if err := fn(m); err != nil {
			return err
		}
	}
	return nil
}

// Queue is a FIFO on a ring buffer that grows by doubling and shrinks when mostly empty, so a
// drained queue gives its memory back.
type Queue struct {
	items []store.Item
	head  int
	n     int
	bytes int64
}

// Push implements store.Queue.
func (q *Queue) Push(it store.Item) error {
	if q.n == len(q.items) {
		q.resize(max(8, 2*len(q.items)))
	}
	q.items[(q.head+q.n)%len(q.items)] = it
	q.n++
	q.bytes += int64(it.Size())
	return nil
}

// Front implements store.Queue.
func (q *Queue) Front() (store.Item, bool, error) {
	if q.n == 0 {
		return store.Item{}, false, nil
	}
	return q.items[q.head], true, nil
}

// Pop implements store.Queue.
func (q *Queue) Pop() error {
	if q.n == 0 {
		return nil
	}
	it := q.items[q.head]
	q.items[q.head] = store.Item{}
	q.head = (q.head + 1) % len(q.items)
	q.n--
	q.bytes -= int64(it.Size())
	if len(q.items) > 64 && q.n < len(q.items)/4 {
		q.resize(len(q.items) / 2)
	}
	return nil
}

// Len implements store.Queue.
func (q *Queue) Len() int { return q.n }

// Bytes implements store.Queue.
func (q *Queue) Bytes() int64 { return q.bytes }

// Clear implements store.Queue.
func (q *Queue) Clear() error {
	*q = Queue{}
	return nil
}

func (q *Queue) resize(size int) {
	items := make([]store.Item, size)
	for i := 0; i < q.n; i++ {
		items[i] = q.items[(q.head+i)%len(q.items)]
	}
	q.items = items
	q.head = 0
}
