package broker

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/ternmq/tern/internal/store"
	"github.com/ternmq/tern/internal/topic"
)

// ErrStorage wraps a store failure. A publish that meets one is not acknowledged as a success,
// and the log says why (at most once a minute).
var ErrStorage = errors.New("storage failure")

func storageError(err error) error { return fmt.Errorf("%w: %w", ErrStorage, err) }

// storeFailed counts and logs a store error and returns it wrapped in ErrStorage.
func (b *Broker) storeFailed(what string, err error) error {
	b.stats.StoreErrors.Add(1)
	b.warn.log("store", "storage failure: "+what, "err", err)
	return storageError(err)
}

// openDurable attaches the session's queue and in-flight state in the store. Caller holds s.mu or
// owns s exclusively.
func (s *Session) openDurable() error {
	q, err := s.b.store.Sessions().Queue(s.id)
	if err != nil {
		return err
	}
	f, err := s.b.store.Sessions().Inflight(s.id)
	if err != nil {
		return err
	}
	s.queue = q
	s.extra().inflightStore = f
	return nil
}

// makeDurable moves a memory-only session into the store, when a client resumes it asking for it
// to outlive the connection. Caller holds s.mu.
func (s *Session) makeDurable() error {
	mem := s.queue
	if err := s.openDurable(); err != nil {
		return err
	}
	for {
		it, ok, _ := mem.Front()
		if !ok {
			break
		}
		if err := s.queue.Push(it); err != nil {
			return err
		}
		_ = mem.Pop()
	}
	var err error
	st := s.rare.inflightStore
	s.inflight.each(func(f *inflight) {
		if err == nil {
			err = st.Put(store.InflightEntry{PacketID: f.pid, Item: f.item, Released: f.released})
		}
	})
	for pid := range s.rare.incoming {
		if err == nil {
			err = st.AddIncoming(pid)
		}
	}
	if err == nil && s.subs.len() > 0 {
		subs := make([]store.Subscription, 0, s.subs.len())
		for sub := range s.subs.all() {
			subs = append(subs, sub.Subscription)
		}
		err = s.b.store.Sessions().PutSubscriptions(s.id, subs)
	}
	return err
}

// storeSubsLocked writes a change to a durable session's subscriptions: only what changed, the
// record stays as it is. It is written whatever the session's expiry, so that what the store
// holds is always the session's whole set (an expiry of 0 now may be longer after a takeover).
// Caller holds s.mu.
func (s *Session) storeSubsLocked(put []store.Subscription, del []string) {
	if !s.durable() || s.deleted {
		return
	}
	ss := s.b.store.Sessions()
	if len(put) > 0 {
		if err := ss.PutSubscriptions(s.id, put); err != nil {
			s.b.storeFailed("saving subscriptions", err)
		}
	}
	if len(del) > 0 {
		if err := ss.DeleteSubscriptions(s.id, del); err != nil {
			s.b.storeFailed("removing subscriptions", err)
		}
	}
}

// savable reports whether the session's record is kept in the store: it is durable, outlives
// its connection and was not ended. Caller holds s.mu.
func (s *Session) savable() bool { return s.durable() && s.expiry != 0 && !s.deleted }

// saveLocked writes the session record of a durable session, without its subscriptions (they
// are stored apart as they change: storeSubsLocked). Caller holds s.mu.
func (s *Session) saveLocked() {
	if !s.savable() {
		return
	}
	if err := s.b.store.Sessions().Put(s.record()); err != nil {
		s.b.storeFailed("saving a session", err)
		return
	}
	s.dirty = false
}

// recoverSessions rebuilds every stored session, offline: subscriptions back in the index, queue
// and in-flight state attached, timers for will delays and expiry set from the time the client
// left. A record written while its client was connected means the server stopped under it: the
// client counts as gone now, and its will is due.
func (b *Broker) recoverSessions() error {
	var recs []store.SessionRecord
	if err := b.store.Sessions().All(func(r store.SessionRecord) error {
		recs = append(recs, r)
		return nil
	}); err != nil {
		return fmt.Errorf("reading sessions: %w", err)
	}
	t := b.now()
	type due struct {
		s *Session
		w *Will
	}
	var wills []due
	for _, rec := range recs {
		s, w, err := b.recoverSession(rec, t)
		if err != nil {
			return fmt.Errorf("recovering session %q: %w", rec.ClientID, err)
		}
		if w != nil {
			wills = append(wills, due{s, w})
		}
	}
	for _, d := range wills {
		b.publishWill(d.w)
		// The record forgets the will only once it is out (a crash in between sends it twice
		// rather than never).
		d.s.mu.Lock()
		d.s.saveLocked()
		d.s.mu.Unlock()
	}
	if len(recs) > 0 {
		b.log.Info("sessions recovered", "sessions", len(recs), "queued", b.stats.Queued.Load())
	}
	return nil
}

// recoverSession restores one session; it returns a will that is due now.
func (b *Broker) recoverSession(rec store.SessionRecord, t int64) (*Session, *Will, error) {
	s, err := b.newSession(rec.ClientID, true)
	if err != nil {
		return nil, nil, err
	}
	// Held throughout: once a subscription is in the index a publisher may deliver to s, and a
	// session the cluster moves here is recovered while publishers run.
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rare // openDurable made it
	s.identity, s.expiry, r.dropped = rec.Identity, rec.Expiry, rec.Dropped
	s.disconnected = rec.Disconnected
	if s.disconnected == 0 {
		s.disconnected = t
	}
	for _, sub := range rec.Subscriptions {
		f, err := topic.ParseFilter(sub.Filter)
		if err != nil {
			b.log.Warn("dropping a stored subscription with an invalid filter", "client", s.id, "filter", sub.Filter)
			continue
		}
		ns := newSubscription(sub)
		s.subs.put(ns)
		b.indexAdd(f, s, ns, true)
		b.stats.Subscriptions.Add(1)
	}
	entries, err := r.inflightStore.All()
	if err != nil {
		return nil, nil, err
	}
	for _, e := range entries {
		s.window().add(e.PacketID, e.Item)
		if e.Released {
			s.inflight.markReleased(e.PacketID)
		}
	}
	if len(entries) > 0 {
		s.window().last = entries[len(entries)-1].PacketID
	}
	in, err := r.inflightStore.Incoming()
	if err != nil {
		return nil, nil, err
	}
	if len(in) > 0 {
		r.incoming = map[uint16]struct{}{}
		for _, pid := range in {
			r.incoming[pid] = struct{}{}
		}
	}
	b.stats.Queued.Add(int64(s.queue.Len()))
	if s.queue.Len() > 0 {
		s.listForSweepLocked()
	}
	b.sessions[s.id] = s
	b.stats.Sessions.Add(1)

	var due *Will
	if rec.Will != nil {
		w := &Will{Msg: rec.Will.Msg, Delay: rec.Will.Delay}
		wait := remaining(s.disconnected, w.Delay, t)
		if rec.Expiry != NeverExpire {
			wait = min(wait, remaining(s.disconnected, rec.Expiry, t))
		}
		if wait == 0 {
			due = w
		} else {
			r.pendingWill = w
			r.willTimer = b.clock.AfterFunc(wait, func() { b.willDue(s, 0) })
		}
	}
	if rec.Expiry != NeverExpire {
		r.expiryTimer = b.clock.AfterFunc(remaining(s.disconnected, rec.Expiry, t), func() { b.sessionDue(s, 0) })
	}
	return s, due, nil
}

// remaining is how long after t an interval of secs seconds that began at from ends (0 if past).
func remaining(from int64, secs uint32, t int64) time.Duration {
	return max(0, time.Duration(from+int64(secs)*int64(time.Second)-t))
}

// SessionInfo describes one session for `tern stats`.
type SessionInfo struct {
	ClientID      string `json:"client_id"`
	Identity      string `json:"identity,omitempty"`
	Face          string `json:"face,omitempty"`
	Online        bool   `json:"online"`
	Durable       bool   `json:"durable"`
	Subscriptions int    `json:"subscriptions"`
	Queued        int    `json:"queued"`
	QueuedBytes   int64  `json:"queued_bytes"`
	Inflight      int    `json:"inflight"`
	Dropped       uint64 `json:"dropped"`
	Refused       uint64 `json:"refused"`
	Expired       uint64 `json:"expired,omitempty"`
	// Oldest is when the oldest queued message was published (Unix nanoseconds; Session only).
	Oldest int64 `json:"oldest,omitempty"`
	// Sent and Taken are a router link's sequence marks (store.Marks); RoutedDuplicates and
	// RoutedGaps what its peer sent again or skipped since this process started.
	Sent             uint64 `json:"sent,omitempty"`
	Taken            uint64 `json:"taken,omitempty"`
	RoutedDuplicates uint64 `json:"routed_duplicates,omitempty"`
	RoutedGaps       uint64 `json:"routed_gaps,omitempty"`
}

// infoLocked describes the session. The caller holds s.mu.
func (s *Session) infoLocked() SessionInfo {
	i := SessionInfo{
		ClientID: s.id, Identity: s.identity, Face: s.face.String(), Online: s.sink != nil, Durable: s.durable(),
		Subscriptions: s.subs.len(), Queued: s.queue.Len(), QueuedBytes: s.queue.Bytes(),
		Inflight: s.inflight.len(),
	}
	if r := s.rare; r != nil {
		i.Dropped, i.Refused, i.Expired = r.dropped, r.refused, r.expired
		i.Sent, i.Taken, i.RoutedDuplicates, i.RoutedGaps = r.marks.Sent, r.marks.Taken, r.routedDups, r.routedGaps
	}
	return i
}

// Session describes one session, with the publication time of its oldest queued message.
func (b *Broker) Session(clientID string) (SessionInfo, bool) {
	b.mu.Lock()
	s := b.sessions[clientID]
	b.mu.Unlock()
	if s == nil {
		return SessionInfo{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	info := s.infoLocked()
	if it, ok, err := s.queue.Front(); err == nil && ok {
		info.Oldest = it.Msg.Time
	}
	return info, true
}

// Sessions lists the sessions with the deepest queues first, at most limit of them (0: all).
func (b *Broker) Sessions(limit int) []SessionInfo {
	b.mu.Lock()
	all := slices.Collect(maps.Values(b.sessions))
	b.mu.Unlock()
	out := make([]SessionInfo, 0, len(all))
	for _, s := range all {
		s.mu.Lock()
		out = append(out, s.infoLocked())
		s.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b SessionInfo) int {
		if a.Queued != b.Queued {
			return b.Queued - a.Queued
		}
		if a.ClientID < b.ClientID {
			return -1
		}
		return 1
	})
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out
}
